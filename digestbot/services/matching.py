"""Keep a compiled QueryIndex in step with the active subscriptions, and store matches."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from digestbot.core.matcher import Batch, QueryIndex
from digestbot.core.query import Node, parse_query
from digestbot.store.models import Counter, Match, Paper, Subscription


@dataclass(frozen=True, slots=True)
class NewPaper:
    id: int
    title: str
    abstract: str
    first_seen: datetime


def next_subscription_version(session: Session) -> int:
    """Bump and return the subscriptions counter, inside the caller's transaction.

    The counter row is locked until commit, so versions become visible in order and a
    matcher that has seen version N has seen every change up to N.
    """
    bumped = session.execute(
        update(Counter).where(Counter.name == "subscriptions").values(value=Counter.value + 1)
        .returning(Counter.value)
    ).scalar()
    if bumped is None:
        session.add(Counter(name="subscriptions", value=1))
        session.flush()
        return 1
    return bumped


class SubscriptionMatcher:
    """The active subscriptions of one database, compiled; synced incrementally by version."""

    def __init__(self) -> None:
        self.index = QueryIndex()
        self.version = 0
        self._since: dict[int, datetime] = {}
        self._parsed: dict[str, Node] = {}
        self._lock = threading.Lock()

    def sync(self, session: Session) -> int:
        """Apply subscription changes newer than the last sync; returns how many."""
        with self._lock:
            rows = session.execute(
                select(Subscription.id, Subscription.query, Subscription.active, Subscription.match_since,
                       Subscription.version)
                .where(Subscription.version > self.version).order_by(Subscription.version)
            ).all()
            for row in rows:
                if row.active:
                    node = self._parsed.get(row.query)
                    if node is None:
                        node = self._parsed[row.query] = parse_query(row.query)
                    self.index.add(row.id, node)
                    self._since[row.id] = row.match_since
                else:
                    self.index.remove(row.id)
                    self._since.pop(row.id, None)
                self.version = max(self.version, row.version)
            return len(rows)

    def match(self, papers: Sequence[NewPaper]) -> list[tuple[int, int]]:
        """(subscription id, paper id) for every match of these papers."""
        if not papers or not len(self.index):
            return []
        batch = Batch([(p.title, p.abstract) for p in papers], self.index.vocabulary)
        since = self._since
        return [
            (sub_id, papers[position].id)
            for sub_id, position in self.index.match(batch)
            if papers[position].first_seen >= since[sub_id]
        ]

    def match_and_store(self, session: Session, papers: Sequence[NewPaper], now: datetime) -> int:
        self.sync(session)
        return store_matches(session, self.match(papers), now)


def store_matches(session: Session, pairs: list[tuple[int, int]], now: datetime) -> int:
    """Insert matches, ignoring pairs already stored; returns how many were given.

    Sorted by key, so that the inserts walk the primary-key B-tree in order; in chunks, so that
    millions of matches never need their row dicts in memory at once.
    """
    if not pairs:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        statement = postgresql.insert(Match).on_conflict_do_nothing(index_elements=["subscription_id", "paper_id"])
    elif dialect == "sqlite":
        statement = sqlite.insert(Match).on_conflict_do_nothing()
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        statement = insert(Match)
    statement = statement.values(matched_at=now)  # one value for every row: bound once, not per row
    ordered = sorted(pairs)
    for start in range(0, len(ordered), STORE_CHUNK):
        session.execute(statement, [{"subscription_id": s, "paper_id": p}
                                    for s, p in ordered[start:start + STORE_CHUNK]])
    return len(ordered)


STORE_CHUNK = 20_000


_matchers: dict[str, SubscriptionMatcher] = {}
_matchers_lock = threading.Lock()


def matcher_for(engine: Engine) -> SubscriptionMatcher:
    """The process's cached matcher for this database (kept between ingests)."""
    key = engine.url.render_as_string(hide_password=False)
    with _matchers_lock:
        matcher = _matchers.get(key)
        if matcher is None:
            matcher = _matchers[key] = SubscriptionMatcher()
        return matcher


def papers_since(session: Session, since: datetime) -> list[NewPaper]:
    rows = session.execute(
        select(Paper.id, Paper.title, Paper.abstract, Paper.first_seen).where(Paper.first_seen >= since)
    ).all()
    return [NewPaper(*row) for row in rows]
