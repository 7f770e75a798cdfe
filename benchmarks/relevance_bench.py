"""Relevance benchmark (issue 13): quality of `similar` against arxiv-sanity-lite's method, and speed.

    .venv/bin/python benchmarks/relevance_bench.py [--papers 100000] [--new 10000] [--subscriptions 10000]
                                                   [--seed 1] [--json]

1. Quality (``relevance_quality.py``): topics defined by title queries over the distinct sample
   papers of examples/dumps; 3 examples drawn per topic (10 seeded draws), precision at 10 of the
   other papers; arxiv-sanity-lite's own vectorizer and LinearSVC (C=0.01, balanced) in the same
   run, and what each of digestbot's choices added (the ablation rows). Goal: +0.05 over it.
2. Speed, on --papers generated papers stored in a fresh SQLite database: each generated paper
   takes its title words and most of its abstract from one sample paper (its topic) and a third of
   its abstract words from the whole sample vocabulary, so the store has the sample's topics at
   scale. Timed: computing and storing every paper's features (fit + vectors), loading them in a
   new process's index, `similar` (3 examples) and `recommend` (a reader with 5 up and 2 down
   votes: first call trains and stores its model, later calls reuse it) through the services, and
   scoring --new new papers for --subscriptions like-subscriptions of 3 examples each (vectors of
   the new papers, cosine to each subscription's centroid, top 10 and threshold per subscription).
   Goals: similar and recommend < 100 ms; the like-subscription scoring < 30 s. Peak memory stated.
Exit status 1 when a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Database, machine  # noqa: E402

import numpy as np  # noqa: E402
from sqlalchemy import insert  # noqa: E402

import relevance_quality  # noqa: E402
from digestbot.core import relevance as rel  # noqa: E402
from digestbot.core.identity import title_key  # noqa: E402
from digestbot.services import relevance, votes  # noqa: E402
from digestbot.services.subscriptions import subscribe  # noqa: E402
from digestbot.core.schedule import parse_schedule  # noqa: E402
from digestbot.store import Paper, PaperSighting, Store  # noqa: E402

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def generated(samples: list[tuple[str, str]], n: int, rng: random.Random) -> list[tuple[str, str]]:
    vocabulary = [w for _, a in samples for w in a.split()]
    papers = []
    for i in range(n):
        title, abstract = samples[rng.randrange(len(samples))]
        words = abstract.split()
        body = [rng.choice(words) if rng.random() < 0.67 else rng.choice(vocabulary) for _ in range(min(len(words), 150))]
        t_words = title.split()
        papers.append((" ".join(rng.sample(t_words, max(1, len(t_words) * 2 // 3))) + f" #{i}", " ".join(body)))
    return papers


def store_papers(store: Store, papers: list[tuple[str, str]]) -> None:
    with store.transaction() as tx:
        for start in range(0, len(papers), 5000):
            chunk = papers[start:start + 5000]
            tx.session.execute(insert(Paper), [
                {"title": t, "title_key": title_key(t), "abstract": a, "abstract_fp": f"{start + i:032x}",
                 "first_seen": NOW} for i, (t, a) in enumerate(chunk)])
        ids = [row[0] for row in tx.session.execute(Paper.__table__.select().with_only_columns(Paper.id))]
        tx.session.execute(insert(PaperSighting), [{"paper_id": i, "last_seen": NOW} for i in ids])


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def like_scoring(vocabulary: rel.Vocabulary, matrix: rel.FeatureMatrix, new: list[tuple[str, str]], subs: int,
                 rng: np.random.Generator, top: int = 10, threshold: float = 0.2, block: int = 1000) -> dict:
    started = time.perf_counter()
    x_new = vocabulary.transform([rel.paper_text(t, a) for t, a in new])
    vectorized = time.perf_counter() - started
    examples = rng.integers(0, len(matrix), size=(subs, 3))
    chosen = 0
    for first in range(0, subs, block):
        rows = examples[first:first + block]
        # Each subscription's centroid: the mean of its examples' rows, unit length.
        pick = matrix.rows[rows.ravel()]
        summed = (pick.T.tocsr() @ _block_sum(len(rows), 3)).T.tocsr()
        from sklearn.preprocessing import normalize
        centroids = normalize(summed)
        scores = (x_new @ centroids.T).toarray()  # new papers × subscriptions
        k = min(top, scores.shape[0])
        best = np.argpartition(-scores, k - 1, axis=0)[:k]
        chosen += int(k * scores.shape[1]) + int((scores >= threshold).sum())
    total = time.perf_counter() - started
    return {"new_papers": len(new), "subscriptions": subs, "vectorize_s": round(vectorized, 2),
            "total_s": round(total, 2), "chosen_at_most": chosen}


def _block_sum(groups: int, size: int):
    from scipy import sparse
    return sparse.csr_matrix((np.ones(groups * size, dtype=np.float32),
                              (np.arange(groups * size), np.repeat(np.arange(groups), size))),
                             shape=(groups * size, groups))


def speed(papers: int, new: int, subs: int, seed: int, workdir: Path) -> dict:
    rng = random.Random(seed)
    samples = relevance_quality.sample_papers()
    stored = generated(samples, papers, rng)
    db = Database(None, workdir)
    store = Store(db.engine)
    try:
        store_papers(store, stored)
        fit_s, count = timed(lambda: relevance.update_features(store, NOW))
        index = relevance.RelevanceIndex()
        load_s, (_generation, vocabulary, matrix) = timed(lambda: index.current(store, NOW))
        titles = [stored[i][0] for i in rng.sample(range(papers), 3)]
        relevance.similar(store, index, titles, 10, NOW)  # warm: the index is loaded
        similar_s, found = timed(lambda: relevance.similar(store, index, titles, 10, NOW), repeat=5)
        subscribe(store, "reader@example.org", "anything", schedule=parse_schedule("daily", "08:00", "mon", "UTC"),
                  now=NOW)
        for i, title in enumerate(stored[j][0] for j in rng.sample(range(papers), 7)):
            votes.vote(store, "reader@example.org", title, "up" if i < 5 else "down", NOW)
        first_recommend_s, _ = timed(lambda: relevance.recommend(store, index, "reader@example.org", 10, NOW))
        recommend_s, _ = timed(lambda: relevance.recommend(store, index, "reader@example.org", 10, NOW), repeat=5)
        like = like_scoring(vocabulary, matrix, generated(samples, new, rng), subs, np.random.default_rng(seed))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return {
            "stored_papers": count, "features": vocabulary.size, "nonzeros": int(matrix.rows.nnz),
            "features_fit_and_store_s": round(fit_s, 1), "index_load_s": round(load_s, 2),
            "similar_ms": round(similar_s * 1000, 1), "similar_found": len(found),
            "recommend_first_call_ms (trains the model)": round(first_recommend_s * 1000, 1),
            "recommend_ms": round(recommend_s * 1000, 1),
            "like_subscriptions": like, "peak_rss_mb": round(peak_mb),
        }
    finally:
        db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    quality = relevance_quality.quality()
    with tempfile.TemporaryDirectory() as workdir:
        figures = speed(args.papers, args.new, args.subscriptions, args.seed, Path(workdir))
    rows = quality["p_at_10"]
    baseline, ours = rows[relevance_quality.BASELINE], rows[relevance_quality.OURS]
    goals = {
        "p_at_10_gain >= 0.05": round(ours - baseline, 3) >= 0.05,
        "similar < 100 ms": figures["similar_ms"] < 100,
        "recommend < 100 ms": figures["recommend_ms"] < 100,
        "like scoring < 30 s": figures["like_subscriptions"]["total_s"] < 30,
    }
    report = {"machine": machine(), "quality": quality, "p_at_10_gain": round(ours - baseline, 3),
              "speed": figures, "goals": goals}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"quality: {quality['papers']} sample papers, topics {quality['topics']}")
        for name, value in rows.items():
            print(f"  P@10 {value:.3f}  {name}")
        print(f"  gain over arxiv-sanity-lite: {ours - baseline:+.3f}")
        for name, value in figures.items():
            print(f"{name}: {value}")
        for name, ok in goals.items():
            print(f"goal {name}: {'met' if ok else 'MISSED'}")
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
