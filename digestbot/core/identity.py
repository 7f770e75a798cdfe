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


def title_key(title: str) -> str:
    folded = unicodedata.normalize("NFKC", title).casefold()
    return _NOT_WORD.sub(" ", folded).strip() or folded.strip()  # a title of punctuation only keys as itself


def abstract_fingerprint(abstract: str) -> str:
    canonical = " ".join(abstract.casefold().split())
    return hashlib.blake2b(canonical.encode(), digest_size=16).hexdigest()
