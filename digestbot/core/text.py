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
from bisect import bisect_right
from itertools import compress, count
from operator import add

# A word: letters/digits, possibly joined by hyphens or apostrophes (already mapped to '-').
_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
_ASCII_SPACES = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "-")})
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u00ad'\u2019"})

_stem_cache: dict[str, str] = {}
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


def stem(word: str) -> str:
    cached = _stem_cache.get(word)
    if cached is None:
        if len(_stem_cache) >= _STEM_CACHE_LIMIT:
            _stem_cache.clear()
        cached = _stem_cache[word] = s_stem(word)
    return cached


def fold(text: str) -> str:
    """NFKC, case folding, Unicode dashes and apostrophes to '-', accents removed."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_DASHES)
    if not text.isascii():
        text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return text


def raw_words(text: str) -> list[str]:
    """The folded words of ``text``, hyphenated ones kept whole (``auto-regressive``)."""
    folded = fold(text)
    if folded.isascii():
        # The same words, faster: every ASCII character but letters, digits and '-' to a space,
        # then split. It differs from the pattern only where a '-' is not between two letters
        # or digits, which the substring tests catch.
        spaced = folded.translate(_ASCII_SPACES)
        if not ("--" in spaced or " -" in spaced or "- " in spaced or spaced[:1] == "-" or spaced[-1:] == "-"):
            return spaced.split()
    return _WORD.findall(folded)


def normalize_word(word: str) -> list[str]:
    """A single query word to its stemmed parts: ``Auto-Regressive`` → ``['auto', 'regressive']``."""
    return [stem(part) for w in raw_words(word) for part in w.split("-")]


def join_key(*raw: str) -> str:
    """The joined form of adjacent raw parts, stemmed as one word: ``time`` + ``series``."""
    return stem("".join(raw))


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
    set operations (C loops) rather than word by word.
    """
    words = raw_words(text)
    if not words:
        return Field()
    hyphenated = [k for k, word in enumerate(words) if "-" in word] if "-" in "".join(words) else []
    if hyphenated:
        # Each word's first and last part (pair joins are formed from them), and extra[i]: the
        # positions the first i hyphenated words take beyond one each (word k starts at k + that).
        firsts, lasts, extra = words.copy(), words.copy(), [0]
        for k in hyphenated:
            word = words[k]
            firsts[k], lasts[k] = word[:word.index("-")], word[word.rindex("-") + 1:]
            extra.append(extra[-1] + word.count("-"))
        parts = "-".join(words).split("-")
    else:
        firsts = lasts = parts = words
    tokens = list(map(_stem_cache.get, parts))  # the hot path looks stems up in stem()'s cache
    if not all(tokens):  # some stems not cached yet (a stem is never empty)
        tokens = [token or stem(part) for token, part in zip(tokens, parts)]

    pairs = list(map(add, lasts, firsts[1:]))  # pairs[k]: the end of word k run into word k + 1
    if pair_vocabulary is None:
        kept = list(enumerate(map(stem, pairs)))
    elif isinstance(pair_vocabulary, dict):
        found = pair_vocabulary.keys() & pairs
        # the k of the pairs found, picked out by compress (a C loop) rather than a Python one
        kept = [(k, pair_vocabulary[pairs[k]]) for k in compress(count(), map(found.__contains__, pairs))]
    else:
        kept = [(k, joined) for k, joined in enumerate(map(stem, pairs)) if joined in pair_vocabulary]

    # A position starts at most one span: a hyphen join at a word's first part, a pair join at
    # its last part, and these are one part only when the word has no hyphen.
    spans: dict[int, list[tuple[str, int]]] = {}
    # Written forms too, so that a prefix finds what was written (studi* finds "studies").
    # An unstemmed word that its stem changed ends in "s" and is never any word's stem, so
    # adding it cannot make a term match where it should not.
    word_set = set(tokens).union(parts)
    joins = [joined for _, joined in kept]
    if hyphenated:
        for i, k in enumerate(hyphenated):
            word_parts = words[k].split("-")
            start = k + extra[i]
            joined = join_key(*word_parts)
            spans.setdefault(start, []).append((joined, len(word_parts)))
            word_set.add(joined)
            word_set.add("".join(word_parts))
            # Inside a longer hyphenated word, adjacent parts join too: "non-auto-regressive"
            # holds "autoregressive" (kept, like pair joins, only when some query wants it).
            for j in range(len(word_parts) - 1) if len(word_parts) > 2 else ():
                inner = _wanted_join(word_parts[j], word_parts[j + 1], pair_vocabulary)
                if inner is not None:
                    spans.setdefault(start + j, []).append((inner, 2))
                    joins.append(inner)
        for k, joined in kept:  # word k ends at the position before word k + 1 starts
            spans.setdefault(k + extra[bisect_right(hyphenated, k)], []).append((joined, 2))
    else:
        for k, joined in kept:
            spans[k] = [(joined, 2)]
    return Field(tokens, spans, word_set, word_set.union(joins))


def _wanted_join(left: str, right: str, vocabulary) -> str | None:
    """The stemmed join of two adjacent raw parts, if ``vocabulary`` (as given to analyze) wants it."""
    if vocabulary is None:
        return join_key(left, right)
    if isinstance(vocabulary, dict):
        return vocabulary.get(left + right)
    joined = join_key(left, right)
    return joined if joined in vocabulary else None


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
    next two phrase words, joined, do.
    """
    tokens, spans, n = doc.tokens, doc.spans, len(words)

    def extend(i: int, p: int) -> bool:
        if i == n:
            return True
        if p >= len(tokens):
            return False
        if tokens[p] == words[i] and extend(i + 1, p + 1):
            return True
        if i + 1 < n and tokens[p] == pairs[i] and extend(i + 2, p + 1):
            return True
        for term, length in spans.get(p, ()):
            if term == words[i] and extend(i + 1, p + length):
                return True
            if i + 1 < n and term == pairs[i] and extend(i + 2, p + length):
                return True
        return False

    return extend(0, start)
