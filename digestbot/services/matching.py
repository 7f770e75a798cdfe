"""Keep a compiled QueryIndex in step with the active subscriptions, and store matches.

Matches are stored once per distinct query text (see ``digestbot.store.matches``); each
subscription's own matches are the ``matches`` view, which needs the subscriptions' pauses
recorded: ``SubscriptionMatcher.sync`` records them before each ingest matches.

A ``SubscriptionMatcher`` is an object its owner makes and keeps (one per process, kept between
ingests); it syncs incrementally by the subscriptions version (see ``digestbot.store.subscriptions``:
every change of a subscription moves it) and starts over when the database is another one.
"""

from __future__ import annotations

import bisect
import json
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from digestbot.core.batch import Batch, names_text, to_bits
from digestbot.core.matcher import QueryIndex, vocabulary
from digestbot.core.query import parse_stored_query
from digestbot.core.query_tree import Node
from digestbot.store import Transaction
from digestbot.store.matches import QUERIES_PER_DOCUMENT

# The name under which a database keeps the random id that tells it from a database recreated at the same URL.
DATABASE_ID = "database_id"


@dataclass(frozen=True, slots=True)
class NewPaper:
    id: int
    title: str
    abstract: str
    first_seen: datetime
    authors: Sequence[str] | None = None  # names, for author: queries


class BatchMatches:
    """What matching a batch of papers finds, made as it is read, so that storing can start
    before matching ends. Read once (``documents``); then ``subscription_matches`` is the number
    of (subscription, paper) matches."""

    def __init__(self, found: Iterator[tuple[str, int, int]], paper_ids: list[int]) -> None:
        self._found = found  # (query text, bitset of the positions to store, subscription matches)
        self._paper_ids = paper_ids
        self.subscription_matches = 0
        self.queries: list[str] = []  # the query texts that matched something, once read

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
            self.queries.append(query)
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


class SubscriptionMatcher:
    """The active subscriptions of one database, compiled; synced incrementally by version.

    The index holds each distinct query text once (its owners are texts, not subscriptions):
    a query is evaluated and its matches stored once for all its subscribers. Its owner makes it
    and keeps it between ingests (a new one reads every subscription on its first sync).
    """

    def __init__(self) -> None:
        self.index = QueryIndex()
        self.version = 0
        self.database: str | None = None  # the id of the database synced from (see DATABASE_ID)
        self._subscribers: dict[str, dict[int, datetime]] = {}  # query text → {subscription id: match_since}
        self._query_of: dict[int, str] = {}  # active subscription id → its query text
        self._instant: set[int] = set()  # active instant subscriptions: woken when their query matches
        self._parsed: dict[str, Node] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Active subscriptions."""
        return len(self._query_of)

    def active(self) -> dict[int, str]:
        """What the matcher matches for: active subscription id → its query text (a copy)."""
        with self._lock:
            return dict(self._query_of)

    def sync(self, tx: Transaction) -> int:
        """Record pauses, then apply subscription changes newer than the last sync; returns how many.

        A database recreated at the same URL (its versions start again from 1) has another id:
        the matcher then forgets what it knew and reads every subscription again.
        """
        with self._lock:
            database = tx.secrets.kept(DATABASE_ID, lambda: uuid.uuid4().hex)
            if database != self.database:
                self._forget()
                self.database = database
            subscriptions = tx.subscriptions
            subscriptions.record_pauses()
            changes = subscriptions.changed_since(self.version)
            for change in changes:
                self._drop(change.id)
                if change.active:
                    self._add(change.id, change.query, change.match_since)
                    if change.cadence == "instant":
                        self._instant.add(change.id)
            if changes:
                self.version = changes[-1].version  # they come in version order
            return len(changes)

    def _forget(self) -> None:
        self.index = QueryIndex()
        self.version = 0
        self._subscribers.clear()
        self._query_of.clear()
        self._instant.clear()

    def _add(self, subscription_id: int, query: str, since: datetime) -> None:
        if not query:  # a "more like these" subscription without a query: chosen at digest time
            return
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
        self._instant.discard(subscription_id)
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
        return Batch([(p.title, p.abstract, names_text(p.authors)) for p in papers], self.index.vocabulary)

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
        """Sync, match and store, in the caller's transaction; returns the number of (subscription,
        paper) matches. A match needs no time stamp of its own: it was made when its paper was
        first seen (see ``Match``)."""
        self.sync(tx)
        found = self.match(papers)
        store_batch_matches(tx, found)
        if self._instant:  # their alerts are due at the next digest pass (see Subscription.next_due_at)
            tx.subscriptions.wake_instant(sorted({sid for query in found.queries for sid in self._subscribers[query]
                                                  if sid in self._instant}))
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


def store_batch_matches(tx: Transaction, found: BatchMatches) -> int:
    """Store what matching a batch found, as it is found; returns the number of (query, paper) pairs."""
    return tx.matches.store_documents(found.documents(QUERIES_PER_DOCUMENT))


def store_query_matches(tx: Transaction, matches: Iterable[tuple[str, list[int]]]) -> int:
    """Store (query text, paper ids) matches, ignoring pairs already stored; returns how many were given."""
    return tx.matches.store(matches)


def store_matches(tx: Transaction, pairs: Iterable[tuple[int, int]]) -> int:
    """Store (subscription id, paper id) matches as matches of the subscriptions' queries; returns
    how many distinct pairs were given. Like every match, a pair shows in ``matches`` only for a
    paper first seen since the subscription's ``match_since``, outside its pauses."""
    by_subscription: dict[int, set[int]] = {}
    for subscription_id, paper_id in pairs:
        by_subscription.setdefault(subscription_id, set()).add(paper_id)
    if not by_subscription:
        return 0
    by_query: dict[str, set[int]] = {}
    for subscription_id, query in tx.subscriptions.queries(list(by_subscription)).items():
        by_query.setdefault(query, set()).update(by_subscription[subscription_id])
    store_query_matches(tx, ((query, sorted(ids)) for query, ids in by_query.items()))
    tx.subscriptions.wake_instant(sorted(by_subscription))
    return sum(map(len, by_subscription.values()))


def papers_matching(node: Node, papers: Sequence[NewPaper]) -> list[int]:
    """The ids of the papers ``node`` matches."""
    if not papers:
        return []
    batch = Batch([(p.title, p.abstract, names_text(p.authors)) for p in papers], vocabulary(node))
    return [papers[position].id for position in batch.positions(batch.bits(node))]


def papers_since(tx: Transaction, since: datetime) -> list[NewPaper]:
    """The papers first seen at or after ``since``, as matching takes them."""
    return [NewPaper(*row) for row in tx.papers.since(since)]
