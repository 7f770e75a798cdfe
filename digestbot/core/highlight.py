"""Which words of a paper a query matched, and an abstract snippet around the first of them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from digestbot.core.query_tree import Node, Phrase, Prefix, Run, Term, leaves
from digestbot.core.text import fold, join_key, stem

_WORD = re.compile(r"[^\W_]+(?:[-\u2010\u2011\u2013'\u2019][^\W_]+)*")

_candidates_cache: dict[str, frozenset[str]] = {}
_CANDIDATES_CACHE_LIMIT = 200_000


def _candidates(word: str) -> frozenset[str]:
    """The keys a word of a text can match: its hyphen parts stemmed, and the parts joined.

    Cached by word: a digest shows the same abstracts to many readers, and prose repeats words.
    """
    cached = _candidates_cache.get(word)
    if cached is None:
        parts = fold(word).split("-")
        cached = frozenset([*map(stem, parts), join_key(*parts)])
        if len(_candidates_cache) >= _CANDIDATES_CACHE_LIMIT:
            _candidates_cache.clear()
        _candidates_cache[word] = cached
    return cached


@dataclass(frozen=True, slots=True)
class Highlighter:
    """The positive terms of some queries, ready to mark matching words in original text."""

    terms: frozenset[str]
    prefixes: tuple[str, ...]

    @classmethod
    def of(cls, nodes: list[Node]) -> Highlighter:
        terms: set[str] = set()
        prefixes: list[str] = []
        for node in nodes:
            for leaf, positive in leaves(node):
                if not positive or getattr(leaf, "field", "any") == "author":
                    continue  # an author: term marks no word of the title or abstract
                if isinstance(leaf, Term):
                    terms.add(leaf.key)
                elif isinstance(leaf, Prefix):
                    prefixes.append(leaf.prefix)
                elif isinstance(leaf, (Phrase, Run)):
                    terms.update(stem(w) for w in leaf.raw)
                    terms.update(join_key(a, b) for a, b in zip(leaf.raw, leaf.raw[1:]))
        return cls(frozenset(terms), tuple(prefixes))

    def _matched(self, text: str) -> Iterator[re.Match[str]]:
        """The matched words of ``text``, in order."""
        terms, prefixes = self.terms, self.prefixes
        for m in _WORD.finditer(text):
            candidates = _candidates(m.group())
            if not terms.isdisjoint(candidates) or (prefixes and any(c.startswith(prefixes) for c in candidates)):
                yield m

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character offsets of the matched words of ``text``."""
        return [m.span() for m in self._matched(text)]

    def segments(self, text: str) -> list[tuple[str, bool]]:
        """``text`` cut into (piece, is_match) pieces, for templates to mark up safely."""
        out: list[tuple[str, bool]] = []
        last = 0
        for start, end in self.spans(text):
            if start > last:
                out.append((text[last:start], False))
            out.append((text[start:end], True))
            last = end
        if last < len(text):
            out.append((text[last:], False))
        return out

    def snippet(self, text: str, width: int = 300) -> list[tuple[str, bool]]:
        """About ``width`` characters of ``text`` around its first matched word, cut at spaces."""
        if len(text) <= width:
            return self.segments(text)
        found = next(self._matched(text), None)  # only the first matched word counts here
        first = found.start() if found else 0
        start = max(0, first - width // 3)
        if start > 0:
            space = text.find(" ", start)
            start = space + 1 if 0 <= space < first else start
        end = min(len(text), start + width)
        if end < len(text):
            space = text.rfind(" ", start, end)
            end = space if space > first else end
        piece = self.segments(text[start:end])
        if start > 0:
            piece.insert(0, ("…", False))
        if end < len(text):
            piece.append(("…", False))
        return piece
