"""Match many queries against a batch of papers at once (the reverse search of an alert bot).

Two structures make the cost grow with the text of the new papers and the number of real
candidates instead of papers × subscriptions:

- ``QueryIndex`` holds every subscription's query, deduplicated (many subscribers share a
  query), and indexes each distinct query under its *anchors*: terms (or prefixes) of which
  every matching paper must contain at least one. It is updated incrementally.
- ``Batch`` indexes the new papers: normalised term → bitset of the papers that contain it
  (Python ints are fast bitsets). Only the queries anchored on a term of the batch are
  evaluated, each once for the whole batch, with ``&``, ``|`` and ``& ~``. Phrases are
  pre-filtered with bitsets and confirmed by position only in the papers that survive.

The meaning of a query is ``digestbot.core.query.evaluate``; the tests hold this engine to it.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Hashable, Iterator, Sequence

from digestbot.core.query import And, FieldName, Node, Not, Or, Phrase, Prefix, Run, Term, run_holds
from digestbot.core.text import Field, analyze, join_key, phrase_in, stem

FIELDS = ("title", "abstract")

Anchor = tuple[str, str]  # ("term", stemmed term) or ("prefix", folded prefix)


def _word_alternatives(raw: tuple[str, ...], i: int) -> set[str]:
    """Terms of which one must be present for word i of a phrase or run: itself or a join with a neighbour."""
    found = {stem(raw[i])}
    if i > 0:
        found.add(join_key(raw[i - 1], raw[i]))
    if i + 1 < len(raw):
        found.add(join_key(raw[i], raw[i + 1]))
    return found


def vocabulary(node: Node) -> set[str]:
    """Every term evaluating ``node`` may look up, joined forms included."""
    if isinstance(node, Term):
        return {node.key}
    if isinstance(node, (Phrase, Run)):
        return set().union(*(_word_alternatives(node.raw, i) for i in range(len(node.raw))))
    if isinstance(node, (And, Or)):
        return set().union(*(vocabulary(child) for child in node.children))
    if isinstance(node, Not):
        return vocabulary(node.child)
    return set()  # a prefix matches written words only, never joins


def anchors(node: Node) -> set[Anchor] | None:
    """A set of which every matching paper contains at least one, or None (an exclusion)."""
    if isinstance(node, Term):
        return {("term", node.key)}
    if isinstance(node, Prefix):
        return {("prefix", node.prefix)}
    if isinstance(node, (Phrase, Run)):
        # The longest word is likely the rarest: anchoring there keeps candidates few.
        i = max(range(len(node.raw)), key=lambda k: len(node.raw[k]))
        return {("term", t) for t in _word_alternatives(node.raw, i)}
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
                if kind == "term":
                    self._by_term.setdefault(value, set()).add(qid)
                else:
                    self._by_prefix.setdefault(value, set()).add(qid)
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
        found: set[int] = set()
        by_term, by_prefix = self._by_term, self._by_prefix
        for term in batch.terms():
            hit = by_term.get(term)
            if hit:
                found |= hit
        if by_prefix:
            lengths = sorted(self._prefix_lengths)
            for word in batch.words():
                for length in lengths:
                    if length > len(word):
                        break
                    hit = by_prefix.get(word[:length])
                    if hit:
                        found |= hit
        return found

    def match(self, batch: Batch) -> Iterator[tuple[Hashable, int]]:
        """(owner, paper position in the batch) for every match."""
        for qid in self.candidates(batch):
            hits = batch.positions(batch.bits(self._nodes[qid]))
            if hits:
                for owner in self._owners[qid]:
                    for position in hits:
                        yield owner, position


class Batch:
    """A batch of papers indexed for evaluation: term → bitset of papers, per field."""

    def __init__(self, papers: Sequence[tuple[str, str]], vocabulary: set[str] | frozenset[str] = frozenset()):
        """``papers`` are (title, abstract); ``vocabulary`` the joined forms worth indexing."""
        self.size = len(papers)
        self.all = (1 << self.size) - 1
        self._fields: list[tuple[Field, Field]] = []
        self._postings: dict[str, dict[str, list[int]]] = {"title": {}, "abstract": {}}
        self._words: dict[str, list[str]] = {}
        for position, (title, abstract) in enumerate(papers):
            analysed = (analyze(title, vocabulary), analyze(abstract, vocabulary))
            self._fields.append(analysed)
            for name, fld in zip(FIELDS, analysed):
                postings = self._postings[name]
                for term in fld.terms:
                    postings.setdefault(term, []).append(position)
        for name in FIELDS:
            # Words (not pair joins) sorted, so that a prefix finds its words by bisection.
            self._words[name] = sorted({w for fld in self._fields for w in fld[FIELDS.index(name)].words})
        self._bits: dict[tuple[str, str], int] = {}
        self._memo: dict[Node, int] = {}

    def terms(self) -> Iterator[str]:
        yield from self._postings["title"]
        for term in self._postings["abstract"]:
            if term not in self._postings["title"]:
                yield term

    def words(self) -> Iterator[str]:
        yield from set(self._words["title"]).union(self._words["abstract"])

    def _field_names(self, field: FieldName) -> tuple[str, ...]:
        return FIELDS if field == "any" else (field,)

    def term_bits(self, term: str, field: FieldName = "any") -> int:
        result = 0
        for name in self._field_names(field):
            key = (name, term)
            bits = self._bits.get(key)
            if bits is None:
                bits = self._bits[key] = _to_bits(self._postings[name].get(term, ()), self.size)
            result |= bits
        return result

    def prefix_bits(self, prefix: str, field: FieldName = "any") -> int:
        result = 0
        for name in self._field_names(field):
            words = self._words[name]
            i = bisect.bisect_left(words, prefix)
            while i < len(words) and words[i].startswith(prefix):
                result |= self.term_bits(words[i], name)  # type: ignore[arg-type]
                i += 1
        return result

    def bits(self, node: Node) -> int:
        """The papers of this batch matching ``node``, as a bitset."""
        memo = self._memo.get(node)
        if memo is not None:
            return memo
        if isinstance(node, Term):
            result = self.term_bits(node.key, node.field)
        elif isinstance(node, Prefix):
            result = self.prefix_bits(node.prefix, node.field)
        elif isinstance(node, Run):
            result = self._run_bits(node)
        elif isinstance(node, Phrase):
            result = self._phrase_bits(node)
        elif isinstance(node, Or):
            result = 0
            for child in node.children:
                result |= self.bits(child)
        elif isinstance(node, And):
            result = self.all
            for child in sorted(node.children, key=lambda c: isinstance(c, Not)):  # exclusions last
                result &= ~self.bits(child.child) if isinstance(child, Not) else self.bits(child)
                if not result:
                    break
        elif isinstance(node, Not):
            result = self.all & ~self.bits(node.child)
        else:
            raise TypeError(f"not a query node: {node!r}")
        self._memo[node] = result
        return result

    def _run_bits(self, node: Run) -> int:
        field, raw = node.field, node.raw
        before, current = self.all, self.term_bits(stem(raw[0]), field)
        for i in range(1, len(raw)):
            joined = self.term_bits(join_key(raw[i - 1], raw[i]), field)
            before, current = current, (current & self.term_bits(stem(raw[i]), field)) | (before & joined)
        return current

    def _phrase_bits(self, node: Phrase) -> int:
        field, raw = node.field, node.raw
        result = 0
        for name in self._field_names(field):
            candidates = self.all
            for i in range(len(raw)):
                alternatives = 0
                for term in _word_alternatives(raw, i):
                    alternatives |= self.term_bits(term, name)  # type: ignore[arg-type]
                candidates &= alternatives
                if not candidates:
                    break
            index = FIELDS.index(name)
            for position in self.positions(candidates & ~result):
                if phrase_in(raw, self._fields[position][index]):
                    result |= 1 << position
        return result

    @staticmethod
    def positions(bits: int) -> list[int]:
        """The set bits of ``bits``, lowest first."""
        found = []
        data = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
        for byte_index, byte in enumerate(data):
            while byte:
                low = byte & -byte
                found.append(byte_index * 8 + low.bit_length() - 1)
                byte ^= low
        return found


def _to_bits(positions, size: int) -> int:
    if not positions:
        return 0
    data = bytearray((size + 7) // 8)
    for p in positions:
        data[p >> 3] |= 1 << (p & 7)
    return int.from_bytes(data, "little")


# Kept for callers that only need one query against a few papers.
def matches(node: Node, title: str, abstract: str) -> bool:
    batch = Batch([(title, abstract)], vocabulary(node))
    return bool(batch.bits(node))


__all__ = ["Batch", "QueryIndex", "anchors", "matches", "run_holds", "vocabulary"]
