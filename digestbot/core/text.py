"""Text normalisation shared by papers and queries, so that both sides always agree.

A word is normalised by NFKC, case folding, accent folding and Lucene's minimal English
("S") stemmer, so ``Transformers`` → ``transformer``, ``studies`` → ``study``,
``Schrödinger`` → ``schrodinger``, while ``generative`` and ``generation`` stay apart.

Hyphens follow Lucene's WordDelimiterGraphFilter: ``auto-regressive`` yields the parts
``auto`` and ``regressive`` at consecutive positions and the joined form ``autoregressive``
spanning both. Two adjacent words also yield their joined form (a *pair join*), so a query
for ``timeseries`` finds ``time series``; the reverse direction is the query's job.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from itertools import accumulate, compress, count, repeat
from operator import add

# A word: letters/digits, possibly joined by hyphens or apostrophes (already mapped to '-').
_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
_ASCII_SPACES = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "-")})
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u00ad'\u2019"})

_STEM_CACHE_LIMIT = 500_000


def s_stem(word: str) -> str:
    """Lucene's EnglishMinimalStemmer: plural to singular, nothing more."""
    n = len(word)
    if n < 3 or word[-1] != "s":
        return word
    before = word[-2]
    if before in "us":
        return word
    if before == "e":
        if n > 3 and word[-3] == "i" and word[-4] not in "ae":
            return word[:-3] + "y"
        if word[-3] in "iaoe":
            return word
    return word[:-1]


class _StemCache(dict):
    """word → its stem, worked out on a word's first look-up: a batch's words repeat a lot."""

    def __missing__(self, word: str) -> str:
        if len(self) >= _STEM_CACHE_LIMIT:
            self.clear()
        stemmed = self[word] = s_stem(word)
        return stemmed


_stems = _StemCache()


def stem(word: str) -> str:
    return _stems[word]


def fold(text: str) -> str:
    """NFKC, case folding, Unicode dashes and apostrophes to '-', accents removed."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_DASHES)
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return text


def raw_words(text: str) -> list[str]:
    """The folded words of ``text``, hyphenated ones kept whole (``auto-regressive``)."""
    return _spaced_words(text).split()


def _spaced_words(text: str) -> str:
    """The folded words of ``text`` separated by whitespace, hyphens kept only between letters or digits."""
    folded = fold(text)
    if folded.isascii():
        # The same words, faster: every ASCII character but letters, digits and '-' to a space.
        # It differs from the pattern only where a '-' is not between two letters or digits,
        # which the substring tests catch.
        spaced = folded.translate(_ASCII_SPACES)
        if not ("--" in spaced or " -" in spaced or "- " in spaced or spaced[:1] == "-" or spaced[-1:] == "-"):
            return spaced
    return " ".join(_WORD.findall(folded))


def normalize_word(word: str) -> list[str]:
    """A single query word to its stemmed parts: ``Auto-Regressive`` → ``['auto', 'regressive']``."""
    return [stem(part) for w in raw_words(word) for part in w.split("-")]


def join_key(*raw: str) -> str:
    """The joined form of adjacent raw parts, stemmed as one word: ``time`` + ``series``."""
    return stem("".join(raw))


def word_alternatives(raw: tuple[str, ...], i: int) -> set[str]:
    """Terms of which one must be present for word i of a phrase or run: itself or a join with a neighbour."""
    found = {stem(raw[i])}
    if i > 0:
        found.add(join_key(raw[i - 1], raw[i]))
    if i + 1 < len(raw):
        found.add(join_key(raw[i], raw[i + 1]))
    return found


@dataclass(slots=True)
class Field:
    """One field of a paper, tokenised.

    ``tokens[p]`` is the stemmed word at position p (hyphen parts are positions of their own);
    ``spans[p]`` lists (term, length) for joined forms starting at p: a hyphenated word's
    joined form and the pair join of two adjacent words. ``words`` holds every stemmed word,
    part and hyphen join (what a prefix may match); ``terms`` adds the pair joins.
    """

    tokens: list[str] = field(default_factory=list)
    spans: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    words: set[str] = field(default_factory=set)
    terms: set[str] = field(default_factory=set)


def pair_joins_for(vocabulary: set[str] | frozenset[str]) -> dict[str, str]:
    """Every raw spelling whose stem is in ``vocabulary``, mapped to that stem.

    ``stem`` only ever leaves a word alone, drops a final ``s`` or turns ``ies`` into ``y``, so
    the spellings stemming to ``v`` are among ``v``, ``v + "s"`` and ``v[:-1] + "ies"``: one dict
    look-up then says whether two adjacent raw words form a pair join worth keeping, and which.
    """
    found: dict[str, str] = {}
    for term in vocabulary:
        spellings = (term, term + "s", term[:-1] + "ies") if term.endswith("y") else (term, term + "s")
        for spelling in spellings:
            if s_stem(spelling) == term:
                found[spelling] = term
    return found


def analyze(text: str, pair_vocabulary: set[str] | frozenset[str] | dict[str, str] | None = None) -> Field:
    """Tokenise ``text``. With ``pair_vocabulary``, only pair joins in it are kept (a batch
    indexes only the joins some query can ask for; every pair join otherwise). A dict made by
    ``pair_joins_for`` is the fast way to give the same vocabulary for many texts.

    Papers are analysed by the thousand, so the work is done list-at-a-time with ``map`` and
    set operations (C loops) rather than word by word; only hyphenated words and the joins
    found take a Python loop.
    """
    spaced = _spaced_words(text)
    words = spaced.split()
    if not words:
        return Field()
    parts = spaced.replace("-", " ").split() if "-" in spaced else words
    tokens = list(map(_stems.__getitem__, parts))  # stem() without a Python call per word
    # Written forms too, so that a prefix finds what was written (studi* finds "studies").
    # An unstemmed word that its stem changed ends in "s" and is never any word's stem, so
    # adding it cannot make a term match where it should not.
    word_set = set(tokens).union(parts)

    # Joins of adjacent parts, at the position of the first: between two words a pair join,
    # inside a word of three parts or more an inner join ("non-auto-regressive" holds
    # "autoregressive"); both kept only when the vocabulary wants them. Inside a word of two
    # parts, the join is the word's hyphen join (a word, always kept).
    pairs = list(map(add, parts, parts[1:]))
    if pair_vocabulary is None:
        joins = list(map(stem, pairs))
        kept = list(enumerate(joins))
    else:
        if not isinstance(pair_vocabulary, dict):
            pair_vocabulary = pair_joins_for(pair_vocabulary)
        found = pair_vocabulary.keys() & pairs
        joins = list(map(pair_vocabulary.__getitem__, found))
        # the positions of the pairs found, picked out by compress (a C loop) rather than a Python one
        kept = [(p, pair_vocabulary[pairs[p]]) for p in compress(count(), map(found.__contains__, pairs))]

    spans: dict[int, list[tuple[str, int]]]
    if parts is words:
        spans = {p: [(joined, 2)] for p, joined in kept}
    else:
        spans = {}
        # A hyphenated word spans its parts with its hyphen join; word k starts at k plus the
        # hyphens before it. A position holds that join first, then the join of two parts.
        hyphens = list(map(str.count, words, repeat("-")))
        hyphens_before = list(accumulate(hyphens, initial=0))
        two_part_starts = set()
        for k in compress(count(), hyphens):
            word, start = words[k], k + hyphens_before[k]
            written = word.replace("-", "")
            joined = stem(written)
            spans[start] = [(joined, hyphens[k] + 1)]
            word_set.add(joined)
            word_set.add(written)
            if hyphens[k] == 1:
                two_part_starts.add(start)
        for p, joined in kept:
            if p not in two_part_starts:
                spans.setdefault(p, []).append((joined, 2))
    return Field(tokens, spans, word_set, word_set.union(joins))


def phrase_in(raw: tuple[str, ...], doc: Field) -> bool:
    """Whether the words ``raw`` (folded, unstemmed) occur in order and adjacent in ``doc``.

    Either side may write two adjacent words joined: the phrase ``auto regressive model``
    matches ``autoregressive models``, and ``autoregressive model`` matches
    ``auto-regressive models`` or ``auto regressive models``.
    """
    words = [stem(w) for w in raw]
    pairs = [join_key(raw[i], raw[i + 1]) for i in range(len(raw) - 1)]  # the phrase's own joined forms
    # A match starts with the first word or the first pair joined, and every token and span is
    # among the terms: without either, no position can start one.
    if words[0] not in doc.terms and not (pairs and pairs[0] in doc.terms):
        return False
    return any(phrase_starts_at(words, pairs, doc, p) for p in range(len(doc.tokens)))


def phrase_starts_at(words: list[str], pairs: list[str], doc: Field, start: int) -> bool:
    """Whether a phrase (its stemmed words, and the joins of adjacent ones) occurs from ``start``.

    At each step the next phrase word matches a token or a joined form spanning tokens, or the
    next two phrase words, joined, do. Every way is tried (depth first, with a stack of
    (phrase words matched, next position) rather than recursion).
    """
    tokens, spans, n = doc.tokens, doc.spans, len(words)
    todo = [(0, start)]
    while todo:
        i, p = todo.pop()
        if i == n:
            return True
        if p >= len(tokens):
            continue
        token = tokens[p]
        if token == words[i]:
            todo.append((i + 1, p + 1))
        if i + 1 < n and token == pairs[i]:
            todo.append((i + 2, p + 1))
        for term, length in spans.get(p, ()):
            if term == words[i]:
                todo.append((i + 1, p + length))
            if i + 1 < n and term == pairs[i]:
                todo.append((i + 2, p + length))
    return False
