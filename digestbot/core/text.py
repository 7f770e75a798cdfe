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
from collections.abc import Callable
from dataclasses import dataclass, field

# A word: letters/digits, possibly joined by hyphens or apostrophes (already mapped to '-').
_WORD = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
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
    return _WORD.findall(fold(text))


def normalize_word(word: str) -> list[str]:
    """A single query word to its stemmed parts: ``GPT-4s`` → ``['gpt', '4']``."""
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
    ``pair_joins_for`` is the fast way to give the same vocabulary for many texts."""
    if pair_vocabulary is None:
        return _analyze(text, stem)
    if isinstance(pair_vocabulary, dict):
        return _analyze(text, pair_vocabulary.get)
    return _analyze(text, lambda raw: joined if (joined := stem(raw)) in pair_vocabulary else None)


def _analyze(text: str, pair_join: Callable[[str], str | None]) -> Field:
    """The tokeniser; ``pair_join(raw)`` is the stemmed join of two adjacent raw words run
    together as ``raw``, or None when that join is not to be kept."""
    tokens: list[str] = []
    spans: dict[int, list[tuple[str, int]]] = {}
    hyphen_joins: list[str] = []
    pair_joins: list[str] = []
    known = _stem_cache.get  # the hot loop looks stems up directly; stem() fills the cache
    last_raw: str | None = None  # the raw last part of the previous word, for pair joins
    for word in raw_words(text):
        if "-" in word:
            start = len(tokens)
            parts = word.split("-")
            joined = join_key(*parts)
            spans.setdefault(start, []).append((joined, len(parts)))
            hyphen_joins.append(joined)
            if last_raw is not None:
                pair = pair_join(last_raw + parts[0])
                if pair is not None:
                    spans.setdefault(start - 1, []).append((pair, 2))
                    pair_joins.append(pair)
            for part in parts:
                tokens.append(known(part) or stem(part))
            last_raw = parts[-1]
        else:  # the common case, kept short
            if last_raw is not None:
                pair = pair_join(last_raw + word)
                if pair is not None:
                    spans.setdefault(len(tokens) - 1, []).append((pair, 2))
                    pair_joins.append(pair)
            tokens.append(known(word) or stem(word))
            last_raw = word
    words = set(tokens)
    words.update(hyphen_joins)
    return Field(tokens, spans, words, words.union(pair_joins))


def phrase_in(raw: tuple[str, ...], doc: Field) -> bool:
    """Whether the words ``raw`` (folded, unstemmed) occur in order and adjacent in ``doc``.

    Either side may write two adjacent words joined: the phrase ``auto regressive model``
    matches ``autoregressive models``, and ``autoregressive model`` matches
    ``auto-regressive models`` or ``auto regressive models``.
    """
    tokens, spans, n = doc.tokens, doc.spans, len(raw)
    words = [stem(w) for w in raw]
    pairs = [join_key(raw[i], raw[i + 1]) for i in range(n - 1)]  # the phrase's own joined forms

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

    return any(extend(0, p) for p in range(len(tokens)))
