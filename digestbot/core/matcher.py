"""Match many queries against a batch of papers at once (the reverse search of an alert bot).

Two structures make the cost grow with the text of the new papers and the number of real
candidates instead of papers × subscriptions:

- ``QueryIndex`` (here) holds every subscription's query, deduplicated (many subscribers share a
  query), and indexes each distinct query under its *anchors*: terms (or prefixes) of which
  every matching paper must contain at least one. It is updated incrementally.
- ``Batch`` (digestbot.core.batch) indexes the new papers: normalised term → bitset of the
  papers that contain it. Only the queries anchored on a term of the batch are evaluated, each
  once for the whole batch.

The meaning of a query is ``digestbot.core.reference.evaluate``; the tests hold this engine to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator
from itertools import chain, repeat

from digestbot.core.batch import Batch
from digestbot.core.query_tree import And, Everything, Node, Not, Or, Phrase, Prefix, Run, Term
from digestbot.core.text import join_key, stem, word_alternatives

Anchor = tuple[str, str]  # ("term", stemmed term) or ("prefix", folded prefix), or EVERY_PAPER
EVERY_PAPER: Anchor = ("every", "")  # the anchor of ``*``: a candidate for every batch

def vocabulary(node: Node) -> set[str]:
    """Every term evaluating ``node`` may look up, joined forms included."""
    if isinstance(node, Term):
        return {node.key}
    if isinstance(node, (Phrase, Run)):
        raw = node.raw
        return {*map(stem, raw), *map(join_key, raw, raw[1:])}  # each word, each two neighbours joined
    if isinstance(node, (And, Or)):
        return set().union(*(vocabulary(child) for child in node.children))
    if isinstance(node, Not):
        return vocabulary(node.child)
    return set()  # a prefix matches written words only, never joins


def anchors(node: Node) -> set[Anchor] | None:
    """A set of which every matching paper contains at least one, or None (an exclusion)."""
    if isinstance(node, Term):
        return {("term", node.key)}
    if isinstance(node, Everything):
        return {EVERY_PAPER}
    if isinstance(node, Prefix):
        return {("prefix", node.prefix)}
    if isinstance(node, (Phrase, Run)):
        # The longest word is likely the rarest: anchoring there keeps candidates few.
        i = max(range(len(node.raw)), key=lambda k: len(node.raw[k]))
        return {("term", t) for t in word_alternatives(node.raw, i)}
    if isinstance(node, Or):
        found: set[Anchor] = set()
        for child in node.children:
            child_anchors = anchors(child)
            if child_anchors is None:
                return None
            found |= child_anchors
        return found
    if isinstance(node, And):
        options = [a for a in map(anchors, node.children) if a is not None]
        if not options:
            return None
        # Fewest alternatives first, then the longest (rarest-looking) terms.
        return min(options, key=lambda a: (len(a), -sum(len(t) for _, t in a)))
    return None


class QueryIndex:
    """Subscriptions' queries, deduplicated and indexed by anchor; add and remove as they change."""

    def __init__(self) -> None:
        self._query_id: dict[Node, int] = {}
        self._nodes: dict[int, Node] = {}
        self._anchors: dict[int, set[Anchor]] = {}
        self._owners: dict[int, set[Hashable]] = {}
        self._owned: dict[Hashable, int] = {}
        self._by_term: dict[str, set[int]] = {}
        self._by_prefix: dict[str, set[int]] = {}
        self._every: set[int] = set()  # queries anchored on EVERY_PAPER (``*``)
        self._prefix_lengths: Counter[int] = Counter()
        self._vocabulary: Counter[str] = Counter()
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._owned)

    @property
    def distinct_queries(self) -> int:
        return len(self._nodes)

    @property
    def vocabulary(self) -> set[str]:
        return set(self._vocabulary)

    def add(self, owner: Hashable, node: Node) -> None:
        """Register (or replace) the query of ``owner``, e.g. a subscription id."""
        if owner in self._owned:
            self.remove(owner)
        qid = self._query_id.get(node)
        if qid is None:
            qid = self._next_id
            self._next_id += 1
            found = anchors(node)
            if found is None:  # the parser refuses such queries; never index one
                raise ValueError(f"query has nothing positive to match: {node!r}")
            self._query_id[node], self._nodes[qid], self._anchors[qid] = qid, node, found
            self._owners[qid] = set()
            for kind, value in found:
                if kind == EVERY_PAPER[0]:
                    self._every.add(qid)
                    continue
                index = self._by_term if kind == "term" else self._by_prefix
                anchored = index.get(value)
                if anchored is None:
                    index[value] = {qid}
                else:
                    anchored.add(qid)
                if kind == "prefix":
                    self._prefix_lengths[len(value)] += 1
            self._vocabulary.update(vocabulary(node))
        self._owners[qid].add(owner)
        self._owned[owner] = qid

    def remove(self, owner: Hashable) -> None:
        qid = self._owned.pop(owner, None)
        if qid is None:
            return
        owners = self._owners[qid]
        owners.discard(owner)
        if owners:
            return
        node = self._nodes.pop(qid)
        del self._query_id[node], self._owners[qid]
        for kind, value in self._anchors.pop(qid):
            if kind == EVERY_PAPER[0]:
                self._every.discard(qid)
                continue
            index = self._by_term if kind == "term" else self._by_prefix
            index[value].discard(qid)
            if not index[value]:
                del index[value]
            if kind == "prefix":
                self._prefix_lengths[len(value)] -= 1
                if not self._prefix_lengths[len(value)]:
                    del self._prefix_lengths[len(value)]
        self._vocabulary.subtract(vocabulary(node))
        self._vocabulary += Counter()  # drop terms no query needs any more

    def candidates(self, batch: Batch) -> set[int]:
        """Distinct queries anchored on something the batch contains."""
        found: set[int] = set(self._every) if batch.size else set()
        by_term, by_prefix = self._by_term, self._by_prefix
        for term in by_term.keys() & batch.term_set():  # an intersection in C, not a loop
            found |= by_term[term]
        if by_prefix:
            words = batch.word_set()
            for length in self._prefix_lengths:
                heads = {word[:length] for word in words if len(word) >= length}
                for head in by_prefix.keys() & heads:
                    found |= by_prefix[head]
        return found

    def match_bits(self, batch: Batch) -> Iterator[tuple[Hashable, int]]:
        """(owner, bitset of the batch's papers its query matches) for every owner with a match,
        evaluated as they are taken. Each distinct query is evaluated once, however many owners
        share it."""
        owners, nodes, bits = self._owners, self._nodes, batch.bits
        for qid in self.candidates(batch):
            matched = bits(nodes[qid])
            if matched:
                for owner in owners[qid]:
                    yield owner, matched

    def match(self, batch: Batch) -> Iterator[tuple[Hashable, int]]:
        """(owner, paper position in the batch) for every match."""
        positions = batch.positions
        # every owner × every paper, the pairs made and passed on in C
        return chain.from_iterable(zip(repeat(owner), positions(matched)) for owner, matched in self.match_bits(batch))


__all__ = ["QueryIndex", "anchors", "vocabulary"]
