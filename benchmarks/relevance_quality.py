"""The quality half of relevance_bench.py: a labelled evaluation built from the sample papers.

Topics are title queries of the query language (``title:(diffusion OR denoising)``): a paper is
in a topic when its *title* matches, while the features see title and abstract. For each topic
with enough papers, EXAMPLES papers are drawn as examples (DRAWS times, fixed seeds), the other
stored papers are ranked, and precision at 10 counts topic papers among the first ten. Labels
from title words favour no method in particular, but they are keyword labels, not judgements:
the figure compares methods on the same ground, it is not a user study.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from digestbot.core import relevance as rel
from digestbot.core.dumps import parse_dump
from digestbot.core.identity import title_key
from digestbot.core.query import parse_query
from digestbot.services.matching import NewPaper, papers_matching

SAMPLES = Path(__file__).resolve().parent.parent / "examples" / "dumps"
TOPICS = {
    "diffusion": "title:(diffusion OR denoising)",
    "video": "title:video",
    "3d": "title:(3d OR gaussian OR nerf OR mesh OR scene)",
    "agents": "title:(agent OR agentic)",
    "reasoning": "title:(reasoning OR math OR mathematical)",
    "rl": 'title:("reinforcement learning" OR rl OR reward OR policy)',
    "speech/audio": "title:(speech OR audio OR music OR voice OR tts)",
    "code": "title:(code OR coding OR program OR software)",
    "robots": "title:(robot OR robotic OR manipulation OR embodied)",
    "multimodal": "title:(multimodal OR vision-language OR vlm OR mllm OR visual)",
    "retrieval": "title:(retrieval OR rag OR search)",
    "efficiency": "title:(quantization OR efficient OR pruning OR sparse OR compression OR distillation)",
    "medical": "title:(medical OR clinical OR health OR biomedical)",
    "image editing": "title:(editing OR edit OR inpainting)",
    "benchmark": "title:(benchmark OR evaluation OR evaluating)",
}
BASELINE = "arxiv-sanity-lite (TF-IDF words+pairs, LinearSVC C=0.01)"
OURS = "digestbot `similar`: the same, centroid only (no training per request)"
EXAMPLES = 3
DRAWS = 10
AT = 10


def sample_papers() -> list[tuple[str, str]]:
    """The distinct papers of the sample dumps: (title, abstract)."""
    seen: dict[str, tuple[str, str]] = {}
    for path in sorted(SAMPLES.iterdir()):
        for entry in parse_dump(path.read_bytes(), date(2025, 1, 1)).entries:
            seen.setdefault(title_key(entry.title), (entry.title, entry.abstract))
    return list(seen.values())


@dataclass
class Topic:
    name: str
    members: np.ndarray  # rows


def topics(papers: list[tuple[str, str]], smallest: int = 10) -> list[Topic]:
    rows = [NewPaper(i, t, a, None) for i, (t, a) in enumerate(papers)]
    found = []
    for name, query in TOPICS.items():
        members = np.asarray(sorted(papers_matching(parse_query(query), rows)))
        if len(members) >= smallest:
            found.append(Topic(name, members))
    return found


def asl_features(texts: list[str]) -> sparse.csr_matrix:
    """arxiv-sanity-lite's compute.py vectorizer (its min_df=5 and max_df=0.1 kept)."""
    v = TfidfVectorizer(input="content", encoding="utf-8", decode_error="replace", strip_accents="unicode",
                        lowercase=True, analyzer="word", stop_words="english",
                        token_pattern=r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b", ngram_range=(1, 2), max_features=20000,
                        norm="l2", use_idf=True, smooth_idf=True, sublinear_tf=True, max_df=0.1, min_df=5)
    return v.fit_transform(texts).tocsr().astype(np.float32)


def asl_scores(x: sparse.csr_matrix, examples: np.ndarray) -> np.ndarray:
    """serve.py: LinearSVC(class_weight='balanced', C=0.01), examples positive, all others negative."""
    labels = np.zeros(x.shape[0], dtype=np.int8)
    labels[examples] = 1
    from sklearn.svm import LinearSVC
    clf = LinearSVC(class_weight="balanced", verbose=False, max_iter=10000, tol=1e-6, C=0.01, dual="auto")
    clf.fit(x, labels)
    return clf.decision_function(x)


def ours_features(papers, *, identity: bool = True, title_twice: bool = True, tuned_df: bool = True):
    texts = [rel.paper_text(t, a) if title_twice else f"{t}. {a}" for t, a in papers]
    if not identity:
        # Our weighting, but arxiv-sanity-lite's tokenizer (words and pairs, lowercased).
        v = TfidfVectorizer(strip_accents="unicode", stop_words="english",
                            token_pattern=r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b", ngram_range=(1, 2),
                            sublinear_tf=True, min_df=2 if tuned_df else 5, max_df=0.25 if tuned_df else 0.1,
                            max_features=rel.MAX_FEATURES)
        return v.fit_transform(texts).tocsr().astype(np.float32)
    vocab = rel.Vocabulary.fit(texts) if tuned_df else _vocab_fixed_df(texts)
    return vocab.transform(texts)


def _vocab_fixed_df(texts):
    from sklearn.feature_extraction.text import CountVectorizer
    counter = CountVectorizer(analyzer=rel.terms, min_df=5, max_df=0.1, max_features=20000, dtype=np.float32)
    counts = counter.fit_transform(texts)
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    idf = (np.log((1 + len(texts)) / (1 + df)) + 1).astype(np.float32)
    return rel.Vocabulary(dict(counter.vocabulary_), idf)


def ours_scores(x, examples, svm_share):
    matrix = rel.FeatureMatrix(np.arange(x.shape[0]), x)
    return np.asarray(x @ rel.similar_weights(matrix, examples, svm_share=svm_share)).ravel()


def precision(scores: np.ndarray, examples: np.ndarray, members: set[int]) -> float:
    best = rel.top(scores, AT, exclude=examples)
    return sum(row in members for row, _ in best) / AT


def evaluate(x, topic_list, scorer) -> float:
    results = []
    for t_index, topic in enumerate(topic_list):
        members = set(topic.members.tolist())
        for draw in range(DRAWS):
            rng = np.random.default_rng(1000 * t_index + draw)
            examples = np.sort(rng.choice(topic.members, EXAMPLES, replace=False))
            results.append(precision(scorer(x, examples), examples, members))
    return float(np.mean(results))


def quality() -> dict:
    papers = sample_papers()
    topic_list = topics(papers)
    asl_x = asl_features([f"{t}. {a}" for t, a in papers])
    rows = {BASELINE: evaluate(asl_x, topic_list, asl_scores)}
    x_plain = ours_features(papers, identity=False, title_twice=False, tuned_df=False)
    rows["+ centroid beside the SVM (same features)"] = evaluate(
        x_plain, topic_list, lambda a, e: ours_scores(a, e, rel.SVM_SHARE))
    x_df = ours_features(papers, identity=False, title_twice=False, tuned_df=True)
    rows["+ min_df 2, max_df 0.25, 50k features"] = evaluate(x_df, topic_list, lambda a, e: ours_scores(a, e, rel.SVM_SHARE))
    x_id = ours_features(papers, identity=True, title_twice=False, tuned_df=True)
    rows["+ query-language word identity (stems, hyphen joins)"] = evaluate(
        x_id, topic_list, lambda a, e: ours_scores(a, e, rel.SVM_SHARE))
    x = ours_features(papers, identity=True, title_twice=True, tuned_df=True)
    rows["+ title counted twice"] = evaluate(x, topic_list, lambda a, e: ours_scores(a, e, rel.SVM_SHARE))
    rows[OURS] = evaluate(x, topic_list, lambda a, e: ours_scores(a, e, 0.0))
    rows["(digestbot features, SVM only)"] = evaluate(x, topic_list, lambda a, e: asl_scores(a, e))
    return {"papers": len(papers), "topics": {t.name: len(t.members) for t in topic_list}, "p_at_10": rows}


if __name__ == "__main__":
    import json
    print(json.dumps(quality(), indent=2))
