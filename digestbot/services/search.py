"""`digestbot search`: what a query matches among the stored papers, best first."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from digestbot.core.batch import Batch, names_text
from digestbot.core.matcher import vocabulary
from digestbot.core.query_tree import Node, Run, Term, leaves
from digestbot.core.reference import Document, evaluate
from digestbot.core.text import analyze, stem
from digestbot.store import Paper, Store

CHUNK = 2000  # papers analysed at a time: bounded memory on a large store
# The preview looks at the newest this many papers of its window, at most: analysing them costs
# time and memory per paper (see BENCHMARKS.md, "Web pages"), and two weeks of Daily Papers are
# a few hundred: only a store fed from more than the Daily Papers reaches the bound.
PREVIEW_PAPERS = 2000


@dataclass(frozen=True, slots=True)
class Hit:
    paper: Paper
    score: int  # 2 per query term found in the title, 1 per term found in the abstract


def search(store: Store, node: Node, limit: int) -> list[Hit]:
    """Papers matching ``node`` (the same engine that matches subscriptions), best first."""
    terms = vocabulary(node)
    # Each word counts on its own: a Run of several words scores per word.
    scoring = [part for leaf, positive in leaves(node) if positive for part in _scored_parts(leaf)]
    hits: list[Hit] = []
    last_id = 0
    with store.reading() as tx:
        while papers := tx.papers.after(last_id, CHUNK):
            last_id = papers[-1].id
            batch = Batch([(p.title, p.abstract, names_text(p.authors)) for p in papers], terms)
            matched = batch.bits(node)
            if not matched:
                continue
            title_bits = [_bits_in(batch, leaf, "title") for leaf in scoring]
            abstract_bits = [_bits_in(batch, leaf, "abstract") for leaf in scoring]
            for position in batch.positions(matched):
                bit = 1 << position
                score = sum(2 for bits in title_bits if bits & bit) + sum(1 for bits in abstract_bits if bits & bit)
                hits.append(Hit(papers[position], score))
    hits.sort(key=lambda h: (-h.score, -h.paper.first_seen.timestamp(), -h.paper.id))
    return hits[:limit]


class RecentPapers:
    """The newest papers first seen in the last ``days`` (``most`` of them at most), analysed once
    and kept: the subscribe page's as-you-type preview evaluates each keystroke's query against them.

    Analysing the papers is nearly all the cost of a search (see BENCHMARKS.md, "Web pages"),
    and a query only needs a tree walk per paper. ``evaluate`` is the reference meaning
    of a query, which the engine is tested to agree with; the analysis is reloaded whenever the
    papers of the window change. ``most`` bounds the time and memory of a reload and of each
    keystroke on a store that takes in far more papers than the Daily Papers bring.
    """

    def __init__(self, days: int, most: int = PREVIEW_PAPERS) -> None:
        self.days = days
        self.most = most
        self._key: tuple | None = None
        self._papers: list[tuple[Paper, Document]] = []
        self._lock = threading.Lock()

    def search(self, store: Store, node: Node, now: datetime) -> tuple[list[Hit], int]:
        """Every paper of the window that ``node`` matches, best first (as ``search`` orders them),
        and how many papers were looked at."""
        papers = self._current(store, now - timedelta(days=self.days))
        scoring = [part for leaf, positive in leaves(node) if positive for part in _scored_parts(leaf)]
        hits = [Hit(paper, _score(scoring, document)) for paper, document in papers if evaluate(node, document)]
        hits.sort(key=lambda h: (-h.score, -h.paper.first_seen.timestamp(), -h.paper.id))
        return hits, len(papers)

    def _current(self, store: Store, since: datetime) -> list[tuple[Paper, Document]]:
        with store.reading() as tx:
            key = tx.papers.window(since)
            with self._lock:
                if key != self._key:
                    # Kept beyond this transaction, read-only (its session lets them go when it closes).
                    rows = tx.papers.newest_since(since, self.most)
                    self._papers = [(paper, Document.of(paper.title, paper.abstract, names_text(paper.authors)))
                                    for paper in rows]
                    self._key = key
                return self._papers


def _score(scoring: list, document: Document) -> int:
    empty = analyze("")
    in_title, in_abstract = Document(document.title, empty), Document(empty, document.abstract)
    return sum(2 * evaluate(part, in_title) + evaluate(part, in_abstract) for part in scoring)


def _scored_parts(leaf) -> list:
    if isinstance(leaf, Run):
        return [Term(stem(word), leaf.field) for word in leaf.raw]
    return [leaf]


def _bits_in(batch: Batch, leaf, field: str) -> int:
    """Where a query term matches within one field (nowhere, if the term is for the other field)."""
    if leaf.field not in ("any", field):
        return 0
    return batch.bits(dataclasses.replace(leaf, field=field))
