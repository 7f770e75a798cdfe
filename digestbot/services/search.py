"""`digestbot search`: what a query matches among the stored papers, best first."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digestbot.core.matcher import Batch, vocabulary
from digestbot.core.query import Node, Run, Term, leaves
from digestbot.core.text import stem
from digestbot.store.models import Paper

CHUNK = 2000  # papers analysed at a time: bounded memory on a large store


@dataclass(frozen=True, slots=True)
class Hit:
    paper: Paper
    score: int  # 2 per query term found in the title, 1 per term found in the abstract


def search(session: Session, node: Node, limit: int, since: datetime | None = None) -> list[Hit]:
    """Papers matching ``node`` (the same engine that matches subscriptions), best first;
    with ``since``, only papers first seen at or after it."""
    terms = vocabulary(node)
    # Each word counts on its own: a Run of several words scores per word.
    scoring = [part for leaf, positive in leaves(node) if positive for part in _scored_parts(leaf)]
    hits: list[Hit] = []
    last_id = 0
    while True:
        statement = select(Paper).where(Paper.id > last_id)
        if since is not None:
            statement = statement.where(Paper.first_seen >= since)
        papers = list(session.scalars(statement.order_by(Paper.id).limit(CHUNK)))
        if not papers:
            break
        last_id = papers[-1].id
        batch = Batch([(p.title, p.abstract) for p in papers], terms)
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


def _scored_parts(leaf) -> list:
    if isinstance(leaf, Run):
        return [Term(stem(word), leaf.field) for word in leaf.raw]
    return [leaf]


def _bits_in(batch: Batch, leaf, field: str) -> int:
    """Where a query term matches within one field (nowhere, if the term is for the other field)."""
    if leaf.field not in ("any", field):
        return 0
    return batch.bits(dataclasses.replace(leaf, field=field))
