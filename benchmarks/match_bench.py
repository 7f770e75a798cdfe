"""Matching benchmark: many subscriptions against a large batch of new papers, engine vs plain loop.

    .venv/bin/python benchmarks/match_bench.py [--subscriptions 100000] [--papers 10000] [--seed 1] [--json]

Everything is generated from the sample dumps in examples/dumps with a fixed seed:

- papers: a real title (or the name of one joined to the rest of another) and a real abstract
  with a fifth of its sentences swapped for the sentences at the same place in another;
- subscriptions: a mix of query shapes (see MIX): single words, two- and three-word AND,
  quoted phrases taken from real adjacent word pairs, OR of two or three words, a word with an
  exclusion, prefixes, title: fields and hyphenated words. Query words are specific ones (in at
  most --max-word-share of the sample papers) and are drawn with a Zipf-like weighting by how
  often they occur, so that popular queries are shared by many subscribers, as in life.

One run measures, side by side:

1. the engine, the way ingest runs it (``SubscriptionMatcher.match_and_store``): load and compile
   the subscriptions (``sync``: read, parse, add to the ``QueryIndex``), build the ``Batch`` of
   papers, then match and store the matches once per distinct query text with
   ``store_batch_matches`` in a fresh SQLite database (the two overlap: chunks are written by
   a background thread while the next ones are matched), then commit; each phase's time
   (wall-clock and CPU), the total, and the process's peak resident memory;
2. the plain reference loop (``evaluate`` for every distinct query and every paper) on a sample
   of distinct queries × papers, extrapolated linearly to all distinct queries × all papers; the
   engine's matches must equal the reference's on that sample (exit 1 with an error otherwise).

The speed-up is the reference's extrapolated time (evaluation only) over the engine's total,
storing included: the engine's side is the harder one.
Exit status 1 when the engine disagrees with the reference or a goal is missed.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import io
import itertools
import json
import random
import re
import resource
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path


from _common import ROOT, machine  # noqa: E402  (also puts the checkout on sys.path)

from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from digestbot.bootstrap import settle_the_collector  # noqa: E402
from digestbot.core.dumps import parse_dump  # noqa: E402
from digestbot.core.query import parse_query  # noqa: E402
from digestbot.core.reference import Document, evaluate  # noqa: E402
from digestbot.core.text import raw_words, stem  # noqa: E402
from digestbot.services.matching import NewPaper, SubscriptionMatcher, store_batch_matches  # noqa: E402
from digestbot.services.subscriptions import import_subscriptions  # noqa: E402
from digestbot.store import Store, connect, migrate  # noqa: E402
from digestbot.store.models import Match, Paper, QueryMatch, Subscription  # noqa: E402

SAMPLES = ROOT / "examples" / "dumps"
MB = 1 << 20

PHASES = ("index", "batch", "match_store", "commit")
GOALS = {  # measure -> (description, test)
    "total_seconds": ("total < 10 s (index + batch + match + store)", lambda v: v < 10.0),
    "speedup": ("speed-up >= 100x the plain loop", lambda v: v >= 100.0),
    "peak_rss_mb": ("peak RSS < 1024 MB", lambda v: v < 1024.0),
}

# Shares of the query shapes among subscriptions.
MIX = {
    "word": 0.26,          # diffusion
    "and2": 0.14,          # vision transformer | vision AND transformer
    "and3": 0.06,          # sparse attention kernel
    "phrase": 0.12,        # "language models"
    "or": 0.10,            # quantization OR pruning [OR distillation]
    "exclude": 0.08,       # diffusion -video | diffusion NOT video
    "prefix": 0.08,        # quantiz*
    "title": 0.08,         # title:agent | title:"world model"
    "hyphen": 0.08,        # self-attention
}
ZIPF_EXPONENT = 1.0
PREFIX_LENGTHS = (4, 7)  # a prefix query is the first 4 to 7 letters of a word
RECIPIENT_SHARE = 0.4  # recipients per subscription: most recipients hold two or three
SWAP_SHARE = 0.2  # of an abstract's sentences taken from another abstract
MIN_DOC_FREQ = 2  # a query word occurs in at least this many sample papers
# Query words (pairs, prefixes) are specific: in at most this share of the sample papers by
# default. The commoner words are the theme of the feed (the samples are all transformer papers:
# model, attention, language, training...): a subscription to one would bring a good part of it.
MAX_WORD_SHARE = 0.02

# Words nobody subscribes to: function words, generic paper prose, URL pieces.
STOPWORDS = frozenset("""
a about above across after again against all along also although am among an and another any are as at
be because been before being below between both but by can could did do does doing down due during each
either etc even every few for from further had has have having here how however i if in into is it its
itself just less like made make makes many may might more most much must my no nor not of off often on
once one only or other others our ours out over own per same several she should since so some such than
that the their theirs them themselves then there thereby these they this those though through thus to
too two under until up upon us use used uses using very via was we well were what when where whether
which while who whom whose why will with within without would yet you your
abstract achieve achieved achieves achieving additionally address aim allows approach approaches
available based better code com demonstrate demonstrates despite different effective effectively
effectiveness enable enables existing experiments extensive first furthermore github great high
http https improve improved improves including introduce introduces key large lead leading leads
method methods moreover new novel org paper particular present presents previous problem propose
proposed provide provides recent recently result results show shows significant significantly simple
specifically state study successfully three various work works www
""".split())

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")
_CLAUSE = re.compile(r"[.,;:!?()\[\]{}\"]")  # adjacent-pair phrases never span these


# ---------------------------------------------------------------- generating the workload

def zipf_sampler(ranked: list, rng: random.Random, exponent: float = ZIPF_EXPONENT):
    """A function drawing from ``ranked`` (most popular first) with weight 1 / rank**exponent."""
    cumulative = list(itertools.accumulate(1.0 / (rank ** exponent) for rank in range(1, len(ranked) + 1)))
    total = cumulative[-1]
    return lambda: ranked[bisect.bisect_left(cumulative, rng.random() * total)]


def _searchable(word: str) -> bool:
    return len(word) >= 3 and word not in STOPWORDS and any(c.isalpha() for c in word)


class Samples:
    """The sample dumps' titles and abstract sentences, and the vocabulary queries draw from."""

    def __init__(self, samples: Path, max_word_share: float = MAX_WORD_SHARE) -> None:
        entries = []
        for path in sorted(samples.iterdir()):
            entries += parse_dump(path.read_bytes(), reference=date(2025, 11, 22)).entries
        self.titles = [e.title for e in entries]
        self.abstracts = [_SENTENCE_END.split(e.abstract) for e in entries]

        words: Counter[str] = Counter()  # stemmed term -> sample papers containing it
        title_words: Counter[str] = Counter()
        forms: Counter[str] = Counter()  # how often each written form occurs
        hyphenated: Counter[str] = Counter()
        pairs: Counter[tuple[str, str]] = Counter()
        prefixes: dict[str, set[int]] = defaultdict(set)  # prefix -> sample papers with a word so starting
        for number, entry in enumerate(entries):
            written = raw_words(entry.title) + raw_words(entry.abstract)
            forms.update(written)
            # A query word matches every form of its stem: "algorithm" finds "algorithms".
            words.update({stem(w) for w in written if "-" not in w and _searchable(w)})
            title_words.update({stem(w) for w in raw_words(entry.title) if "-" not in w and _searchable(w)})
            hyphenated.update({w for w in written if "-" in w and all(c.isalpha() or c == "-" for c in w)})
            found = set()
            for clause in _CLAUSE.split(entry.abstract):
                clause_words = raw_words(clause)
                found.update(zip(clause_words, clause_words[1:]))
            pairs.update(p for p in found if all("-" not in w and _searchable(w) for w in p))
            for w in set(written):
                for part in w.split("-"):
                    for k in range(PREFIX_LENGTHS[0], PREFIX_LENGTHS[1] + 1):
                        if len(part) > k:
                            prefixes[part[:k]].add(number)
        # Most frequent first: the Zipf rank. Ties in a stable, seed-independent order.
        most = max_word_share * len(entries)
        written_as: dict[str, str] = {}  # stemmed term -> its commonest written form
        for form, _ in forms.most_common():
            written_as.setdefault(stem(form), form)
        self.words = [written_as[t] for t in _ranked(words, MIN_DOC_FREQ, most)]
        self.title_words = [written_as[t] for t in _ranked(title_words, MIN_DOC_FREQ, most)]
        self.hyphenated = _ranked(hyphenated, MIN_DOC_FREQ, most)
        self.pairs = [" ".join(p) for p in _ranked(pairs, MIN_DOC_FREQ, most)]
        # Prefixes of query words, 4 to 7 letters, as narrow as a query word must be.
        self.prefixes = {w: [w[:k] for k in range(PREFIX_LENGTHS[0], min(PREFIX_LENGTHS[1], len(w) - 1) + 1)
                             if len(prefixes[w[:k]]) <= most]
                         for w in self.words if w.isalpha()}
        self.prefixable = [w for w in self.words if self.prefixes.get(w)]


def _ranked(counts: Counter, least: int, most: float) -> list:
    return [key for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if least <= n <= most]


def generate_papers(samples: Samples, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(title, abstract) pairs recombined from real ones, so the text stays realistic."""
    named = [t for t in samples.titles if ":" in t]
    papers = []
    for _ in range(count):
        if rng.random() < 0.5 and named:
            title = rng.choice(named).split(":")[0] + ":" + rng.choice(named).split(":", 1)[1]
        else:
            title = rng.choice(samples.titles)
        # The sentences of a real abstract, each replaced with probability SWAP_SHARE by the
        # sentence at the same relative position of another (intro first, results last). Few
        # swaps keep each word's share of papers close to the samples'.
        main, other = rng.sample(samples.abstracts, 2)
        sentences = [other[i * len(other) // len(main)] if rng.random() < SWAP_SHARE else sentence
                     for i, sentence in enumerate(main)]
        papers.append((title, " ".join(sentences)))
    return papers


def generate_queries(samples: Samples, count: int, rng: random.Random) -> list[str]:
    """``count`` subscription queries in the proportions of MIX."""
    word = zipf_sampler(samples.words, rng)
    title_word = zipf_sampler(samples.title_words, rng)
    pair = zipf_sampler(samples.pairs, rng)
    hyphenated = zipf_sampler(samples.hyphenated, rng)
    prefixable = zipf_sampler(samples.prefixable, rng)

    def distinct(k: int) -> list[str]:
        chosen: list[str] = []
        while len(chosen) < k:
            w = word()
            if w not in chosen:
                chosen.append(w)
        return chosen

    def make(shape: str) -> str:
        if shape == "word":
            w = word()
            return w.capitalize() if rng.random() < 0.2 else w
        if shape == "and2":
            a, b = distinct(2)
            return f"{a} {b}" if rng.random() < 0.7 else f"{a} AND {b}"
        if shape == "and3":
            return " ".join(distinct(3))
        if shape == "phrase":
            return f'"{pair()}"'
        if shape == "or":
            return " OR ".join(distinct(rng.choice((2, 2, 3))))
        if shape == "exclude":
            a, b = distinct(2)
            return f"{a} -{b}" if rng.random() < 0.7 else f"{a} NOT {b}"
        if shape == "prefix":
            return rng.choice(samples.prefixes[prefixable()]) + "*"
        if shape == "title":
            return f"title:{title_word()}" if rng.random() < 0.7 else f'title:"{pair()}"'
        if shape == "hyphen":
            return hyphenated()
        raise ValueError(shape)

    shapes, weights = zip(*MIX.items())
    return [make(shape) for shape in rng.choices(shapes, weights, k=count)]


# ---------------------------------------------------------------- the database

def fill_database(store: Store, queries: list[str], papers: list[tuple[str, str]], rng: random.Random,
                  now: datetime, first_seen: datetime) -> list[int]:
    """Recipients and subscriptions through import_subscriptions; the papers in bulk. Paper ids."""
    recipients = max(1, int(len(queries) * RECIPIENT_SHARE))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["recipient", "query"])
    for query in queries:
        writer.writerow([f"reader{rng.randrange(recipients)}@example.org", query])
    report = import_subscriptions(store, out.getvalue(), now)
    if report.errors:
        raise SystemExit(f"import_subscriptions refused generated queries: {report.errors[:5]}")
    with Session(store.engine) as session, session.begin():
        session.execute(insert(Paper), [
            {"title": title, "title_key": f"{i} {title}", "abstract": abstract, "abstract_fp": f"{i:032x}",
             "first_seen": first_seen, "last_seen": first_seen}
            for i, (title, abstract) in enumerate(papers)
        ])
        return list(session.scalars(select(Paper.id).order_by(Paper.id)))


# ---------------------------------------------------------------- measuring

def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / MB if sys.platform == "darwin" else peak / 1024


def run_engine(engine, papers: list[tuple[str, str]], paper_ids: list[int], first_seen: datetime,
               watched: set[int], watched_papers: int) -> dict:
    """The ingest path (``SubscriptionMatcher.match_and_store``), timed phase by phase: sync the
    matcher, build the batch, match, store. CPU seconds are taken too: the machine may be shared.

    The stored matches of the ``watched`` subscriptions with the first ``watched_papers`` papers
    are read back afterwards (untimed) through the per-subscription ``matches`` view, for the
    comparison with the reference.
    """
    timings = dict.fromkeys(PHASES, 0.0)
    cpu = dict.fromkeys(timings, 0.0)
    new_papers = [NewPaper(i, title, abstract, first_seen) for i, (title, abstract) in zip(paper_ids, papers)]

    def timed(phase: str, work):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = work()
        timings[phase] += time.perf_counter() - start
        cpu[phase] += time.process_time() - start_cpu
        return result

    with Store(engine).transaction() as tx:
        matcher = SubscriptionMatcher()
        timed("index", lambda: matcher.sync(tx))
        batch = timed("batch", lambda: matcher.batch(new_papers))
        found = matcher.match(new_papers, batch)  # evaluated as store_batch_matches reads it
        stored = timed("match_store", lambda: store_batch_matches(tx, found))
        timed("commit", tx.session.commit)
    with Session(engine) as session:
        seen = session.execute(select(Match.subscription_id, Match.paper_id).where(
            Match.subscription_id.in_(watched), Match.paper_id.in_(paper_ids[:watched_papers]))).all()
        rows = session.scalar(select(func.count()).select_from(QueryMatch))
    position = {paper_id: i for i, paper_id in enumerate(paper_ids)}
    timings["total"], cpu["total"] = sum(timings.values()), sum(cpu.values())
    return {"timings": timings, "cpu": cpu, "matches": found.subscription_matches, "query_matches": stored,
            "stored_rows": rows, "watched_pairs": [(s, position[p]) for s, p in seen],
            "distinct_queries": matcher.index.distinct_queries, "query_texts": len(matcher.index),
            "subscriptions": len(matcher), "peak_rss_mb": peak_rss_mb()}


def run_reference(queries: list[str], papers: list[tuple[str, str]], budget: float) -> dict:
    """``evaluate`` for each query and paper; stops early (after a whole query) past ``budget`` s."""
    start = time.perf_counter()
    documents = [Document.of(title, abstract) for title, abstract in papers]
    analysis = time.perf_counter() - start
    nodes = [parse_query(q) for q in queries]
    matched: dict[str, set[int]] = {}
    start = time.perf_counter()
    for query, node in zip(queries, nodes):
        matched[query] = {i for i, doc in enumerate(documents) if evaluate(node, doc)}
        if time.perf_counter() - start > budget:
            break
    seconds = time.perf_counter() - start
    pairs = len(matched) * len(documents)
    return {"matched": matched, "papers": len(documents), "queries": len(matched), "pairs": pairs,
            "evaluate_seconds": seconds, "analysis_seconds": analysis,
            "per_pair_us": seconds / pairs * 1e6, "per_paper_analysis_ms": analysis / len(documents) * 1e3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=100_000, help="subscriptions (default 100000)")
    parser.add_argument("--papers", type=int, default=10_000, help="new papers in the batch (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated workload (default 1)")
    parser.add_argument("--max-word-share", type=float, default=MAX_WORD_SHARE,
                        help="query words occur in at most this share of the sample papers "
                             f"(default {MAX_WORD_SHARE}); the number of matches grows with it")
    parser.add_argument("--reference-queries", type=int, default=1000,
                        help="distinct queries in the reference sample (default 1000)")
    parser.add_argument("--reference-papers", type=int, default=1000,
                        help="papers in the reference sample (default 1000)")
    parser.add_argument("--reference-budget", type=float, default=60.0,
                        help="seconds after which the reference loop takes no more queries (default 60)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if min(args.subscriptions, args.papers, args.reference_queries, args.reference_papers) < 1:
        parser.error("--subscriptions, --papers and the reference sample sizes must be at least 1")
    if not 0 < args.max_word_share <= 1:
        parser.error("--max-word-share must be in (0, 1]")
    settle_the_collector()  # as every entry point does

    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    started = time.perf_counter()
    rng = random.Random(args.seed)
    samples = Samples(SAMPLES, args.max_word_share)
    papers = generate_papers(samples, args.papers, rng)
    queries = generate_queries(samples, args.subscriptions, rng)
    now = datetime.now(UTC)
    first_seen = now + timedelta(minutes=1)  # after every subscription's match_since
    # The reference sample: distinct queries drawn uniformly, the first papers of the batch.
    distinct = sorted(set(queries))
    sample_queries = random.Random(args.seed + 1).sample(distinct, min(args.reference_queries, len(distinct)))
    sample_papers = papers[:args.reference_papers]
    with tempfile.TemporaryDirectory(prefix="digestbot-match-bench-") as tmp:
        engine = connect(f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate(engine)
        paper_ids = fill_database(Store(engine), queries, papers, rng, now, first_seen)
        with Session(engine) as session:
            sampled = set(sample_queries)
            watched = {sub_id: query for sub_id, query in session.execute(
                select(Subscription.id, Subscription.query)) if query in sampled}
        log(f"generated {args.subscriptions:,} subscriptions and {args.papers:,} papers "
            f"({sum(len(t) + len(a) for t, a in papers) / MB:.1f} MB of text) "
            f"in {time.perf_counter() - started:.1f}s")
        rss_before = peak_rss_mb()

        result = run_engine(engine, papers, paper_ids, first_seen, set(watched), len(sample_papers))
        engine.dispose()
    timings = result["timings"]
    log(f"engine: {result['distinct_queries']:,} distinct queries, {result['matches']:,} matches "
        f"in {timings['total']:.2f}s")

    reference = run_reference(sample_queries, sample_papers, args.reference_budget)
    log(f"reference: {reference['queries']:,} queries x {reference['papers']:,} papers "
        f"in {reference['evaluate_seconds']:.1f}s")

    # Every subscription of a sampled query must have exactly the reference's papers.
    engine_matched: dict[int, set[int]] = defaultdict(set)
    for sub_id, position in result["watched_pairs"]:
        engine_matched[sub_id].add(position)
    disagreements = [(query, sorted(engine_matched[sub_id] ^ reference["matched"][query])[:5])
                     for sub_id, query in sorted(watched.items()) if query in reference["matched"]
                     and engine_matched[sub_id] != reference["matched"][query]]
    if disagreements:
        print(f"error: the engine disagrees with evaluate on {len(disagreements)} subscriptions of the "
              f"{reference['queries']} sampled queries, e.g. (query, papers that differ): {disagreements[:5]}",
              file=sys.stderr)
        return 1
    if result["stored_rows"] != result["query_matches"]:
        print(f"error: {result['query_matches']:,} query matches found but {result['stored_rows']:,} stored",
              file=sys.stderr)
        return 1

    # The plain loop: analyse each paper once, evaluate each distinct query on each paper.
    per_pair = reference["per_pair_us"] / 1e6
    analysis = reference["per_paper_analysis_ms"] / 1e3 * args.papers
    reference_seconds = per_pair * result["distinct_queries"] * args.papers + analysis
    figures = {
        **{f"{phase}_seconds": timings[phase] for phase in PHASES}, "total_seconds": timings["total"],
        "matches": result["matches"], "matches_per_subscription": result["matches"] / args.subscriptions,
        "distinct_queries": result["distinct_queries"], "query_texts": result["query_texts"],
        "query_matches": result["query_matches"],
        "cpu_seconds": result["cpu"]["total"],
        **{f"{phase}_cpu_seconds": result["cpu"][phase] for phase in PHASES},
        "reference_per_pair_us": reference["per_pair_us"],
        "reference_sample": f"{reference['queries']} x {reference['papers']}",
        "reference_seconds": reference_seconds,
        # every subscription evaluated, as a loop over subscriptions would
        "reference_seconds_per_subscription": per_pair * args.subscriptions * args.papers + analysis,
        "speedup": reference_seconds / timings["total"],
        "peak_rss_mb": result["peak_rss_mb"], "rss_before_engine_mb": rss_before,
    }
    judged = {name: {"goal": goal, "value": round(figures[name], 2), "pass": test(figures[name])}
              for name, (goal, test) in GOALS.items()}
    facts = machine()
    if args.json:
        print(json.dumps({"subscriptions": args.subscriptions, "papers": args.papers, "seed": args.seed,
                          "max_word_share": args.max_word_share, "machine": facts,
                          "results": {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()},
                          "goals": judged}, indent=2))
    else:
        print(f"machine: {facts['python']}, {facts['cpu_count']} CPUs ({facts['processor']}), {facts['platform']}")
        print(f"         SQLAlchemy {facts['sqlalchemy']}, SQLite {facts['sqlite']}")
        print(f"workload: {args.subscriptions:,} subscriptions ({result['distinct_queries']:,} distinct queries) x "
              f"{args.papers:,} papers, seed {args.seed}: {result['matches']:,} matches "
              f"({figures['matches_per_subscription']:.1f} per subscription)")
        cpu = result["cpu"]
        print("                 wall-clock   CPU")
        print(f"  index          {timings['index']:6.2f} s {cpu['index']:6.2f} s   read, parse and add the subscriptions "
              f"({result['query_texts']:,} query texts)")
        print(f"  batch          {timings['batch']:6.2f} s {cpu['batch']:6.2f} s   analyse and index the papers")
        print(f"  match + store  {timings['match_store']:6.2f} s {cpu['match_store']:6.2f} s   every match, stored "
              f"once per query text: {result['query_matches']:,} rows (CPU: both threads)")
        print(f"  commit         {timings['commit']:6.2f} s {cpu['commit']:6.2f} s")
        print(f"  total          {timings['total']:6.2f} s {cpu['total']:6.2f} s")
        print(f"reference: {reference['per_pair_us']:.2f} us per query-paper pair on a sample of "
              f"{figures['reference_sample']} (the engine agrees), {reference['per_paper_analysis_ms']:.2f} ms "
              f"per paper analysed: {result['distinct_queries']:,} x {args.papers:,} would take "
              f"{reference_seconds:,.0f} s")
        print(f"speed-up: {figures['speedup']:,.0f}x (the engine's total, storing included)")
        print(f"peak RSS: {figures['peak_rss_mb']:,.0f} MB ({rss_before:,.0f} MB before the engine ran)")
        for verdict in judged.values():
            print(f"goal {verdict['goal']}: {verdict['value']:,} {'PASS' if verdict['pass'] else 'FAIL'}")
    return 0 if all(v["pass"] for v in judged.values()) else 1

if __name__ == "__main__":
    sys.exit(main())
