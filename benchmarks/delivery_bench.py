"""Digests and delivery benchmark: render, build and deliver personalised digests.

    .venv/bin/python benchmarks/delivery_bench.py [--digests 10000] [--latency-ms 50] [--workers 16]
        [--build-recipients 10000] [--sample 1000] [--database-url URL] [--seed 1] [--json]

Everything is generated from the sample dumps in examples/dumps with a fixed seed:

- papers: every entry of the samples (parsed with reference date 2026-11-22);
- queries: a pool of real query shapes (words, AND, phrases, OR, prefixes, title:, exclusions,
  hyphenated words) built from the samples' words, kept when the matcher finds 3 to 30 papers
  for them; about a third of the subscriptions get a name, which is then their label;
- recipients: ``reader00000@example.org``…, each with 1 to 3 subscriptions drawn from the pool
  with a Zipf-like weighting (popular queries are shared by many readers).

One run measures:

1. rendering: for each of --digests recipients, 5 to 25 papers drawn from what their queries
   match, each marked with the subscriptions that match it; timed is ``compose`` + ``Renderer
   .email`` (HTML with CSS inlining, and text), from empty memo caches (digestbot.core.digest
   memoises highlighting per set of queries and paper, and paper links: their hits and misses
   are reported), then for the first --sample of them: the same with those caches bypassed
   (what sharing between readers is worth), and ``compose`` + ``Renderer.slack``. Links are
   signed beforehand (that is the builder's job);
2. the build path: --build-recipients recipients imported with their subscriptions into a fresh
   SQLite database, the five samples ingested (and matched) after them, then timed:
   ``DigestBuilder.build_due`` for all of them (reads, compose, render, signed links, and the
   writes of the digest items and outbox rows);
3. delivery: the emails of step 1 queued in the outbox of a fresh SQLite database (and of the
   --database-url database too, when given) and sent by ``OutboxSender.send_all`` through the
   real ``SendGridChannel`` to ``FakeSendGrid`` (tests/fakes.py) answering after --latency-ms.
   The fake runs in a process of its own, as SendGrid runs on machines of its own: its CPU is
   not ours. Checked afterwards: the fake received exactly one request per email, with as
   many distinct ``custom_args.digestbot_key`` as emails, and every outbox row is ``sent``.

Exit status 1 when a goal is missed or a check fails.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import csv
import io
import itertools
import json
import multiprocessing
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo


from _common import ROOT, Database  # noqa: E402  (also puts the checkout on sys.path)
from _common import machine as common_machine  # noqa: E402

import css_inline  # noqa: E402
import jinja2  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

import digestbot.core.digest as digest_module  # noqa: E402
from digestbot.bootstrap import bootstrap, settle_the_collector  # noqa: E402
from digestbot.channels import channels_for  # noqa: E402
from digestbot.core.digest import PaperRef, SubscriptionRef, compose  # noqa: E402
from digestbot.core.dumps import parse_dump  # noqa: E402
from digestbot.core.batch import Batch  # noqa: E402
from digestbot.core.matcher import QueryIndex  # noqa: E402
from digestbot.core.query import parse_query  # noqa: E402
from digestbot.core.text import raw_words  # noqa: E402
from digestbot.core.tokens import LinkSigner  # noqa: E402
from digestbot.render import Links, Renderer, Sender, mail_domain  # noqa: E402
from digestbot.services.delivery import OutboxSender  # noqa: E402
from digestbot.services.ingest import ingest_paths  # noqa: E402
from digestbot.services.matching import SubscriptionMatcher  # noqa: E402
from digestbot.services.subscriptions import import_subscriptions  # noqa: E402
from digestbot.settings import Settings  # noqa: E402
from digestbot.store import DigestItem, OutboxMessage, Recipient, Store, connect, migrate  # noqa: E402

SAMPLES = ROOT / "examples" / "dumps"
REFERENCE = date(2026, 11, 22)  # the samples' dates are read as of this day
T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # subscriptions are made
INGEST = T0 + timedelta(minutes=30)  # the samples arrive
DUE = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # after every reader's 08:00 local daily slot (New York: 13:00 UTC)
MTIME = datetime(2026, 11, 22, 12, 0, tzinfo=UTC).timestamp()  # the dumps were saved the day before
TIMEZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata")  # 08:00 local is before DUE in each

GOALS = {  # measure -> (unit, minimum)
    "render_email": ("digests/s", 500.0),
    "delivery_sqlite": ("emails/s", 200.0),
    "delivery_postgresql": ("emails/s", 200.0),  # only with --database-url
}

SETTINGS = dict(
    secret_key="bench-signing-key", base_url="https://digest.example.com", from_email="digest@example.com",
    from_name="Paper Digest", postal_address="Digestbot Ltd, 1 Example Street, 10115 Berlin",
)

STOPWORDS = frozenset("""
a about above across after again against all along also although am among an and another any are as at
be because been before being below between both but by can could did do does doing down due during each
either etc even every few for from further had has have having here how however i if in into is it its
itself just less like made make makes many may might more most much must my no nor not of off often on
once one only or other others our ours out over own per same several she should since so some such than
that the their theirs them themselves then there thereby these they this those though through thus to
too two under until up upon us use used uses using very via was we well were what when where whether
which while who whom whose why will with within without would yet you your
abstract approach approaches based code com demonstrate effective existing experiments github http https
introduce method methods new novel org paper present propose proposed recent results show state work www
""".split())


# ---------------------------------------------------------------- the workload

class Workload:
    """Papers of the samples, a pool of queries that each match a handful of them, and readers."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        entries = []
        for path in sorted(SAMPLES.iterdir()):
            entries += parse_dump(path.read_bytes(), reference=REFERENCE).entries
        seen = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
        self.papers = [
            PaperRef(number, e.title, e.abstract, e.authors_count, e.upvotes, e.published,
                     seen + timedelta(minutes=number))
            for number, e in enumerate(entries, start=1)
        ]
        self._by_id = {p.id: p for p in self.papers}
        self.queries = self._query_pool()  # (query, matched paper ids), most popular first
        self._cumulative = list(itertools.accumulate(1.0 / rank for rank in range(1, len(self.queries) + 1)))
        self._nodes: dict[str, object] = {}

    def _query_pool(self, wanted: int = 600) -> list[tuple[str, frozenset[int]]]:
        rng = self.rng
        title_words = [w for p in self.papers for w in raw_words(p.title)]
        words = [w for w in title_words if len(w) >= 4 and w.isalpha() and w not in STOPWORDS]
        hyphenated = [w for w in title_words if "-" in w and all(part.isalpha() for part in w.split("-"))]
        pairs = [
            (a, b) for p in self.papers for a, b in itertools.pairwise(raw_words(p.title))
            if a.isalpha() and b.isalpha() and a not in STOPWORDS and b not in STOPWORDS
        ]
        shapes = {
            "word": lambda: rng.choice(words),
            "and2": lambda: f"{rng.choice(words)} {rng.choice(words)}",
            "phrase": lambda: '"{} {}"'.format(*rng.choice(pairs)),
            "or": lambda: f"{rng.choice(words)} OR {rng.choice(words)}",
            "prefix": lambda: rng.choice(words)[: rng.randint(5, 7)] + "*",
            "title": lambda: f"title:{rng.choice(words)}",
            "exclude": lambda: f"{rng.choice(words)} -{rng.choice(words)}",
            "hyphen": lambda: rng.choice(hyphenated),
        }
        candidates = sorted({shapes[rng.choice(list(shapes))]() for _ in range(wanted * 8)})
        index = QueryIndex()
        for number, query in enumerate(candidates):
            index.add(number, parse_query(query))
        batch = Batch([(p.title, p.abstract) for p in self.papers], index.vocabulary)
        found: dict[int, set[int]] = {}
        for number, position in index.match(batch):
            found.setdefault(number, set()).add(self.papers[position].id)
        pool = [(candidates[n], frozenset(ids)) for n, ids in sorted(found.items()) if 3 <= len(ids) <= 30]
        rng.shuffle(pool)
        return pool[:wanted]

    def node(self, query: str):
        if query not in self._nodes:
            self._nodes[query] = parse_query(query)
        return self._nodes[query]

    def _draw_query(self) -> tuple[str, frozenset[int]]:
        total = self._cumulative[-1]
        return self.queries[min(len(self.queries) - 1, bisect.bisect_left(self._cumulative, self.rng.random() * total))]

    def readers(self, count: int) -> list[dict]:
        """``count`` readers: address, timezone and 1-3 subscriptions (query, name or None)."""
        rng = self.rng
        readers = []
        for number in range(count):
            chosen: dict[str, frozenset[int]] = {}
            for _ in range(rng.choice((1, 1, 2, 2, 2, 3))):
                query, ids = self._draw_query()
                chosen[query] = ids
            while len(frozenset().union(*chosen.values())) < 5:  # at least 5 papers for everyone
                query, ids = self._draw_query()
                chosen[query] = ids
            subs = [(query, _name(query, rng) if rng.random() < 0.33 else None, ids) for query, ids in chosen.items()]
            readers.append({"address": f"reader{number:05d}@example.org", "tz": rng.choice(TIMEZONES), "subs": subs})
        return readers

    def matched(self, reader: dict, first_sub_id: int) -> dict[int, tuple[PaperRef, list[SubscriptionRef]]]:
        """5-25 of the papers this reader's subscriptions match, each with the subscriptions that match it."""
        refs = [(SubscriptionRef(first_sub_id + i, name or query, self.node(query)), ids)
                for i, (query, name, ids) in enumerate(reader["subs"])]
        union = sorted(frozenset().union(*(ids for _, ids in refs)))
        chosen = self.rng.sample(union, min(len(union), self.rng.randint(5, 25)))
        return {pid: (self._by_id[pid], [ref for ref, ids in refs if pid in ids]) for pid in chosen}


def _name(query: str, rng: random.Random) -> str:
    word = re.sub(r"[^\w -]", "", query.split()[0].removeprefix("title:")).strip("-") or "papers"
    return rng.choice((f"{word.capitalize()} watch", f"My {word} feed", f"{word.upper()} & friends", f"Team {word}"))


# ---------------------------------------------------------------- 1. rendering

def measure_render(work: Workload, readers: list[dict], sample_size: int) -> tuple[dict, list[tuple[str, str]]]:
    """Render every reader's email digest; returns the figures and the (key, payload JSON) of each."""
    settings = Settings(**SETTINGS)
    signer = LinkSigner(settings.secret_key, settings.base_url)
    sender = Sender(settings.from_email, settings.from_name, settings.postal_address)
    renderer = Renderer()
    domain = mail_domain(settings.from_email)

    jobs = []  # prepared beforehand: what the builder reads from the database and signs
    sub_id = 1
    for number, reader in enumerate(readers, start=1):
        matched = work.matched(reader, sub_id)
        ids = sorted({s.id for _, subs in matched.values() for s in subs})
        sub_id += len(reader["subs"])
        digest_key = f"d{number}-d-{uuid.UUID(int=work.rng.getrandbits(128)).hex[:12]}"
        links = Links(
            manage=signer.manage_url(number), unsubscribe=signer.unsubscribe_url(number, ids),
            per_subscription={i: signer.unsubscribe_url(number, [i]) for i in ids},
            see_all=signer.digest_url(number, digest_key),
        )
        slot = datetime(2026, 11, 23, 8, 0, tzinfo=ZoneInfo(reader["tz"]))
        jobs.append((reader["address"], matched, slot, links, digest_key))

    def render_email(job):
        address, matched, slot, links, digest_key = job
        digest = compose(recipient=address, cadence="daily", matched=matched, slot_local=slot,
                         max_papers=settings.digest_max_papers, paper_url=settings.paper_url)
        key = f"{digest_key}-1"
        return digest, renderer.email(digest, links, sender, key=key, message_id=f"<{key}@{domain}>",
                                       max_bytes=settings.max_email_bytes)

    # Compile the templates, then start from empty memo caches, as a freshly started process does.
    render_email(jobs[0])
    for cached in _memoised():
        cached.cache_clear()
    start, start_cpu = time.perf_counter(), time.process_time()
    results = [render_email(job) for job in jobs]
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu

    papers = [len(digest.papers) for digest, _ in results]
    html = [len(payload["html"]) for _, payload in results]
    email = {
        "digests": len(results), "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3),
        "per_s": round(len(results) / seconds, 1),
        "papers_per_digest": {"min": min(papers), "mean": round(sum(papers) / len(papers), 1), "max": max(papers)},
        "html_kb_mean": round(sum(html) / len(html) / 1000, 1),
        "memo_caches": {f.__name__: {"hits": f.cache_info().hits, "misses": f.cache_info().misses}
                        for f in _memoised()},
    }
    figures = {"render_email": email}
    if _memoised():  # what sharing between readers is worth: the same digests, nothing memoised
        sample = jobs[:sample_size]
        with _without_memo():
            start, start_cpu = time.perf_counter(), time.process_time()
            for job in sample:
                render_email(job)
            seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        figures["render_email_unmemoised"] = {"digests": len(sample), "seconds": round(seconds, 3),
                                              "cpu_seconds": round(cpu, 3), "per_s": round(len(sample) / seconds, 1)}

    sample = jobs[:sample_size]
    start, start_cpu = time.perf_counter(), time.process_time()
    messages = 0
    for address, matched, slot, links, digest_key in sample:
        digest = compose(recipient="#papers", cadence="daily", matched=matched, slot_local=slot,
                         max_papers=settings.digest_max_papers, paper_url=settings.paper_url)
        messages += len(renderer.slack(digest, links, channel="#papers", key=digest_key))
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    slack = {"digests": len(sample), "messages": messages, "seconds": round(seconds, 3),
             "cpu_seconds": round(cpu, 3), "per_s": round(len(sample) / seconds, 1) if sample else 0.0}

    payloads = [(payload["key"], json.dumps(payload, ensure_ascii=False)) for _, payload in results]
    return figures | {"render_slack": slack}, payloads


_MEMOISED = ("_highlighter", "_highlighted", "paper_link")  # functools caches of digestbot.core.digest


def _memoised() -> list:
    return [f for f in (getattr(digest_module, name, None) for name in _MEMOISED) if hasattr(f, "cache_info")]


@contextlib.contextmanager
def _without_memo():
    """digestbot.core.digest with its memo caches bypassed (compose looks them up on every call)."""
    originals = {f.__name__: f for f in _memoised()}
    try:
        for name, f in originals.items():
            setattr(digest_module, name, f.__wrapped__)
        yield
    finally:
        for name, f in originals.items():
            setattr(digest_module, name, f)


# ---------------------------------------------------------------- 2. the build path

def measure_build(work: Workload, readers: list[dict], workdir: Path) -> dict:
    settings = Settings(**SETTINGS, database_url=f"sqlite:///{workdir / 'build.db'}")
    engine = connect(settings.database_url)
    migrate(engine)
    try:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["recipient", "query", "name", "tz"])
        for reader in readers:
            for query, name, _ in reader["subs"]:
                writer.writerow([reader["address"], query, name or "", reader["tz"]])
        report = import_subscriptions(Store(engine), out.getvalue(), T0)
        if report.errors:
            raise SystemExit(f"build: import failed: {report.errors[:3]}")

        dumps = workdir / "dumps"
        dumps.mkdir()
        for path in sorted(SAMPLES.iterdir()):
            shutil.copyfile(path, dumps / path.name)
            os.utime(dumps / path.name, (MTIME, MTIME))
        ingested = ingest_paths(Store(engine), [dumps], now=INGEST, settle_seconds=0, matcher=SubscriptionMatcher())
        if any(f.status != "ingested" for f in ingested.files):
            raise SystemExit(f"build: ingest failed: {[f.as_json() for f in ingested.files]}")

        builder = bootstrap(settings, engine=engine).digests
        start, start_cpu = time.perf_counter(), time.process_time()
        built = builder.build_due(DUE)
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu

        with Session(engine) as session:
            outbox = session.scalar(select(func.count()).select_from(OutboxMessage))
            items = session.scalar(select(func.count()).select_from(DigestItem))
        if len(built) != len(readers) or outbox != len(readers):
            raise SystemExit(f"build: {len(built)} digests and {outbox} outbox rows for {len(readers)} readers")
        papers = [b.papers for b in built]
        return {
            "recipients": len(readers), "subscriptions": report.imported, "papers": ingested.new,
            "matches": ingested.matches, "digests": len(built), "outbox_rows": outbox, "digest_items": items,
            "papers_per_digest": {"min": min(papers), "mean": round(sum(papers) / len(papers), 1), "max": max(papers)},
            "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "per_s": round(len(built) / seconds, 1),
        }
    finally:
        engine.dispose()


# ---------------------------------------------------------------- 3. delivery

def _serve_fake(conn, latency: float) -> None:
    """In a child process: FakeSendGrid until told to stop, then what it received."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fakes import FakeSendGrid, _QuietServer

    # A real provider does not refuse connections beyond a listen backlog of 5 (socketserver's
    # default): with many senders at once, the fake's refusals would be measured, not ours.
    _QuietServer.request_queue_size = 256
    with FakeSendGrid(latency=latency) as fake:
        conn.send(fake.url)
        conn.recv()  # "stop"
        requests = list(fake.requests)
    keys = [json.loads(r.body)["custom_args"]["digestbot_key"] for r in requests if r.path == "/v3/mail/send"]
    conn.send({"requests": len(requests), "mails": len(keys), "keys": keys})
    conn.close()


def queue_emails(engine, payloads: list[tuple[str, str]]) -> None:
    """One pending outbox row per email, for one recipient each, as the builder leaves them."""
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        session.execute(insert(Recipient), [
            {"address": f"reader{n:05d}@example.org", "kind": "email", "created_at": now} for n in range(len(payloads))
        ])
        ids = dict(session.execute(select(Recipient.address, Recipient.id)).all())
        rows = []
        for n, (key, payload) in enumerate(payloads):
            rows.append({"recipient_id": ids[f"reader{n:05d}@example.org"], "channel": "email", "kind": "daily",
                         "digest_key": key.removesuffix("-1"), "part": 1, "subject": json.loads(payload)["subject"],
                         "payload": payload, "status": "pending", "attempts": 0, "next_attempt_at": now,
                         "created_at": now})
        for start in range(0, len(rows), 1000):
            session.execute(insert(OutboxMessage), rows[start:start + 1000])


def measure_delivery(payloads: list[tuple[str, str]], db: Database, latency: float, workers: int,
                     workdir: Path) -> dict:
    queue_emails(db.engine, payloads)
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    fake = context.Process(target=_serve_fake, args=(theirs, latency), daemon=True)
    fake.start()
    try:
        if not ours.poll(60):
            raise SystemExit(f"delivery: FakeSendGrid did not start (exit code {fake.exitcode})")
        url = ours.recv()
        settings = Settings(**SETTINGS, database_url=db.url, outbox_dir=workdir / "outbox", email_backend="sendgrid",
                            sendgrid_api_key="SG.bench", sendgrid_api_host=url, send_workers=workers)
        sender = OutboxSender(Store(db.engine), channels_for(settings), settings)
        start, start_cpu = time.perf_counter(), time.process_time()
        report = sender.send_all()
        seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        ours.send("stop")
        if not ours.poll(120):
            raise SystemExit(f"delivery: FakeSendGrid did not answer (exit code {fake.exitcode})")
        received = ours.recv()
    finally:
        fake.join(timeout=30)
        if fake.is_alive():
            fake.kill()

    with Session(db.engine) as session:
        statuses = dict(session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
        with_provider_id = session.scalar(select(func.count()).select_from(OutboxMessage)
                                          .where(OutboxMessage.provider_id.is_not(None)))
    expected = {key for key, _ in payloads}
    keys = Counter(received["keys"])
    checks = {
        "requests == emails": received["requests"] == len(payloads),
        "distinct keys == emails": len(keys) == len(payloads) and set(keys) == expected,
        "every row sent": statuses == {"sent": len(payloads)} and with_provider_id == len(payloads),
        "report": (report.sent, report.failed, report.retrying) == (len(payloads), 0, 0),
    }
    return {
        "database": db.backend, "emails": len(payloads), "workers": workers, "latency_ms": round(latency * 1000, 1),
        "ceiling_per_s": round(workers / latency, 1) if latency else None,
        "seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3), "per_s": round(len(payloads) / seconds, 1),
        "requests": received["requests"], "distinct_keys": len(keys), "statuses": statuses,
        "report": report.as_json() | {"errors": report.errors[:3]},
        "checks": checks, "ok": all(checks.values()),
    }


# ---------------------------------------------------------------- reporting

def machine() -> dict:
    return {
        **common_machine(),
        "jinja2": jinja2.__version__,
        "css_inline": getattr(css_inline, "__version__", _version("css-inline")),
        "sendgrid": _version("sendgrid"),
    }


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def verdicts(results: dict) -> dict:
    out = {}
    for name, (unit, minimum) in GOALS.items():
        if name in results:
            value = results[name]["per_s"]
            out[name] = {"goal": f">= {minimum:,.0f} {unit}", "value": value, "pass": value >= minimum}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digests", type=int, default=10_000, help="digests rendered and emails delivered (default 10000)")
    parser.add_argument("--build-recipients", type=int, help="recipients of the build path (default: --digests)")
    parser.add_argument("--sample", type=int, default=1000,
                        help="digests also rendered for Slack, and without memo caches (default 1000)")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="FakeSendGrid's answer delay (default 50)")
    parser.add_argument("--workers", type=int, default=Settings().send_workers,
                        help=f"sending threads (default: DIGESTBOT_SEND_WORKERS's default, {Settings().send_workers})")
    parser.add_argument("--database-url", help="also deliver through this database (PostgreSQL: a temporary schema)")
    parser.add_argument("--skip", action="append", default=[], choices=["render", "build", "delivery"],
                        help="leave out a part (delivery sends the emails that render made: it needs render)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the workload (default 1)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.digests < 1 or args.workers < 1 or args.latency_ms < 0:
        parser.error("--digests and --workers must be at least 1, --latency-ms not negative")
    settle_the_collector()  # as every entry point does
    build_recipients = args.build_recipients or args.digests
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        os.environ.pop(name, None)  # the SDK would send through a proxy: keep every request on 127.0.0.1

    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    start_load = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    work = Workload(args.seed)
    readers = work.readers(max(args.digests, build_recipients))
    log(f"workload: {len(work.papers)} papers, {len(work.queries)} queries in the pool, "
        f"{len(readers):,} readers with {sum(len(r['subs']) for r in readers):,} subscriptions "
        f"({time.perf_counter() - started:.1f}s)")

    results: dict = {}
    payloads: list = []
    with tempfile.TemporaryDirectory(prefix="digestbot-bench-") as tmp:
        workdir = Path(tmp)
        if "render" not in args.skip:
            figures, payloads = measure_render(work, readers[: args.digests], args.sample)
            results |= figures
            log(f"render: email {figures['render_email']['per_s']:,} digests/s, "
                f"slack {figures['render_slack']['per_s']:,} digests/s"
                + (f", email without memo caches {figures['render_email_unmemoised']['per_s']:,} digests/s"
                   if "render_email_unmemoised" in figures else ""))
        if "build" not in args.skip:
            results["build_due"] = measure_build(work, readers[:build_recipients], workdir)
            log(f"build_due: {results['build_due']['per_s']:,} digests/s")
        if "delivery" not in args.skip and payloads:
            targets = [("delivery_sqlite", None)] + ([("delivery_" + make_url(args.database_url).get_backend_name(),
                                                       args.database_url)] if args.database_url else [])
            for name, url in targets:
                db = Database(url, workdir, f"{name}.db")
                try:
                    results[name] = measure_delivery(payloads, db, args.latency_ms / 1000, args.workers, workdir)
                finally:
                    db.close()
                log(f"{name}: {results[name]['per_s']:,} emails/s, checks {results[name]['checks']}")

    facts = machine()
    judged = verdicts(results)
    checks_ok = all(r.get("ok", True) for r in results.values())
    if args.json:
        print(json.dumps({"digests": args.digests, "machine": {**facts, "load_average_before": start_load},
                          "results": results, "goals": judged, "checks_ok": checks_ok}, indent=2))
    else:
        print(f"machine: {facts['python']}, {facts['cpu_count']} CPUs ({facts['processor']}), "
              f"{facts['memory_gb']} GiB, {facts['platform']}")
        print(f"         SQLAlchemy {facts['sqlalchemy']}, SQLite {facts['sqlite']}, Jinja2 {facts['jinja2']}, "
              f"css-inline {facts['css_inline']}, sendgrid {facts['sendgrid']}")
        print(f"         load average before: {start_load}, after: {facts['load_average']} (1, 5, 15 min)")
        print(f"{'measure':<22}{'count':>8}{'seconds':>10}{'cpu s':>9}{'per s':>10}   goal")
        for name, figures in results.items():
            count = figures.get("digests") or figures.get("emails")
            verdict = judged.get(name)
            goal = f"{verdict['goal']}: {'PASS' if verdict['pass'] else 'FAIL'}" if verdict else ""
            print(f"{name:<22}{count:>8,}{figures['seconds']:>10.3f}{figures['cpu_seconds']:>9.3f}"
                  f"{figures['per_s']:>10,.1f}   {goal}")
        if "render_email" in results:
            memo = results["render_email"]["memo_caches"]
            print("render_email: " + (", ".join(f"{name} {m['hits']:,} hits / {m['misses']:,} misses"
                                                for name, m in memo.items()) or "no memo caches"))
        if "build_due" in results:
            build = results["build_due"]
            print(f"build_due: {build['recipients']:,} recipients, {build['subscriptions']:,} subscriptions, "
                  f"{build['papers']} papers, {build['matches']:,} matches -> {build['digests']:,} digests "
                  f"({build['papers_per_digest']['mean']} papers each), {build['digest_items']:,} digest items")
        for name, figures in results.items():
            if "checks" in figures:
                print(f"{name}: {figures['workers']} workers, FakeSendGrid (own process) answering after "
                      f"{figures['latency_ms']:g} ms: at most {figures['ceiling_per_s']:,} emails/s")
                print(f"{name} checks: " + ", ".join(f"{k}: {'ok' if v else 'FAILED'}" for k, v in figures["checks"].items())
                      + f" ({figures['requests']:,} requests, {figures['distinct_keys']:,} keys, {figures['statuses']})")
    return 0 if checks_ok and all(v["pass"] for v in judged.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
