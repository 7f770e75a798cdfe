"""How a paper is recognised across dumps, since papers carry no id.

Two keys, either of which identifies a paper:
- the title key: NFKC, case-folded, every run of punctuation and whitespace collapsed to
  one space, so ``IA-RED^2: ...`` and ``IA-RED$^2$: ...`` are one paper;
- the abstract fingerprint: a hash of the case-folded, whitespace-collapsed abstract, so a
  re-cased or lightly edited title with an unchanged abstract is still the same paper.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NOT_WORD = re.compile(r"[\W_]+")
# For ASCII, [\W_] is exactly "not a letter or digit": this table turns those bytes into spaces.
_ASCII_NOT_WORD_TO_SPACE = bytes(b if chr(b).isalnum() else 0x20 for b in range(128)) + b" " * 128


# The key is stored in a unique index, and a PostgreSQL B-tree entry holds at most 2,704 bytes.
# A longer key (only a broken or hostile title makes one: 1,000 CJK characters take 3,000 bytes,
# and NFKC turns some single characters into eighteen) keeps its start and ends with a hash of
# the whole, so that it stays as distinct as the title: 500 characters are at most 2,000 bytes.
MAX_KEY_CHARS = 500


def title_key(title: str) -> str:
    folded = unicodedata.normalize("NFKC", title).casefold()
    if folded.isascii():
        # The same key as the regular expression below gives, a few times faster, for the usual ASCII title.
        key = b" ".join(folded.encode().translate(_ASCII_NOT_WORD_TO_SPACE).split()).decode()
    else:
        key = _NOT_WORD.sub(" ", folded).strip()
    key = key or folded.strip()  # a title of punctuation only keys as itself
    if len(key) > MAX_KEY_CHARS:
        key = f"{key[:MAX_KEY_CHARS - 33]} {hashlib.blake2b(key.encode(), digest_size=16).hexdigest()}"
    return key


def abstract_fingerprint(abstract: str) -> str:
    canonical = abstract.casefold()
    # Splitting into words and joining them again only changes text with whitespace other than
    # single inner spaces: " " is the only whitespace character isprintable() accepts.
    if "  " in canonical or not canonical.isprintable() or canonical[:1] == " " or canonical[-1:] == " ":
        canonical = " ".join(canonical.split())
    return _digest(canonical)


def collapsed_abstract_fingerprint(abstract: str) -> str:
    """abstract_fingerprint() of an abstract whose whitespace is already collapsed - single spaces
    between words, none at the ends - as every abstract parse_dump() returns is.

    Skips checking the whitespace again, a third of the work: case folding neither makes nor
    removes whitespace, so the folded abstract is collapsed too.
    """
    return _digest(abstract.casefold())


def _digest(canonical: str) -> str:
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()
