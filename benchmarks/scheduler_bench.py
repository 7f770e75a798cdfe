"""Scheduler benchmark: the digest pass over many subscriptions (issue 14).

    .venv/bin/python benchmarks/scheduler_bench.py [--sizes 100000,1000000] [--weekly-due 100000]
        [--database-url URL [--no-sqlite]] [--seed 1] [--json]

The rows are bulk-inserted straight into a fresh database (SQLite file, or a throw-away schema of
the PostgreSQL at --database-url), with ``next_due_at`` worked out as the store works it out
(``digestbot.core.schedule.next_due``). Cadences are mixed (10 % instant, 30 % daily, 60 % weekly),
and so are time zones (12 zones from UTC-10 to UTC+13, with and without daylight saving), send
times and weekdays. One recipient per subscription (one subscription, one digest). Measured:

1. **nothing due**: for each of --sizes, every subscription's latest window already covered (the
   instant ones have nothing new); ``DigestBuilder.build_due(now)``, the pass `digestbot run`
   starts every minute, timed (best of 3). Goal: under 1 s for 1,000,000.
2. **all weekly due**: --weekly-due weekly subscriptions (beside 50,000 daily and instant ones not
   due), each with 5 to 12 matched papers it has not had; ``build_due(now)`` builds and queues
   every weekly digest (reads, compose, render, signed links, digest items, outbox rows and
   payloads, next due times). Goal: at least 500 digests/s. Checked afterwards: as many digests
   as weekly subscriptions, one outbox row and payload each, and no subscription due any more.

The tables are analysed after the bulk insert (as autovacuum does on PostgreSQL within a minute
of such a change; without statistics its planner scans the table: 0.29 s for 1,000,000).

Peak memory: the process's resident set, sampled every 20 ms during the pass, less what it was
before the pass (so the rows set up beforehand do not count). Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import Database, load_average, machine

from sqlalchemy import func, insert, select, text

from digestbot.bootstrap import bootstrap, settle_the_collector
from digestbot.core.schedule import Schedule, latest_slot, next_due
from digestbot.settings import Settings
from digestbot.store.models import (Counter, MatchQuery, OutboxMessage, OutboxPayload, Paper, QueryMatch,
                                    Recipient, Subscription)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ZONES = ["UTC", "Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo",
         "Asia/Kolkata", "Australia/Sydney", "Pacific/Auckland", "America/Sao_Paulo", "Pacific/Honolulu",
         "Africa/Nairobi"]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WORDS = ("diffusion transformer pruning quantization agents retrieval robotics speech vision graph sparse "
         "attention alignment reasoning tokenizer distillation benchmark multimodal video protein").split()
SETTINGS = dict(secret_key="bench-signing-key", base_url="https://digest.example.com", from_email="digest@example.com",
                from_name="Paper Digest", postal_address="Digestbot Ltd, 1 Example Street, 10115 Berlin",
                email_backend="file", slack_backend="file")
CHUNK = 20_000
QUERIES = [f"{a} {b}" for a in WORDS for b in WORDS if a != b]  # 380 distinct two-word queries


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class PeakRSS:
    """The resident set's peak above where it was on entry, sampled by a thread."""

    def __init__(self) -> None:
        self.peak = self.start = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self.rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def mb(self) -> float:
        return round((self.peak - self.start) / 2**20, 1)


def _schedule(rng: random.Random, cadence: str) -> dict:
    return {"cadence": cadence, "send_at": f"{rng.randrange(24):02d}:{rng.choice((0, 15, 30, 45)):02d}",
            "weekday": rng.choice(DAYS), "timezone": rng.choice(ZONES)}


def populate(engine, rng: random.Random, cadences: list[tuple[str, bool]], queries: list[str]) -> None:
    """One recipient and one subscription per (cadence, due) given: ``due`` subscriptions have their
    latest window open (one slot pending), the others have it covered."""
    created = NOW - timedelta(days=60)
    with engine.begin() as connection:
        connection.execute(insert(Counter).values(name="subscriptions", value=1))
        for start in range(0, len(cadences), CHUNK):
            chunk = cadences[start:start + CHUNK]
            recipients = [{"address": f"reader{start + i:07d}@example.org", "kind": "email", "created_at": created}
                          for i in range(len(chunk))]
            ids = connection.execute(insert(Recipient).returning(Recipient.id, sort_by_parameter_order=True),
                                     recipients).scalars().all()
            subs = []
            for recipient_id, (cadence, due) in zip(ids, chunk, strict=True):
                row = _schedule(rng, cadence)
                schedule = Schedule(**{"cadence": cadence, "at": row["send_at"], "day": row["weekday"],
                                       "tz": row["timezone"]})
                covered = None
                if cadence != "instant":
                    covered = latest_slot(schedule, NOW)
                    if due:
                        covered -= timedelta(days=7 if cadence == "weekly" else 1)
                row |= {"recipient_id": recipient_id, "query": rng.choice(queries), "name": None, "active": True,
                        "pending": False, "created_at": created, "updated_at": created, "match_since": created,
                        "version": 1, "digested_until": covered,
                        "next_due_at": None if cadence == "instant" else next_due(schedule, covered)}
                subs.append(row)
            connection.execute(insert(Subscription), subs)
    with engine.begin() as connection:  # the statistics autovacuum (or a long-lived SQLite) would have
        for table in ("subscriptions", "recipients"):
            connection.execute(text(f"ANALYZE {table}"))


def add_papers(engine, rng: random.Random, queries: list[str], count: int = 3_000) -> None:
    """Papers first seen a day ago, each matched by a few queries (5 to 12 papers a query)."""
    seen = NOW - timedelta(days=1)
    with engine.begin() as connection:
        papers = []
        for i in range(count):
            words = rng.sample(WORDS, 4)
            papers.append({"title": f"{words[0].capitalize()} {words[1]} for {words[2]} ({i})",
                           "title_key": f"paper-{i}", "abstract": " ".join(rng.choices(WORDS, k=150)),
                           "abstract_fp": f"{i:032x}", "authors_count": rng.randrange(1, 9),
                           "upvotes": rng.randrange(50), "published": None, "first_seen": seen})
        paper_ids = connection.execute(insert(Paper).returning(Paper.id, sort_by_parameter_order=True),
                                       papers).scalars().all()
        query_ids = connection.execute(insert(MatchQuery).returning(MatchQuery.id, sort_by_parameter_order=True),
                                       [{"query": q} for q in queries]).scalars().all()
        connection.execute(insert(QueryMatch), [{"query_id": qid, "paper_id": pid} for qid in query_ids
                                                for pid in rng.sample(paper_ids, rng.randrange(5, 13))])


def the_pass(engine, workdir: Path) -> tuple[float, int, float, float]:
    """One digest pass at NOW: (seconds, digests, peak MB, CPU seconds of this process)."""
    settings = Settings(**SETTINGS, outbox_dir=workdir / "outbox")
    builder = bootstrap(settings, engine=engine).digests
    with PeakRSS() as memory:
        started, cpu = time.perf_counter(), time.process_time()
        built = sum(1 for _ in builder.build_due_pages(NOW))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return elapsed, built, memory.mb, cpu


def nothing_due(url: str | None, size: int, rng: random.Random, workdir: Path) -> dict:
    db = Database(url, workdir, f"idle-{size}.db")
    try:
        queries = QUERIES
        started = time.perf_counter()
        cadences = [(rng.choices(("instant", "daily", "weekly"), (1, 3, 6))[0], False) for _ in range(size)]
        populate(db.engine, rng, cadences, queries)
        log(f"  {db.backend}: {size:,} subscriptions set up in {time.perf_counter() - started:.0f} s")
        runs = [the_pass(db.engine, workdir) for _ in range(3)]
        assert all(built == 0 for _, built, _, _ in runs), runs
        best = min(seconds for seconds, _, _, _ in runs)
        return {"backend": db.backend, "subscriptions": size, "pass_s": round(best, 3),
                "runs_s": [round(s, 3) for s, _, _, _ in runs], "peak_mb": max(mb for _, _, mb, _ in runs),
                "goal_met": best < 1.0 if size >= 1_000_000 else None}
    finally:
        db.close()


def weekly_due(url: str | None, count: int, rng: random.Random, workdir: Path) -> dict:
    db = Database(url, workdir, f"weekly-{count}.db")
    try:
        queries = QUERIES
        add_papers(db.engine, rng, queries)
        others = [(rng.choice(("instant", "daily")), False) for _ in range(50_000)]
        cadences = [("weekly", True)] * count + others
        rng.shuffle(cadences)
        started = time.perf_counter()
        populate(db.engine, rng, cadences, queries)
        log(f"  {db.backend}: {len(cadences):,} subscriptions ({count:,} weekly due) set up in "
            f"{time.perf_counter() - started:.0f} s")
        seconds, built, mb, cpu = the_pass(db.engine, workdir)
        with db.engine.connect() as connection:
            rows = connection.scalar(select(func.count()).select_from(OutboxMessage))
            payloads = connection.scalar(select(func.count()).select_from(OutboxPayload))
            still_due = connection.scalar(select(func.count()).select_from(Subscription)
                                          .where(Subscription.next_due_at <= NOW))
        assert built == rows == payloads == count and still_due == 0, (built, rows, payloads, still_due)
        per_s = built / seconds
        return {"backend": db.backend, "subscriptions": len(cadences), "weekly_due": count, "digests": built,
                "seconds": round(seconds, 1), "per_s": round(per_s), "cpu_s": round(cpu, 1),
                "per_cpu_s": round(built / cpu), "load_average": load_average(), "peak_mb": mb,
                "goal_met": per_s >= 500}
    finally:
        db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="subscriptions of the nothing-due runs")
    parser.add_argument("--weekly-due", type=int, default=100_000, help="weekly digests due in the build run")
    parser.add_argument("--database-url", default=None, help="also run on this PostgreSQL (a throw-away schema)")
    parser.add_argument("--no-sqlite", action="store_true", help="only the --database-url database")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settle_the_collector()
    results: dict = {"machine": machine(), "nothing_due": [], "weekly_due": []}
    urls = ([] if args.no_sqlite else [None]) + ([args.database_url] if args.database_url else [])
    with tempfile.TemporaryDirectory(prefix="digestbot-sched-") as tmp:
        workdir = Path(tmp)
        for url in urls:
            for size in map(int, args.sizes.split(",")):
                result = nothing_due(url, size, random.Random(args.seed), workdir)
                results["nothing_due"].append(result)
                log(f"nothing due, {result['backend']}, {size:,}: {result['pass_s']} s, peak +{result['peak_mb']} MB")
            if args.weekly_due:
                result = weekly_due(url, args.weekly_due, random.Random(args.seed), workdir)
                results["weekly_due"].append(result)
                log(f"weekly due, {result['backend']}, {result['digests']:,} digests: {result['per_s']:,}/s "
                    f"({result['seconds']} s; {result['per_cpu_s']:,}/CPU s), peak +{result['peak_mb']} MB, "
                    f"load {result['load_average']}")
    if args.json:
        print(json.dumps(results, indent=2))
    goals = [r["goal_met"] for r in results["nothing_due"] + results["weekly_due"] if r["goal_met"] is not None]
    return 0 if all(goals) else 1


if __name__ == "__main__":
    sys.exit(main())
