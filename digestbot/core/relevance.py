"""Relevance features and models: pure computation over a paper's title and abstract.

A paper becomes a sparse TF-IDF vector of its terms: words and adjacent word pairs, with the
word identity the query language uses (``core/text.py``: NFKC, case and accent folding, the
S-stemmer, hyphen parts and their joined form), so ``Transformers``, ``transformer``,
``auto-regressive`` and ``autoregressive`` count as the same term. Term weights are sublinear
(1 + log tf) times a smoothed IDF, and each row is L2-normalised, so a dot product is a cosine.

Two scorers share the vectors (BENCHMARKS.md, "Relevance", says what each choice added):

* ``similar``: the cosine of each paper to the mean of the examples (a Rocchio centroid), plus
  a small share of a linear SVM trained on examples against the other papers, as
  arxiv-sanity-lite does per tag.
* ``ReaderModel``: one linear model per reader, positives (likes, up votes) against negatives
  (down votes, weighted more, and a sample of the other papers as background), blended with the
  centroid of the positives. A model is a weight vector: scoring a paper is a dot product.

Vocabulary, IDF and the vectors are plain arrays: ``Vocabulary.dumps``/``loads`` and
``dump_rows``/``load_rows`` turn them into bytes without pickle (the store keeps them).
"""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

from digestbot.core.text import raw_words, stem

STOP = frozenset(stem(w) for w in ENGLISH_STOP_WORDS) | frozenset(ENGLISH_STOP_WORDS)
MAX_FEATURES = 50_000
# The share of the SVM's (normalised) weights beside the centroid in a reader's model. `similar`
# uses none: on the labelled set the SVM added nothing to the centroid (0.623 vs 0.622, BENCHMARKS.md)
# and it would be trained on every request.
SVM_SHARE = 0.5
SIMILAR_SVM_SHARE = 0.0
DOWN_WEIGHT = 3.0  # a "down" vote counts as this many background negatives
BACKGROUND = 3000  # background negatives sampled for a reader's model
SEED = 13


def terms(text: str) -> list[str]:
    """The features of a text: its words (stemmed, stop words out) and adjacent word pairs.

    A hyphenated word gives its parts (pairs among them) and its joined form, so ``wi-fi``
    and ``wifi`` share a term.
    """
    words: list[str] = []
    found: list[str] = []
    for raw in raw_words(text):
        if "-" in raw:
            parts = [p for p in raw.split("-") if p]
            found.append(stem("".join(parts)))
        else:
            parts = [raw]
        for part in parts:
            word = stem(part)
            if word in STOP or len(word) < 2 or word.isdigit():
                words.append("")  # a gap: no pair across a stop word
                continue
            words.append(word)
    previous = ""
    for word in words:
        if word:
            found.append(word)
            if previous:
                found.append(previous + " " + word)
        previous = word
    return found


def paper_text(title: str, abstract: str) -> str:
    return f"{title}. {title}. {abstract}"  # the title counts twice: it is the paper's own summary


@dataclass(frozen=True)
class Vocabulary:
    """The fitted terms (term → column) and their IDF."""

    terms: dict[str, int]
    idf: np.ndarray  # float32, one per column

    @classmethod
    def fit(cls, texts: Sequence[str], max_features: int = MAX_FEATURES) -> Vocabulary:
        return cls.fit_rows(texts, max_features)[0]

    @classmethod
    def fit_rows(cls, texts: Sequence[str], max_features: int = MAX_FEATURES) -> tuple[Vocabulary, sparse.csr_matrix]:
        """The vocabulary of these texts, and their rows (each text read once)."""
        n = len(texts)
        # Rare terms carry no similarity; common ones no information. Small stores keep everything.
        min_df, max_df = (2, 0.25) if n >= 200 else (1, 1.0)
        counter = CountVectorizer(analyzer=terms, min_df=min_df, max_df=max_df, max_features=max_features,
                                  dtype=np.float32)
        try:
            counts = counter.fit_transform(texts)
        except ValueError:  # no term at all (empty texts)
            empty = cls({}, np.zeros(0, dtype=np.float32))
            return empty, empty.transform(texts)
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        idf = (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)
        vocabulary = cls({t: int(i) for t, i in counter.vocabulary_.items()}, idf)
        return vocabulary, vocabulary.weighted(counts)

    @property
    def size(self) -> int:
        return len(self.idf)

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Rows of sublinear TF-IDF, L2-normalised (float32)."""
        if not self.terms or not len(texts):
            return sparse.csr_matrix((len(texts), self.size), dtype=np.float32)
        return self.weighted(CountVectorizer(analyzer=terms, vocabulary=self.terms, dtype=np.float32).transform(texts))

    def weighted(self, counts: sparse.csr_matrix) -> sparse.csr_matrix:
        """Term counts (columns of this vocabulary) as unit rows of sublinear TF-IDF."""
        counts = counts.tocsr().astype(np.float32)
        counts.data = 1 + np.log(counts.data)
        counts = counts @ sparse.diags(self.idf)
        return normalize(counts.tocsr(), copy=False).astype(np.float32)

    def dumps(self) -> bytes:
        ordered = sorted(self.terms, key=self.terms.__getitem__)
        head = json.dumps(ordered, ensure_ascii=False).encode()
        return zlib.compress(len(head).to_bytes(8, "big") + head + self.idf.astype(np.float32).tobytes())

    @classmethod
    def loads(cls, data: bytes) -> Vocabulary:
        raw = zlib.decompress(data)
        size = int.from_bytes(raw[:8], "big")
        ordered = json.loads(raw[8:8 + size])
        return cls({t: i for i, t in enumerate(ordered)}, np.frombuffer(raw[8 + size:], dtype=np.float32).copy())


def dump_rows(ids: Sequence[int], rows: sparse.csr_matrix) -> bytes:
    """Paper ids and their vectors as bytes (numpy's own format, no pickle)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, ids=np.asarray(ids, dtype=np.int64), indptr=rows.indptr.astype(np.int64),
                        indices=rows.indices.astype(np.int32), data=rows.data.astype(np.float32),
                        shape=np.asarray(rows.shape, dtype=np.int64))
    return buffer.getvalue()


def load_rows(data: bytes) -> tuple[np.ndarray, sparse.csr_matrix]:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        rows = sparse.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
        return z["ids"], rows


class FeatureMatrix:
    """Every stored paper's vector, by paper id (ids ascending)."""

    def __init__(self, ids: np.ndarray, rows: sparse.csr_matrix) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        if len(order):  # a paper stored twice (two processes at once): its last vector counts
            last = np.append(ids[order][1:] != ids[order][:-1], True)
            order = order[last]
        self.ids = ids[order]
        self.rows = rows[order].tocsr() if len(order) else rows
        self.rows.sort_indices()  # once here: slices stay sorted, and the SVM's input checks skip sorting

    @classmethod
    def stacked(cls, parts: Iterable[tuple[np.ndarray, sparse.csr_matrix]], width: int) -> FeatureMatrix:
        parts = list(parts)
        if not parts:
            return cls(np.zeros(0, dtype=np.int64), sparse.csr_matrix((0, width), dtype=np.float32))
        return cls(np.concatenate([i for i, _ in parts]), sparse.vstack([r for _, r in parts], format="csr"))

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, paper_ids: Iterable[int]) -> np.ndarray:
        """Rows of these papers (those the matrix holds)."""
        wanted = np.asarray(sorted(set(paper_ids)), dtype=np.int64)
        at = np.searchsorted(self.ids, wanted)
        ok = (at < len(self.ids)) & (self.ids[np.minimum(at, len(self.ids) - 1)] == wanted) if len(self.ids) else at < 0
        return at[ok]


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def centroid(rows: sparse.csr_matrix) -> np.ndarray:
    return _unit(np.asarray(rows.mean(axis=0)).ravel())


def svm_weights(rows: sparse.csr_matrix, labels: np.ndarray, weights: np.ndarray | None = None,
                c: float = 0.01) -> np.ndarray:
    """A LinearSVC (balanced classes) as a unit weight vector, or zeros if one class is missing."""
    if len(set(labels.tolist())) < 2:
        return np.zeros(rows.shape[1], dtype=np.float64)
    clf = LinearSVC(C=c, class_weight="balanced", dual="auto", max_iter=5000, tol=1e-4)
    clf.fit(rows, labels, sample_weight=weights)
    return _unit(clf.coef_.ravel())


def similar_weights(matrix: FeatureMatrix, example_rows: np.ndarray, *, svm_share: float = SIMILAR_SVM_SHARE
                    ) -> np.ndarray:
    """The weight vector of `similar`: the examples' centroid (and, with ``svm_share``, an SVM of the
    examples against a sample of the other papers)."""
    if not svm_share:
        return centroid(matrix.rows[example_rows]).astype(np.float32)
    return ReaderModel.train(matrix, matrix.ids[example_rows], (), svm_share=svm_share).weights


@dataclass(frozen=True)
class ReaderModel:
    """A reader's linear model: score = rows @ weights."""

    weights: np.ndarray
    positives: int
    negatives: int

    @classmethod
    def train(cls, matrix: FeatureMatrix, positive_ids: Sequence[int], negative_ids: Sequence[int],
              *, background: int = BACKGROUND, svm_share: float = SVM_SHARE) -> ReaderModel:
        pos = matrix.positions(positive_ids)
        neg = matrix.positions(negative_ids)
        width = matrix.rows.shape[1]
        if not len(pos):
            # Down votes only: steer away from them, nothing to steer towards.
            w = -centroid(matrix.rows[neg]) if len(neg) else np.zeros(width)
            return cls(w.astype(np.float32), 0, len(neg))
        taken = np.union1d(pos, neg)
        others = np.setdiff1d(np.arange(len(matrix)), taken, assume_unique=True)
        rng = np.random.default_rng(SEED)
        if len(others) > background:
            others = np.sort(rng.choice(others, background, replace=False))
        rows = np.concatenate([pos, neg, others])
        labels = np.concatenate([np.ones(len(pos)), np.zeros(len(neg) + len(others))]).astype(np.int8)
        sample = np.concatenate([np.ones(len(pos)), np.full(len(neg), DOWN_WEIGHT), np.ones(len(others))])
        w = centroid(matrix.rows[pos])
        if len(neg):
            w = w - 0.5 * centroid(matrix.rows[neg])
        if svm_share:
            w = w + svm_share * svm_weights(matrix.rows[rows], labels, sample)
        return cls(w.astype(np.float32), len(pos), len(neg))

    def scores(self, rows: sparse.csr_matrix) -> np.ndarray:
        if rows.shape[1] != len(self.weights):
            return np.zeros(rows.shape[0], dtype=np.float32)
        return np.asarray(rows @ self.weights).ravel()

    def dumps(self) -> bytes:
        head = np.asarray([self.positives, self.negatives], dtype=np.int64).tobytes()
        return zlib.compress(head + self.weights.astype(np.float32).tobytes())

    @classmethod
    def loads(cls, data: bytes) -> ReaderModel:
        raw = zlib.decompress(data)
        positives, negatives = np.frombuffer(raw[:16], dtype=np.int64).tolist()
        return cls(np.frombuffer(raw[16:], dtype=np.float32).copy(), positives, negatives)


def top(scores: np.ndarray, limit: int, exclude: np.ndarray | None = None) -> list[tuple[int, float]]:
    """(row, score) of the ``limit`` best rows, best first (ties: lower row first), some excluded."""
    scores = np.asarray(scores, dtype=np.float64).copy()
    if exclude is not None and len(exclude):
        scores[exclude] = -np.inf
    n = min(limit, int(np.isfinite(scores).sum()))
    if n <= 0:
        return []
    best = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    best = best[np.lexsort((best, -scores[best]))]
    return [(int(i), float(scores[i])) for i in best if np.isfinite(scores[i])][:n]


def votes_fingerprint(generation: int, positives: Iterable[int], negatives: Iterable[int]) -> str:
    """What a reader's model was trained from: it is retrained when this changes."""
    text = f"{generation}|{sorted(set(positives))}|{sorted(set(negatives))}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]
