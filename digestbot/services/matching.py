"""Keep a compiled QueryIndex in step with the active subscriptions, and store matches.

Matches are stored once per distinct query text (``query_matches``), not once per subscriber:
a popular query is shared by many subscriptions, and the writes were most of an ingest's
matching time. Each subscription's own matches are the ``matches`` view (migration 0008): its
query's matches of the papers first seen since its ``match_since``, outside its pauses, which
``SubscriptionMatcher.sync`` records in ``subscription_pauses`` before each ingest matches.
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from itertools import islice

from sqlalchemy import Engine, exists, select, text, update
from sqlalchemy.orm import Session

from digestbot.core.matcher import Batch, QueryIndex, gc_paused, to_bits, vocabulary
from digestbot.core.query import Node, parse_stored_query
from digestbot.store.db import insert_ignoring_duplicates
from digestbot.store.models import Counter, Paper, Subscription, SubscriptionPause
from digestbot.store.unit import Transaction


@dataclass(frozen=True, slots=True)
class NewPaper:
    id: int
    title: str
    abstract: str
    first_seen: datetime


class BatchMatches:
    """What matching a batch of papers finds, made as it is read, so that storing can start
    before matching ends. Read once (``documents``); then ``subscription_matches`` is the number
    of (subscription, paper) matches."""

    def __init__(self, found: Iterator[tuple[str, int, int]], paper_ids: list[int]) -> None:
        self._found = found  # (query text, bitset of the positions to store, subscription matches)
        self._paper_ids = paper_ids
        self.subscription_matches = 0

    def documents(self, queries_per_document: int) -> Iterator[tuple[str, int]]:
        """The matches to store as JSON objects ``{query text: [paper ids]}`` of up to that many
        queries each, with the number of (query, paper) pairs in each. Each paper id is turned
        into text once for the batch rather than once per match (millions of them)."""
        id_texts = list(map(str, self._paper_ids))
        ids_of: dict[int, str] = {}  # bitset → its ids: different queries often match the same papers
        members: list[str] = []
        pairs = 0
        for query, kept, subscription_matches in self._found:
            self.subscription_matches += subscription_matches
            if not kept:
                continue
            ids = ids_of.get(kept)
            if ids is None:
                ids = ids_of[kept] = ",".join(map(id_texts.__getitem__, Batch.positions(kept)))
            pairs += kept.bit_count()
            members.append(f"{json.dumps(query)}:[{ids}]")
            if len(members) == queries_per_document:
                yield f"{{{','.join(members)}}}", pairs
                members, pairs = [], 0
        if members:
            yield f"{{{','.join(members)}}}", pairs


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
    """The active subscriptions of one database, compiled; synced incrementally by version.

    The index holds each distinct query text once (its owners are texts, not subscriptions):
    a query is evaluated and its matches stored once for all its subscribers.
    """

    def __init__(self) -> None:
        self.index = QueryIndex()
        self.version = 0
        self._subscribers: dict[str, dict[int, datetime]] = {}  # query text → {subscription id: match_since}
        self._query_of: dict[int, str] = {}  # active subscription id → its query text
        self._parsed: dict[str, Node] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Active subscriptions."""
        return len(self._query_of)

    def sync(self, session: Session) -> int:
        """Record pauses, then apply subscription changes newer than the last sync; returns how many."""
        with self._lock:
            record_pauses(session)
            rows = session.execute(
                select(Subscription.id, Subscription.query, Subscription.active, Subscription.match_since,
                       Subscription.version)
                .where(Subscription.version > self.version).order_by(Subscription.version)
            ).all()
            for subscription_id, query, active, since, _ in rows:
                self._drop(subscription_id)
                if active:
                    self._add(subscription_id, query, since)
            if rows:
                self.version = rows[-1][-1]  # the rows come in version order
            return len(rows)

    def _add(self, subscription_id: int, query: str, since: datetime) -> None:
        subscribers = self._subscribers.get(query)
        if subscribers is None:
            node = self._parsed.get(query)
            if node is None:
                node = self._parsed[query] = parse_stored_query(query)
            self.index.add(query, node)
            subscribers = self._subscribers[query] = {}
        subscribers[subscription_id] = since
        self._query_of[subscription_id] = query

    def _drop(self, subscription_id: int) -> None:
        query = self._query_of.pop(subscription_id, None)
        if query is None:
            return
        subscribers = self._subscribers[query]
        del subscribers[subscription_id]
        if not subscribers:
            del self._subscribers[query]
            self.index.remove(query)

    def batch(self, papers: Sequence[NewPaper]) -> Batch:
        """The papers analysed and indexed for matching."""
        return Batch([(p.title, p.abstract) for p in papers], self.index.vocabulary)

    def match(self, papers: Sequence[NewPaper], batch: Batch | None = None) -> BatchMatches:
        """Every match of these papers (``batch``: their ``self.batch``, if made already): per query
        text, the papers first seen since some subscriber's ``match_since``."""
        if not papers or not self._query_of:
            return BatchMatches(iter(()), [])
        if batch is None:
            batch = self.batch(papers)
        return BatchMatches(self._matched(papers, batch), [p.id for p in papers])

    def _matched(self, papers: Sequence[NewPaper], batch: Batch) -> Iterator[tuple[str, int, int]]:
        seen_since = _FirstSeen(papers)
        for query, matched in self.index.match_bits(batch):
            since = self._subscribers[query].values()
            # Every paper is kept for the query that some subscriber takes; each counts per taker.
            kept = matched & seen_since(min(since))
            if matched & seen_since(max(since)) == kept:  # the usual case: every subscriber takes them all
                yield query, kept, kept.bit_count() * len(since)
            else:
                yield query, kept, sum((matched & seen_since(s)).bit_count() for s in since)

    def match_and_store(self, tx: Transaction, papers: Sequence[NewPaper]) -> int:
        """Match and store; returns the number of (subscription, paper) matches. A match needs no
        time stamp of its own: it was made when its paper was first seen (see ``Match``)."""
        session = tx.session
        # The batch is millions of small objects and gone when this returns: the collector would
        # only walk it again and again (a tenth of the time).
        with gc_paused():
            self.sync(session)
            found = self.match(papers)
            store_batch_matches(session, found)
        return found.subscription_matches


class _FirstSeen:
    """since → bitset of a batch's papers first seen at or after ``since`` (a batch has few distinct times)."""

    def __init__(self, papers: Sequence[NewPaper]) -> None:
        at: dict[datetime, list[int]] = {}
        for position, paper in enumerate(papers):
            at.setdefault(paper.first_seen, []).append(position)
        self._times = sorted(at)
        self._from = [0] * (len(self._times) + 1)  # _from[k]: papers first seen at or after _times[k]
        for k in range(len(self._times) - 1, -1, -1):
            self._from[k] = self._from[k + 1] | to_bits(at[self._times[k]], len(papers))

    def __call__(self, since: datetime) -> int:
        return self._from[bisect.bisect_left(self._times, since)]


def record_pauses(session: Session) -> None:
    """Open a pause for every inactive subscription without one, close the pause of every active one.

    A pause starts or ends at the subscription's ``updated_at`` (when it was paused or resumed).
    Done before every ingest matches, so that it holds for every paper matched while inactive;
    reconciled from the subscriptions themselves, so a rolled-back ingest loses nothing.
    """
    open_pause = exists().where(SubscriptionPause.subscription_id == Subscription.id,
                                SubscriptionPause.resumed_at.is_(None))
    session.execute(
        insert_ignoring_duplicates(session.get_bind().dialect.name, SubscriptionPause).from_select(
            ["subscription_id", "paused_at"],
            select(Subscription.id, Subscription.updated_at).where(Subscription.active.is_(False), ~open_pause))
    )
    resumed = session.execute(
        select(Subscription.id, Subscription.updated_at).where(Subscription.active.is_(True), open_pause)
    ).all()
    for subscription_id, resumed_at in resumed:
        session.execute(
            update(SubscriptionPause).where(SubscriptionPause.subscription_id == subscription_id,
                                            SubscriptionPause.resumed_at.is_(None)).values(resumed_at=resumed_at)
        )


# One statement stores the matches of many queries, read from one JSON object {query text: [paper
# ids]}: the rows are made by the database (json_each), not one by one by the driver; and the
# database works on one chunk without holding the GIL while Python matches the next one.
_INSERT_STATEMENTS = {
    "sqlite": (
        "INSERT OR IGNORE INTO match_queries (query) SELECT key FROM json_each(:matches)",
        "INSERT OR IGNORE INTO query_matches (query_id, paper_id) SELECT q.id, p.value "
        "FROM json_each(:matches) AS d JOIN match_queries AS q ON q.query = d.key JOIN json_each(d.value) AS p",
    ),
    "postgresql": (
        "INSERT INTO match_queries (query) SELECT key FROM json_each(CAST(:matches AS JSON)) ON CONFLICT DO NOTHING",
        "INSERT INTO query_matches (query_id, paper_id) SELECT q.id, CAST(p.value AS INTEGER) "
        "FROM json_each(CAST(:matches AS JSON)) AS d JOIN match_queries AS q ON q.query = d.key, "
        "json_array_elements_text(d.value) AS p ON CONFLICT DO NOTHING",
    ),
}


def store_query_matches(session: Session, matches: Iterable[tuple[str, list[int]]]) -> int:
    """Store (query text, paper ids) matches, ignoring pairs already stored; returns how many were given."""
    documents = ((json.dumps(dict(chunk)), sum(len(ids) for _, ids in chunk))
                 for chunk in _chunks(((query, ids) for query, ids in matches if ids), STORE_CHUNK))
    return _write_documents(session, documents)


def store_batch_matches(session: Session, found: BatchMatches) -> int:
    """Store what matching a batch found, as it is found; returns the number of (query, paper) pairs."""
    return _write_documents(session, found.documents(STORE_CHUNK))


def _write_documents(session: Session, documents: Iterable[tuple[str, int]]) -> int:
    """Store (JSON object of matches, pairs in it) documents; returns the sum of the pairs.

    Documents are written by a background thread, one at a time, while ``documents`` makes the
    next (the session is not used meanwhile): on two cores, storing costs little more than matching.
    """
    connection = session.connection()
    statements = [text(sql) for sql in _INSERT_STATEMENTS[connection.dialect.name]]

    def write(document: str) -> None:
        for statement in statements:
            connection.execute(statement, {"matches": document})

    given = 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="digestbot-store") as writer:
        writing = None
        for document, pairs in documents:
            given += pairs
            if writing is not None:
                writing.result()  # one statement at a time on the connection; raises what it raised
            writing = writer.submit(write, document)
        if writing is not None:
            writing.result()
    return given


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def store_matches(session: Session, pairs: Iterable[tuple[int, int]]) -> int:
    """Store (subscription id, paper id) matches as matches of the subscriptions' queries; returns
    how many distinct pairs were given. Like every match, a pair shows in ``matches`` only for a
    paper first seen since the subscription's ``match_since``, outside its pauses."""
    by_subscription: dict[int, set[int]] = {}
    for subscription_id, paper_id in pairs:
        by_subscription.setdefault(subscription_id, set()).add(paper_id)
    if not by_subscription:
        return 0
    by_query: dict[str, set[int]] = {}
    for subscription_id, query in session.execute(
            select(Subscription.id, Subscription.query).where(Subscription.id.in_(list(by_subscription)))):
        by_query.setdefault(query, set()).update(by_subscription[subscription_id])
    store_query_matches(session, ((query, sorted(ids)) for query, ids in by_query.items()))
    return sum(map(len, by_subscription.values()))


def papers_matching(node: Node, papers: Sequence[NewPaper]) -> list[int]:
    """The ids of the papers ``node`` matches."""
    if not papers:
        return []
    batch = Batch([(p.title, p.abstract) for p in papers], vocabulary(node))
    return [papers[position].id for position in batch.positions(batch.bits(node))]


STORE_CHUNK = 2_000  # queries per statement


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
