"""Sources benchmark: parsing the Hugging Face daily-papers JSON and arXiv Atom, and a re-fetch of an
unchanged day.

    .venv/bin/python benchmarks/sources_bench.py [--items 20000] [--repeats 3] [--json] [--strict]

1. parse: a large HF answer and a large arXiv RSS Atom feed, generated from the items of
   examples/sources (ids and titles varied, fixed seed), read as ingest reads a file: fed to the
   reader chosen by content in 1 MB blocks. MB/s of input (1 MB = 10^6 bytes) over CPU seconds,
   the median of --repeats runs. Goal: at least 20 MB/s each. For comparison, feedparser on the
   same Atom bytes (it parses a whole document in memory, and was not chosen for that reason and
   this one).
2. re-fetch: `digestbot fetch hf-daily` twice against a fake HF server on loopback (tests/fakes.py)
   into a temporary database and watch folder: the second fetch must cost one request (a
   conditional one, answered 304) and write no file, so that ingest has nothing to do.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

from _common import ROOT, Database, load_average, machine  # noqa: E402  (also puts the checkout on sys.path)

sys.path.insert(0, str(ROOT / "tests"))  # the fake servers

from digestbot.core.sources import reader_for  # noqa: E402
from digestbot.services.fetch import fetch_sources  # noqa: E402
from digestbot.settings import Settings  # noqa: E402
from digestbot.store import Store  # noqa: E402

HF = ROOT / "examples" / "sources" / "hf-daily_2025-12-03.json"
RSS = ROOT / "examples" / "sources" / "arxiv_cs.CL_2025-12-03.xml"
GOAL_MB_S = 20.0
BLOCK = 1 << 20


def big_hf(items: int, rng: random.Random) -> bytes:
    sample = json.loads(HF.read_text())
    out = []
    for i in range(items):
        item = json.loads(json.dumps(sample[i % len(sample)]))
        item["paper"]["id"] = f"25{rng.randrange(1, 13):02d}.{i:05d}"
        item["paper"]["title"] = item["title"] = f"{item['paper']['title']} ({i})"
        item["paper"]["upvotes"] = rng.randrange(0, 300)
        out.append(item)
    return json.dumps(out, indent=2, ensure_ascii=False).encode()


def big_atom(items: int, rng: random.Random) -> bytes:
    text = RSS.read_text()
    head, rest = text.split("  <entry>", 1)
    entries = ["  <entry>" + e for e in ("  <entry>" + rest).split("  <entry>")[1:]]
    tail = entries[-1][entries[-1].index("</entry>") + len("</entry>"):]
    entries[-1] = entries[-1][:entries[-1].index("</entry>") + len("</entry>")] + "\n"
    body = []
    for i in range(items):
        entry = entries[i % len(entries)]
        body.append(entry.replace("2512.0", f"25{rng.randrange(1, 13):02d}.{i % 100000:05d}x", 1)
                    .replace("</title>", f" ({i})</title>", 1))
    return (head + "".join(body) + tail).encode()


def parse_rate(data: bytes, repeats: int) -> tuple[float, int]:
    """MB/s over CPU seconds (median of ``repeats``), and how many entries were read."""
    rates, entries = [], 0
    for _ in range(repeats):
        start = time.process_time()
        reader = reader_for(data[:4096], date(2025, 12, 31))
        entries = 0
        for offset in range(0, len(data), BLOCK):
            entries += len(reader.feed(data[offset:offset + BLOCK]))
        entries += len(reader.close())
        rates.append(len(data) / 1e6 / (time.process_time() - start))
    return statistics.median(rates), entries


def feedparser_rate(data: bytes) -> float | None:
    try:
        import feedparser
    except ImportError:
        return None
    start = time.process_time()
    parsed = feedparser.parse(data)
    assert parsed.entries
    return len(data) / 1e6 / (time.process_time() - start)


def refetch(workdir: Path) -> dict:
    from fakes import FakeSources

    database = Database(None, workdir)
    try:
        store = Store(database.engine)
        with FakeSources(today="2025-12-03") as sources:
            sources.daily["2025-12-03"] = HF.read_bytes()
            settings = Settings(watch_dir=workdir / "watch", hf_api_url=sources.hf_url, fetch_timeout=5.0)
            now = datetime(2025, 12, 3, 12, tzinfo=UTC)
            first = fetch_sources(store, settings, ["hf-daily"], now=now)
            requests_before = len(sources.requests)
            start = time.perf_counter()
            second = fetch_sources(store, settings, ["hf-daily"], now=now)
            seconds = time.perf_counter() - start
            requests = len(sources.requests) - requests_before
            conditional = bool(sources.requests[-1].headers.get("If-None-Match"))
        files = sorted(p.name for p in settings.watch_dir.iterdir())
    finally:
        database.close()
    return {"first": first.sources[0].status, "second": second.sources[0].status, "requests": requests,
            "conditional": conditional, "files_written": len(files), "seconds": round(seconds, 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()
    rng = random.Random(12)
    hf, atom = big_hf(args.items, rng), big_atom(args.items * 2, rng)
    hf_rate, hf_entries = parse_rate(hf, args.repeats)
    atom_rate, atom_entries = parse_rate(atom, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        again = refetch(Path(tmp))
    result = {
        "hf_json": {"mb": round(len(hf) / 1e6, 1), "entries": hf_entries, "mb_per_s": round(hf_rate, 1)},
        "arxiv_atom": {"mb": round(len(atom) / 1e6, 1), "entries": atom_entries, "mb_per_s": round(atom_rate, 1),
                       "feedparser_mb_per_s": (round(r, 1) if (r := feedparser_rate(atom[:5_000_000].rsplit(
                           b"</entry>", 1)[0] + b"</entry>\n</feed>\n")) else None)},
        "refetch_unchanged": again,
        "goals": {"hf_json_20_mb_s": hf_rate >= GOAL_MB_S, "atom_20_mb_s": atom_rate >= GOAL_MB_S,
                  "refetch_one_request_no_file": again["requests"] == 1 and again["second"] == "unchanged"
                  and again["files_written"] == 1},
        "machine": machine(), "load_average_after": load_average(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        h, a = result["hf_json"], result["arxiv_atom"]
        print(f"HF JSON:    {h['mb']} MB, {h['entries']:,} papers: {h['mb_per_s']} MB/s (goal {GOAL_MB_S:g})")
        print(f"arXiv Atom: {a['mb']} MB, {a['entries']:,} papers: {a['mb_per_s']} MB/s (goal {GOAL_MB_S:g}); "
              f"feedparser on 5 MB of it: {a['feedparser_mb_per_s']} MB/s")
        print(f"re-fetch of an unchanged day: {again['requests']} request(s), conditional: {again['conditional']}, "
              f"status {again['second']}, files in the watch folder: {again['files_written']}, {again['seconds']} s")
        print(f"goals: {result['goals']}; load {result['machine']['load_average']} → {result['load_average_after']}")
    return 1 if args.strict and not all(result["goals"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
