"""Relevance (issue 13): the stored features kept up to date, `similar`, `recommend`, and the
scores that order a reader's digest.

The features of the stored papers are computed once: a vocabulary is fitted (a *generation*)
and each paper's vector stored in chunks as papers arrive; the vocabulary is refitted when the
store has grown to REFIT_GROWTH times the papers it was fitted on. A process keeps the matrix
in memory (``RelevanceIndex``) and reads only the chunks added since. A reader's model is
trained once per change of its likes and votes (the fingerprint) and kept in ``reader_models``.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from digestbot.core import relevance as rel
from digestbot.core.identity import title_key
from digestbot.core.sources import arxiv_id
from digestbot.core.recipients import parse_recipient
from digestbot.errors import Conflict, UsageError
from digestbot.services.status import paper_json
from digestbot.store import Paper, Store, Transaction

REFIT_GROWTH = 2.0  # refit the vocabulary when the store holds this many times the papers it was fitted on
SMALL_STORE = 1000  # below this many papers, refit on any growth (it takes well under a second)
CHUNK_PAPERS = 5000  # papers per stored chunk of vectors


def resolve_paper(tx: Transaction, text: str) -> Paper:
    """The stored paper a PAPER argument names: by arXiv id (``2412.01234``, with or without its
    version, or an abs URL) where one is known, else by title (its title key).

    :raises UsageError: no stored paper has this id or title (exit 2)
    """
    text = text.strip()
    if not text:
        raise UsageError("an empty paper title: give a stored paper's arXiv id or title")
    paper_id = arxiv_id(text)
    known = tx.papers.known_by_arxiv_ids([paper_id]) if paper_id else {}
    if not known:
        known = tx.papers.known_by_keys([title_key(text)])
    if not known:
        what = f"with arXiv id {paper_id}" if paper_id else f"titled {text[:200]!r}"
        raise UsageError(f"no stored paper {what}", hint="see 'digestbot search' or 'digestbot papers'")
    return tx.papers.get(next(iter(known.values())).id)


def resolve_papers(tx: Transaction, texts: list[str]) -> list[Paper]:
    if not texts:
        raise UsageError("give at least one example paper")
    return list({p.id: p for p in (resolve_paper(tx, t) for t in texts)}.values())


@dataclass
class _Loaded:
    generation: int = 0
    chunk: int = 0
    vocabulary: rel.Vocabulary | None = None
    parts: list | None = None
    matrix: rel.FeatureMatrix | None = None


MODELS_KEPT = 64  # readers' models a process keeps in memory (each is a vector of the vocabulary's size)


class RelevanceIndex:
    """The process's copy of the stored features (thread-safe; one per process, in the parts), and
    of the readers' models it used last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = _Loaded()
        self._models: OrderedDict[int, tuple[str, rel.ReaderModel]] = OrderedDict()

    def model(self, recipient_id: int, fingerprint: str) -> rel.ReaderModel | None:
        with self._lock:
            kept = self._models.get(recipient_id)
            if kept is None or kept[0] != fingerprint:
                return None
            self._models.move_to_end(recipient_id)
            return kept[1]

    def keep(self, recipient_id: int, fingerprint: str, model: rel.ReaderModel) -> None:
        with self._lock:
            self._models[recipient_id] = (fingerprint, model)
            self._models.move_to_end(recipient_id)
            while len(self._models) > MODELS_KEPT:
                self._models.popitem(last=False)

    def current(self, store: Store, now: datetime) -> tuple[int, rel.Vocabulary, rel.FeatureMatrix]:
        """(generation, vocabulary, matrix) of every stored paper, stored features brought up to date first."""
        update_features(store, now)
        with self._lock, store.reading() as tx:
            generation, chunk = tx.features.state()
            loaded = self._loaded
            if generation != loaded.generation or loaded.vocabulary is None:
                current = tx.features.current()
                loaded = _Loaded(generation, 0, rel.Vocabulary.loads(current[2]) if current else rel.Vocabulary({}, np.zeros(0, np.float32)), [])
            if chunk != loaded.chunk or loaded.matrix is None:
                for chunk_id, _last, data in tx.features.chunks(generation, loaded.chunk):
                    loaded.parts.append(rel.load_rows(data))
                    loaded.chunk = chunk_id
                loaded.matrix = rel.FeatureMatrix.stacked(loaded.parts, loaded.vocabulary.size)
            self._loaded = loaded
            return loaded.generation, loaded.vocabulary, loaded.matrix


def update_features(store: Store, now: datetime) -> int:
    """Store the vectors of papers that have none yet (refitting the vocabulary when the store has
    grown enough); returns how many papers were vectorised. Cheap when nothing changed."""
    with store.reading() as tx:
        current = tx.features.fitted()
        count, newest = tx.features.paper_count(), tx.features.max_paper_id()
        last = tx.features.last_paper_id(current[0]) if current else 0
    if not count or (current is not None and newest <= last and not _refit_due(current[1], count)):
        return 0
    try:
        with store.transaction() as tx:
            current = tx.features.current()
            if current is None or _refit_due(current[1], tx.features.paper_count()):
                return _refit(tx, (current[0] if current else 0) + 1, now)
            vocabulary = rel.Vocabulary.loads(current[2])
            return _extend(tx, current[0], vocabulary, tx.features.last_paper_id(current[0]))
    except Conflict:
        return 0  # another process stored the same generation first


def update_changed(store: Store) -> int:
    """Vectorise again the papers whose title or abstract changed (a later dump revised them) since
    their vectors were stored; returns how many. For `run`'s jobs: it reads every paper's change time."""
    with store.reading() as tx:
        fitted = tx.features.fitted()
        if fitted is None:
            return 0
        newest, covered = tx.features.newest_update(), tx.features.updated_until(fitted[0])
    if newest is None or (covered is not None and newest <= covered):
        return 0
    with store.transaction() as tx:
        current = tx.features.current()
        if current is None or current[0] != fitted[0]:
            return 0
        vocabulary = rel.Vocabulary.loads(current[2])
        changed = tx.features.changed_papers(covered, tx.features.last_paper_id(current[0]))
        # A chunk even when nothing changed among the vectorised papers: it records the time covered.
        # The last vector of a paper wins when the chunks are stacked (FeatureMatrix).
        rows = vocabulary.transform([rel.paper_text(t, a) for _, t, a in changed])
        tx.features.add_chunk(current[0], tx.features.last_paper_id(current[0]),
                              rel.dump_rows([p[0] for p in changed], rows), updated_until=newest)
        return len(changed)


def _refit_due(fitted: int, count: int) -> bool:
    return count > fitted and (fitted < SMALL_STORE or count >= REFIT_GROWTH * fitted)


def _refit(tx: Transaction, generation: int, now: datetime) -> int:
    papers = []
    after = 0
    while batch := tx.features.papers_after(after, 20_000):
        papers += batch
        after = batch[-1][0]
    vocabulary, rows = rel.Vocabulary.fit_rows([rel.paper_text(t, a) for _, t, a in papers])
    tx.features.new_generation(generation, len(papers), vocabulary.dumps(), now)
    newest_update = tx.features.newest_update()
    for start in range(0, len(papers), CHUNK_PAPERS):
        chunk = papers[start:start + CHUNK_PAPERS]
        tx.features.add_chunk(generation, chunk[-1][0], rel.dump_rows(
            [p[0] for p in chunk], rows[start:start + CHUNK_PAPERS]), updated_until=newest_update)
    return len(papers)


def _extend(tx: Transaction, generation: int, vocabulary: rel.Vocabulary, after: int) -> int:
    done = 0
    while batch := tx.features.papers_after(after, CHUNK_PAPERS):
        _store_chunk(tx, generation, vocabulary, batch)
        after, done = batch[-1][0], done + len(batch)
    return done


def _store_chunk(tx: Transaction, generation: int, vocabulary: rel.Vocabulary, papers: list) -> None:
    rows = vocabulary.transform([rel.paper_text(t, a) for _, t, a in papers])
    tx.features.add_chunk(generation, papers[-1][0], rel.dump_rows([p[0] for p in papers], rows))


# ---- similar and recommend ----

def _ranked(tx: Transaction, matrix: rel.FeatureMatrix, scores: np.ndarray, limit: int,
            exclude: set[int]) -> list[dict]:
    best = rel.top(scores, limit, matrix.positions(exclude))
    papers = tx.features.papers([int(matrix.ids[row]) for row, _ in best])
    return [paper_json(papers[int(matrix.ids[row])]) | {"score": round(score, 6)}
            for row, score in best if int(matrix.ids[row]) in papers]


def similar(store: Store, index: RelevanceIndex, examples: list[str], limit: int, now: datetime) -> list[dict]:
    """The stored papers most like these examples (titles), best first, examples left out.

    :raises UsageError: no example, or one that names no stored paper
    """
    with store.reading() as tx:
        ids = [p.id for p in resolve_papers(tx, examples)]
    _generation, _vocabulary, matrix = index.current(store, now)
    with store.reading() as tx:
        weights = rel.similar_weights(matrix, matrix.positions(ids))
        return _ranked(tx, matrix, np.asarray(matrix.rows @ weights.astype(np.float32)).ravel(), limit, set(ids))


@dataclass(frozen=True)
class Training:
    positives: set[int]
    negatives: set[int]

    def __bool__(self) -> bool:
        return bool(self.positives or self.negatives)


def training_of(tx: Transaction, recipient_id: int) -> Training:
    """A reader's examples: likes and up votes positive, down votes negative."""
    votes = tx.votes.vote(recipient_id)
    down = {p for p, v in votes.items() if v < 0}
    return Training((tx.votes.liked_by(recipient_id) | {p for p, v in votes.items() if v > 0}) - down, down)


def reader_model(tx: Transaction, recipient_id: int, generation: int, matrix: rel.FeatureMatrix,
                 training: Training, now: datetime) -> rel.ReaderModel:
    """The reader's model: the stored one if its likes and votes are unchanged, else trained and stored."""
    fingerprint = rel.votes_fingerprint(generation, training.positives, training.negatives)
    stored = tx.features.model(recipient_id)
    if stored is not None and stored[0] == fingerprint:
        model = rel.ReaderModel.loads(stored[1])
        if len(model.weights) == matrix.rows.shape[1]:
            return model
    model = rel.ReaderModel.train(matrix, sorted(training.positives), sorted(training.negatives))
    tx.features.save_model(recipient_id, fingerprint, model.dumps(), now)
    return model


def recipient_id_of(tx: Transaction, recipient: str) -> int:
    address = parse_recipient(recipient, private_webhooks=True).address
    row = tx.subscriptions.recipient_at(address)
    if row is None:
        raise UsageError(f"no recipient {recipient.strip()[:200]!r}", hint="see 'digestbot subscriptions'")
    return row.id


def recommend(store: Store, index: RelevanceIndex, recipient: str, limit: int, now: datetime) -> list[dict]:
    """Stored papers ranked for this reader by its likes and votes; [] when it has none.

    :raises UsageError: an unknown recipient
    """
    with store.reading() as tx:
        recipient_id = recipient_id_of(tx, recipient)
        training = training_of(tx, recipient_id)
        if not training:
            return []
    generation, _vocabulary, matrix = index.current(store, now)
    fingerprint = rel.votes_fingerprint(generation, training.positives, training.negatives)
    model = index.model(recipient_id, fingerprint)
    if model is None:
        with store.transaction() as tx:  # trained (and stored) only if its likes or votes changed
            model = reader_model(tx, recipient_id, generation, matrix, training, now)
        index.keep(recipient_id, fingerprint, model)
    with store.reading() as tx:
        return _ranked(tx, matrix, model.scores(matrix.rows), limit, training.positives | training.negatives)


def reader_scores(tx: Transaction, recipient_id: int, loaded: tuple | None, paper_ids: list[int],
                  now: datetime) -> dict[int, float] | None:
    """Scores of these papers for this reader, or None when it has no likes or votes (today's order)."""
    if loaded is None:
        return None
    training = training_of(tx, recipient_id)
    if not training:
        return None
    generation, _vocabulary, matrix = loaded
    model = reader_model(tx, recipient_id, generation, matrix, training, now)
    rows = matrix.positions(paper_ids)
    scores = model.scores(matrix.rows[rows]) if len(rows) else []
    return {int(matrix.ids[r]): float(s) for r, s in zip(rows, scores)}


def retrain_stale(store: Store, index: RelevanceIndex, now: datetime) -> int:
    """Retrain the models of readers whose likes or votes changed (`run`'s background job)."""
    with store.reading() as tx:
        readers = tx.votes.readers_with_votes()
    if not readers:
        return 0
    generation, _vocabulary, matrix = index.current(store, now)
    done = 0
    for recipient_id in readers:
        with store.transaction() as tx:
            training = training_of(tx, recipient_id)
            fingerprint = rel.votes_fingerprint(generation, training.positives, training.negatives)
            stored = tx.features.model(recipient_id)
            if training and (stored is None or stored[0] != fingerprint):
                reader_model(tx, recipient_id, generation, matrix, training, now)
                done += 1
    return done
