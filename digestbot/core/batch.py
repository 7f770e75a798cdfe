"""A batch of new papers indexed for evaluating many queries at once (see digestbot.core.matcher).

``Batch`` maps each normalised term to the bitset of the papers that contain it (Python ints
are fast bitsets), per field, and evaluates a query for the whole batch with ``&``, ``|`` and
``& ~``. Phrases are pre-filtered with bitsets and confirmed only in the papers that survive,
most of them with one substring search (see ``Batch._phrase_bits``).

Papers come by the thousand and subscriptions by the hundred thousand, so the hot loops are
written as C loops (``map``, set operations, ``itertools``) where Python loops would cost a
few times more; the comments say what each one stands for.
"""

from __future__ import annotations

import bisect
from collections import defaultdict, deque
from collections.abc import Sequence
from itertools import accumulate, chain, compress, count, repeat
from operator import add, itemgetter

from digestbot.core.query_tree import And, Everything, FieldName, Node, Not, Or, Phrase, Prefix, Run, Term
from digestbot.core.text import Field, analyze, join_key, pair_joins_for, phrase_starts_at, stem, word_alternatives

FIELDS = ("title", "abstract", "author")
ANY = ("title", "abstract")  # where a term without a field is looked for: author names only through author:


def names_text(authors) -> str:
    """Author names (a list, a tuple, or None) as the text the author field is analysed from."""
    return " ; ".join(authors) if authors else ""


class Batch:
    """A batch of papers indexed for evaluation: term → bitset of papers, per field."""

    def __init__(self, papers: Sequence[tuple[str, ...]], vocabulary: set[str] | frozenset[str] = frozenset()):
        """``papers`` are (title, abstract) or (title, abstract, author names as names_text);
        ``vocabulary`` the joined forms worth indexing."""
        self.size = len(papers)
        self.all = (1 << self.size) - 1
        self._index(papers, pair_joins_for(vocabulary))  # one dict look-up per pair of adjacent words
        self._bits: dict[tuple[str, str], int] = {}
        self._word_bits: dict[tuple[str, str], int] = {}
        self._joined_bits: dict[tuple[str, str], int] = {}
        self._memo: dict[Node, int] = {}

    def _index(self, papers: Sequence[tuple[str, ...]], joins: dict[str, str]) -> None:
        """Analyse the papers and build the postings."""
        nobody = analyze("")
        self._fields: list[tuple[Field, Field, Field]] = [
            (analyze(paper[0], joins), analyze(paper[1], joins),
             analyze(paper[2], joins) if len(paper) > 2 and paper[2] else nobody)
            for paper in papers]
        # Per field: word → papers, and joined form (hyphen or pair join) → papers where it spans
        # words. Kept apart because a prefix matches written words only (timeser* must not find
        # "time series" through the join "timesery"). A term is a word or a joined form: every
        # term that is not a word (a pair join) spans words.
        self._word_postings: dict[str, dict[str, list[int]]] = {}
        self._span_postings: dict[str, dict[str, list[int]]] = {}
        self._words: dict[str, list[str]] = {}
        # Per field and paper, its tokens between spaces: a phrase written word by word is a substring.
        self._texts: list[list[str]] = []
        for index, name in enumerate(FIELDS):
            words: defaultdict[str, list[int]] = defaultdict(list)
            spans_at: defaultdict[str, list[int]] = defaultdict(list)
            for position, fields in enumerate(self._fields):
                fld = fields[index]
                # "for word in fld.words: words[word].append(position)" as a C loop (deque eats the Nones)
                deque(map(list.append, map(words.__getitem__, fld.words), repeat(position)), 0)
                if fld.spans:  # a position may repeat: harmless in a bitset
                    span_terms = map(itemgetter(0), chain.from_iterable(fld.spans.values()))
                    deque(map(list.append, map(spans_at.__getitem__, span_terms), repeat(position)), 0)
            self._word_postings[name], self._span_postings[name] = dict(words), dict(spans_at)
            # Words (not pair joins) sorted, so that a prefix finds its words by bisection.
            self._words[name] = sorted(words)
            self._texts.append([f" {' '.join(fields[index].tokens)} " for fields in self._fields])

    def term_set(self) -> set[str]:
        """Every term (word or pair join) of any field of any paper."""
        found = set(self._word_postings["title"])
        for postings in (self._span_postings["title"], self._word_postings["abstract"],
                         self._span_postings["abstract"], self._word_postings["author"],
                         self._span_postings["author"]):
            found.update(postings)
        return found

    def word_set(self) -> set[str]:
        return set(self._words["title"]).union(self._words["abstract"], self._words["author"])

    def _field_names(self, field: FieldName) -> tuple[str, ...]:
        return ANY if field == "any" else (field,)

    def term_bits(self, term: str, field: FieldName = "any") -> int:
        result = 0
        for name in self._field_names(field):
            key = (name, term)
            bits = self._bits.get(key)
            if bits is None:
                bits = self._written_bits(name, term)
                if term in self._span_postings[name]:  # else share the written bits' int rather than copy it
                    bits |= self._span_bits(name, term)
                self._bits[key] = bits
            result |= bits
        return result

    def _written_bits(self, name: str, word: str) -> int:
        """The papers where ``word`` is written (as a word, a hyphen part or a hyphen join)."""
        key = (name, word)
        bits = self._word_bits.get(key)
        if bits is None:
            bits = self._word_bits[key] = to_bits(self._word_postings[name].get(word, ()), self.size)
        return bits

    def _span_bits(self, name: str, term: str) -> int:
        """The papers where ``term`` is a joined form spanning words (hyphen or pair join)."""
        key = (name, term)
        bits = self._joined_bits.get(key)
        if bits is None:
            bits = self._joined_bits[key] = to_bits(self._span_postings[name].get(term, ()), self.size)
        return bits

    def prefix_bits(self, prefix: str, field: FieldName = "any") -> int:
        result = 0
        for name in self._field_names(field):
            words = self._words[name]
            i = bisect.bisect_left(words, prefix)
            while i < len(words) and words[i].startswith(prefix):
                result |= self._written_bits(name, words[i])
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
        elif isinstance(node, Everything):
            result = self.all
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
        """``phrase_in`` for every paper, with bitsets sparing most papers the word-by-word search.

        Where the phrase's words are consecutive tokens, it is there, which one substring search
        answers. Otherwise it can be there only where a word of the phrase is a joined form (a
        span) or one of the phrase's own joins is a term: only those papers are searched word by word.
        """
        raw, phrase, size = node.raw, _PhraseSearch(node.raw), self.size
        result = 0
        for name in self._field_names(node.field):
            candidates = self.all
            for i in range(len(raw)):
                alternatives = 0
                for term in word_alternatives(raw, i):
                    alternatives |= self.term_bits(term, name)  # type: ignore[arg-type]
                candidates &= alternatives
                if not candidates:
                    break
            if not candidates:
                continue
            joined = 0
            for pair in phrase.pair_set:
                joined |= self.term_bits(pair, name)  # type: ignore[arg-type]
            if len(raw) == 2:
                # A field holding the two words' join (as a word, a hyphen join or a pair join)
                # holds the phrase: no need to look at those papers one by one.
                result |= candidates & joined
            for word in phrase.word_set:
                joined |= self._span_bits(name, word)
            index = FIELDS.index(name)
            unsure = self.positions(candidates & ~result)
            # "[p for p in unsure if phrase.spaced in texts[p]]" as a C loop
            texts = self._texts[index]
            written = to_bits(list(compress(unsure, map(str.__contains__, map(texts.__getitem__, unsure),
                                                        repeat(phrase.spaced)))), size)
            result |= written
            searched = candidates & joined & ~result
            if searched:
                spanned = [(head, self._span_bits(name, head)) for head in phrase.heads]
                result |= to_bits([p for p in self.positions(searched) if phrase.found_in(
                    self._fields[p][index], [head for head, bits in spanned if bits >> p & 1])], size)
        return result

    @staticmethod
    def positions(bits: int) -> list[int]:
        """The set bits of ``bits``, lowest first."""
        if not bits:
            return []
        # bin() lowest bit first, cut at each 1: the k-th piece is the run of zeros before the
        # k-th set bit, so that bit is at (sum of the first k+1 piece lengths) + k. All in C.
        gaps = bin(bits)[:1:-1].split("1")
        return list(map(add, accumulate(map(len, gaps[:-1])), count()))


class _PhraseSearch:
    """``phrase_in`` for one phrase, against fields one at a time."""

    def __init__(self, raw: tuple[str, ...]) -> None:
        self.n = len(raw)
        self.words = [stem(w) for w in raw]
        self.pairs = [join_key(raw[i], raw[i + 1]) for i in range(self.n - 1)]  # the phrase's own joins
        self.heads = tuple(dict.fromkeys((self.words[0], *self.pairs[:1])))  # what may start a match
        self.spaced = f" {' '.join(self.words)} "  # the words as consecutive tokens between spaces
        self.word_set, self.pair_set = set(self.words), set(self.pairs)

    def found_in(self, doc: Field, spanned_heads: Sequence[str]) -> bool:
        """The search of ``phrase_in``, started only where the phrase's first word (or its join
        with the second) starts instead of at every position. ``spanned_heads``: the heads that
        are joined forms in ``doc`` (the others are looked for among its tokens only)."""
        tokens, spans, words, pairs = doc.tokens, doc.spans, self.words, self.pairs

        for head in self.heads:
            if head not in doc.terms:
                continue
            if head in spanned_heads:
                for p in [p for p, found in spans.items() for term, _ in found if term == head]:
                    if phrase_starts_at(words, pairs, doc, p):
                        return True
            p = -1
            while True:  # list.index finds the next token equal to head at C speed
                try:
                    p = tokens.index(head, p + 1)
                except ValueError:
                    break
                if phrase_starts_at(words, pairs, doc, p):
                    return True
        return False


def to_bits(positions, size: int) -> int:
    """The bitset of ``positions`` (each below ``size``; repeats are harmless)."""
    if not positions:
        return 0
    if len(positions) * 12 < size:  # a few: set bit by bit
        data = bytearray((size + 7) // 8)
        for p in positions:
            data[p >> 3] |= 1 << (p & 7)
        return int.from_bytes(data, "little")
    # Many (a common word's papers): a '1' digit at each position, written by a C loop, read as
    # a number in base 2, costs less than a Python step per position.
    digits = bytearray(b"0") * size
    deque(map(digits.__setitem__, positions, repeat(ord("1"))), 0)
    digits.reverse()
    return int(digits, 2)


__all__ = ["Batch", "to_bits"]
