"""Ingest benchmark: parse, first ingest and re-ingest of a large generated Daily Papers dump.

    .venv/bin/python benchmarks/ingest_bench.py [--papers 50000] [--database-url URL] [--json]

The dump is generated from the vocabulary of examples/dumps (title words, abstract sentences,
the metadata blocks of the 004_ sample) with a fixed seed, so every run measures the same bytes.
Three figures, each as papers/s and MB/s of dump file (1 MB = 10^6 bytes), with wall-clock and CPU
seconds (the CPU figure is the steadier one when other work shares the machine):

1. parse only: ``parse_dump`` on the file's bytes (median of --parse-repeats runs);
2. first ingest: ``ingest_paths`` into a fresh, migrated database: every paper is new;
3. re-ingest: a second file with the same papers under another snapshot date (so its SHA-256
   differs and it is not skipped as already seen): every paper is unchanged.

The database is a temporary SQLite file unless --database-url says otherwise. A PostgreSQL URL
gets a temporary schema of its own, dropped afterwards; a SQLite URL must name a new file.
With --strict the exit status is 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path


from _common import ROOT, Database, load_average, machine  # noqa: E402  (also puts the checkout on sys.path)


from digestbot.bootstrap import settle_the_collector  # noqa: E402
from digestbot.core.dumps import parse_dump  # noqa: E402
from digestbot.core.identity import abstract_fingerprint, title_key  # noqa: E402
from digestbot.services.ingest import ingest_paths  # noqa: E402
from digestbot.services.matching import SubscriptionMatcher  # noqa: E402
from digestbot.store import Store  # noqa: E402

SAMPLES = ROOT / "examples" / "dumps"
MB = 1_000_000

GOALS = {  # measure -> (unit, minimum)
    "parse": ("MB/s", 50.0),
    "first_ingest": ("papers/s", 10_000.0),
    "reingest": ("papers/s", 50_000.0),
}

HEADER = ["new", "Get trending papers in your email inbox!", "Subscribe", "Daily Papers",
          "byAK and the research community"]
# The snapshot dates of the two files, and the fixed mtime that pins their year: the parser
# infers missing years from the file's mtime, and this keeps every run's dates identical.
SNAPSHOTS = ("Nov 21", "Nov 22")
MTIME = datetime(2024, 12, 1, 12, tzinfo=UTC).timestamp()
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
METADATA_SHARE = 0.4  # of entries followed by a "• N authors / · / date" block, as in 004_

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")


# ---------------------------------------------------------------- generating the dumps

class Vocabulary:
    """Words of the sample titles and sentences of the sample abstracts."""

    def __init__(self, samples: Path) -> None:
        entries = []
        for path in sorted(samples.iterdir()):
            entries += parse_dump(path.read_bytes(), reference=date(2025, 11, 22)).entries
        titles = [e.title for e in entries]
        self.names = sorted({t.split(":")[0] for t in titles if ":" in t and len(t.split(":")[0]) <= 24})
        self.title_words = [w for t in titles for w in t.split(":")[-1].split()]
        self.sentences = [s for e in entries for s in _SENTENCE_END.split(e.abstract)]
        # Abstract lengths, in sentences, follow the samples'.
        self.abstract_sizes = [len(_SENTENCE_END.split(e.abstract)) for e in entries]

    def title(self, rng: random.Random) -> str:
        words = " ".join(rng.choices(self.title_words, k=rng.randint(5, 12)))
        words = words[0].upper() + words[1:]
        return f"{rng.choice(self.names)}: {words}" if rng.random() < 0.5 else words

    def abstract(self, rng: random.Random) -> str:
        return " ".join(rng.choices(self.sentences, k=rng.choice(self.abstract_sizes)))


def metadata_block(rng: random.Random) -> list[str]:
    """A block like the 004_ sample's: "  • 7 authors", "·", "Oct 16, 2023 12" (year, upvotes optional)."""
    authors = rng.randint(1, 40)
    # No-year dates stay in Jan-Oct: both snapshots (Nov 21/22) then infer the same year for them.
    month = rng.choice(MONTHS if rng.random() < 0.5 else MONTHS[:10])
    when = f"{month} {rng.randint(1, 28)}"
    if month in MONTHS[10:] or rng.random() < 0.5:
        when += f", {rng.randint(2019, 2024)}"
    if rng.random() < 0.5:
        when += f" {rng.randint(1, 120)}"
    return [f"  • {authors} author{'s' if authors > 1 else ''}", "·", when]


def generate_papers(count: int, seed: int) -> list[list[str]]:
    """``count`` distinct papers (no two share a title key or an abstract fingerprint), as lines."""
    vocabulary, rng = Vocabulary(SAMPLES), random.Random(seed)
    keys: set[str] = set()
    fingerprints: set[str] = set()
    papers: list[list[str]] = []
    while len(papers) < count:
        title, abstract = vocabulary.title(rng), vocabulary.abstract(rng)
        key, fp = title_key(title), abstract_fingerprint(abstract)
        if key in keys or fp in fingerprints:
            continue  # would be folded into an earlier paper: draw again
        keys.add(key)
        fingerprints.add(fp)
        lines = [title, "", abstract, ""]
        if rng.random() < METADATA_SHARE:
            lines += [*metadata_block(rng), ""]
        papers.append(lines)
    return papers


def write_dump(path: Path, snapshot: str, papers: list[list[str]]) -> int:
    lines = [line for chrome in HEADER for line in (chrome, "")] + [snapshot, ""]
    body = "\n".join(lines + [line for paper in papers for line in paper])
    path.write_text(body, encoding="utf-8", newline="\n")
    os.utime(path, (MTIME, MTIME))
    return path.stat().st_size


# ---------------------------------------------------------------- databases

def rates(papers: int, size: int, seconds: float, cpu_seconds: float) -> dict:
    """Rates by wall-clock time; CPU time too, a steadier figure when the machine is busy."""
    return {"seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3),
            "papers_per_s": round(papers / seconds), "mb_per_s": round(size / MB / seconds, 1)}


def measure_parse(path: Path, papers: int, repeats: int) -> dict:
    data = path.read_bytes()
    reference = datetime.fromtimestamp(MTIME, UTC).date()
    timings, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        dump = parse_dump(data, reference=reference)
        timings.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        if len(dump.entries) != papers:
            raise SystemExit(f"parse: {len(dump.entries)} entries, expected {papers}")
        del dump
    return {**rates(papers, len(data), statistics.median(timings), statistics.median(cpu)),
            "runs": [round(t, 3) for t in timings]}


def measure_ingest(db: Database, path: Path, papers: int, expect: str) -> dict:
    start, start_cpu = time.perf_counter(), time.process_time()
    report = ingest_paths(Store(db.engine), [path], now=datetime.now(UTC), settle_seconds=0,
                          matcher=SubscriptionMatcher())
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    (result,) = report.files
    counts = {"new": result.new, "updated": result.updated, "unchanged": result.unchanged}
    if result.status != "ingested" or counts[expect] != papers:
        raise SystemExit(f"ingest of {path.name}: {result.status} {counts} {result.note or ''}; "
                         f"expected {papers} {expect}")
    return rates(papers, path.stat().st_size, seconds, cpu_seconds)


def verdicts(results: dict, backend: str) -> dict:
    out = {}
    for name, (unit, minimum) in GOALS.items():
        value = results[name]["mb_per_s" if unit == "MB/s" else "papers_per_s"]
        goal = f">= {minimum:,.0f} {unit}"
        if name == "first_ingest" and backend != "sqlite":
            goal += " (set for SQLite)"
        out[name] = {"goal": goal, "value": value, "pass": value >= minimum}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=50_000, help="papers in the generated dump (default 50000)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: a temporary SQLite file)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated dump (default 1)")
    parser.add_argument("--parse-repeats", type=int, default=3, help="parse runs; the median counts (default 3)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if a goal is missed")
    args = parser.parse_args(argv)
    if args.papers < 1 or args.parse_repeats < 1:
        parser.error("--papers and --parse-repeats must be at least 1")
    settle_the_collector()  # as every entry point does

    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    facts = {**machine(), "load_average_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="digestbot-bench-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        papers = generate_papers(args.papers, args.seed)
        first, again = workdir / "dump-1.txt", workdir / "dump-2.txt"
        size = write_dump(first, SNAPSHOTS[0], papers)
        write_dump(again, SNAPSHOTS[1], papers)
        del papers
        log(f"generated {args.papers:,} papers, {size / MB:.1f} MB per file, "
            f"in {time.perf_counter() - started:.1f}s")

        db = Database(args.database_url, workdir)
        try:
            results = {
                "parse": measure_parse(first, args.papers, args.parse_repeats),
                "first_ingest": measure_ingest(db, first, args.papers, "new"),
                "reingest": measure_ingest(db, again, args.papers, "unchanged"),
            }
        finally:
            db.close()

    facts.update(database=db.backend, load_average_after=load_average())
    judged = verdicts(results, db.backend)
    if args.json:
        print(json.dumps({"papers": args.papers, "dump_mb": round(size / MB, 2), "machine": facts,
                          "results": results, "goals": judged}, indent=2))
    else:
        print(f"machine: {facts['python']}, {facts['cpu_count']} CPUs ({facts['processor']}), "
              f"{facts['platform']}")
        print(f"         SQLAlchemy {facts['sqlalchemy']}, SQLite {facts['sqlite']}, database: {facts['database']}")
        print(f"         load average before: {facts['load_average_before']}, "
              f"after: {facts['load_average_after']} (1, 5, 15 min)")
        print(f"dump: {args.papers:,} papers, {size / MB:.1f} MB")
        print(f"{'measure':<14}{'seconds':>9}{'cpu s':>9}{'papers/s':>12}{'MB/s':>9}   goal")
        for name, figures in results.items():
            verdict = judged[name]
            print(f"{name:<14}{figures['seconds']:>9.3f}{figures['cpu_seconds']:>9.3f}"
                  f"{figures['papers_per_s']:>12,}{figures['mb_per_s']:>9.1f}"
                  f"   {verdict['goal']}: {'PASS' if verdict['pass'] else 'FAIL'}")
    return 1 if args.strict and not all(v["pass"] for v in judged.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
