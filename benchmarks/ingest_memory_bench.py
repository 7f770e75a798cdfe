"""Ingest memory benchmark: peak memory of ingesting one very large dump, first and again.

    .venv/bin/python benchmarks/ingest_memory_bench.py [--papers 1000000] [--database-url URL] [--json]

A dump of --papers short entries (a title of 4-9 sample title words, a one-sentence abstract
from the samples, every tenth with a metadata block; each made distinct by its number) is
generated twice, under two snapshot dates, so that it stays under the default
DIGESTBOT_MAX_DUMP_BYTES (1,000,000 entries: about 190 MB). Each ingest runs in a fresh
process, whose peak resident memory (VmHWM) is reported beside the memory of the same
process before it ingests (the interpreter, digestbot and the engine), and its time:

1. first ingest: into a fresh, migrated database (every paper new);
2. re-ingest: the second file (every paper unchanged).

The memory an ingest takes should not grow with the file: compare --papers 100000 and 1000000.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from _common import ROOT, Database, load_average, machine  # noqa: E402  (also puts the checkout on sys.path)

MB = 1_000_000
MTIME = datetime(2024, 12, 1, 12, tzinfo=UTC).timestamp()
SNAPSHOTS = ("Nov 21", "Nov 22")


def status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status: VmRSS (now) or VmHWM (peak). Not
    ru_maxrss: Linux carries that across fork and exec, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_dumps(folder: Path, papers: int, seed: int) -> list[Path]:
    """Two dumps of the same ``papers`` entries under two snapshot dates."""
    from digestbot.core.dumps import parse_dump

    entries = [e for p in sorted((ROOT / "examples" / "dumps").iterdir())
               for e in parse_dump(p.read_bytes(), date(2025, 11, 22)).entries]
    words = [w for e in entries for w in e.title.split()]
    sentences = [s.strip() + "." for e in entries for s in e.abstract.split(". ") if 40 < len(s) < 120]
    rng = random.Random(seed)
    lines = []
    for number in range(papers):
        lines += [f"{' '.join(rng.choices(words, k=rng.randint(4, 9)))} ({number})", "",
                  f"{rng.choice(sentences)} Study {number}.", ""]
        if number % 10 == 0:
            lines += [f"  • {rng.randint(1, 40)} authors", "·", f"Oct {rng.randint(1, 28)}, 2024 {rng.randint(1, 99)}", ""]
    body = "\n".join(lines)
    paths = []
    for name, snapshot in zip(("dump-1.txt", "dump-2.txt"), SNAPSHOTS):
        path = folder / name
        path.write_text(f"Daily Papers\n\n{snapshot}\n\n{body}", encoding="utf-8")
        os.utime(path, (MTIME, MTIME))
        paths.append(path)
    return paths


def child(url: str, path: str, expect: str, papers: int) -> None:
    """One ingest in this fresh process: prints its figures as JSON."""
    from digestbot.bootstrap import settle_the_collector
    from digestbot.services.ingest import ingest_paths
    from digestbot.services.matching import SubscriptionMatcher
    from digestbot.store import Store, connect

    engine = connect(url)
    settle_the_collector()  # as every entry point does
    before = status_mb("VmRSS")
    start, start_cpu = time.perf_counter(), time.process_time()
    (result,) = ingest_paths(Store(engine), [Path(path)], now=datetime.now(UTC), settle_seconds=0,
                             matcher=SubscriptionMatcher()).files
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    counts = {"new": result.new, "updated": result.updated, "unchanged": result.unchanged}
    if result.status != "ingested" or counts[expect] != papers:
        raise SystemExit(f"{path}: {result.status} {counts} {result.note or ''}; expected {papers} {expect}")
    print(json.dumps({"rss_before_mb": round(before, 1),
                      "peak_rss_mb": round(status_mb("VmHWM"), 1),
                      "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                      "papers_per_s": round(papers / seconds)}))


def measure(url: str, path: Path, expect: str, papers: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", url, str(path), expect, str(papers)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.strip() or proc.stdout.strip())
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--papers", type=int, default=1_000_000, help="entries in the dump (default 1000000)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default: a temporary SQLite file)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated dump (default 1)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        url, path, expect, papers = args.child
        child(url, path, expect, int(papers))
        return 0
    if args.papers < 1:
        parser.error("--papers must be at least 1")
    from digestbot.bootstrap import settle_the_collector

    settle_the_collector()  # as every entry point does

    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    facts = {**machine(), "load_average_before": load_average()}
    with tempfile.TemporaryDirectory(prefix="digestbot-membench-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        first, again = write_dumps(workdir, args.papers, args.seed)
        size = first.stat().st_size
        log(f"generated {args.papers:,} entries, {size / MB:.1f} MB per file, in {time.perf_counter() - started:.1f}s")
        db = Database(args.database_url, workdir)
        try:
            db.engine.dispose()
            results = {"first_ingest": measure(db.url, first, "new", args.papers),
                       "reingest": measure(db.url, again, "unchanged", args.papers)}
        finally:
            db.close()
    facts.update(database=db.backend, load_average_after=load_average())
    if args.json:
        print(json.dumps({"papers": args.papers, "dump_mb": round(size / MB, 1), "machine": facts,
                          "results": results}, indent=2))
        return 0
    print(f"machine: {facts['python']}, {facts['cpu_count']} CPUs ({facts['processor']}), database: {facts['database']}")
    print(f"         load average before: {facts['load_average_before']}, after: {facts['load_average_after']}")
    print(f"dump: {args.papers:,} entries, {size / MB:.1f} MB")
    print(f"{'measure':<14}{'RSS before':>12}{'peak RSS':>12}{'seconds':>10}{'cpu s':>9}{'papers/s':>11}")
    for name, r in results.items():
        print(f"{name:<14}{r['rss_before_mb']:>9.0f} MB{r['peak_rss_mb']:>9.0f} MB{r['seconds']:>10.1f}"
              f"{r['cpu_seconds']:>9.1f}{r['papers_per_s']:>11,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
