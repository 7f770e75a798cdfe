"""The formats a dump file may have, told apart by content (never by name), and what they share.

- the plain-text snapshot of the Daily Papers page (core/dumps.py);
- the Hugging Face daily-papers API answer, a JSON array (core/hf_daily.py);
- an arXiv Atom feed: the RSS feed's or the API's (core/arxiv_atom.py).

Each reader takes its input in blocks (``feed``, then ``close``) and returns ``Entry`` values, so
everything after parsing is shared; each holds in memory one block and one item at most.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from digestbot.core.dump_format import Entry, shorten
from digestbot.core.dumps import Dump, DumpLimits, DumpReader
from digestbot.errors import DumpError

# An arXiv id: new style (2412.01234, 0704.0001) or old style (hep-th/9901001, math.GT/0309136),
# with an optional version, which identity drops.
_ARXIV_ID = re.compile(r"(\d{4}\.\d{4,5}|[a-z][a-z-]*(?:\.[A-Z]{2})?/\d{7})(?:v\d+)?")
_SPACES = re.compile(r"\s+")
MAX_AUTHORS = 2_000  # names kept of one paper (a collaboration paper may list a thousand)
MAX_NAME_CHARS = 200


class SourceReader(Protocol):
    """What ingest needs of a reader: DumpReader's interface."""

    snapshot_date: date | None
    entries: int

    @property
    def warnings(self) -> list[str]: ...

    def feed(self, data: bytes) -> list[Entry]: ...

    def close(self) -> list[Entry]: ...


def arxiv_id(text: str) -> str | None:
    """The arXiv id in ``text`` (an id, ``oai:arXiv.org:ID``, an abs URL), without its version; None if none."""
    text = text.strip()
    for prefix in ("oai:arXiv.org:", "arXiv:", "arxiv:"):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    else:
        at = text.find("arxiv.org/abs/")
        if at >= 0:
            text = text[at + len("arxiv.org/abs/"):]
    found = _ARXIV_ID.fullmatch(text)
    return found[1] if found else None


def one_line(text: str) -> str:
    """Every run of whitespace made one space, none at the ends (as the text reader gives titles)."""
    return " ".join(text.split()) if not text.isprintable() or "  " in text or text[:1] == " " or text[-1:] == " " \
        else text


def clean_names(names: list[str]) -> tuple[str, ...]:
    """Author names as one line each, empty ones dropped, at most MAX_AUTHORS of MAX_NAME_CHARS."""
    out = []
    for name in names:
        name = one_line(name)
        if name:
            out.append(shorten(name, MAX_NAME_CHARS))
            if len(out) == MAX_AUTHORS:
                break
    return tuple(out)


@dataclass
class EntryMaker:
    """Makes entries of a source's papers within the limits, warning as the text reader does."""

    limits: DumpLimits
    warn: object  # Callable[[str], None]

    def make(self, number: int, title: str, abstract: str, *, arxiv: str | None, authors: tuple[str, ...] | None,
             authors_count: int | None, published: date | None, upvotes: int | None) -> Entry | None:
        title, abstract = one_line(title), one_line(abstract)
        if not title or not abstract:
            self.warn(f"item {number}: no {'title' if not title else 'abstract'}: skipped")
            return None
        if len(title) > self.limits.title_chars:
            self.warn(f"item {number}: title of {len(title):,} characters cut to {self.limits.title_chars:,}")
            title = shorten(title, self.limits.title_chars)
        if len(abstract) > self.limits.abstract_chars:
            self.warn(f"item {number}: abstract of {len(abstract):,} characters cut to {self.limits.abstract_chars:,}")
            abstract = shorten(abstract, self.limits.abstract_chars)
        return Entry(title, abstract, authors_count, published, upvotes, number, arxiv, authors)


def collapse_spaces(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def sniff(head: bytes) -> str:
    """The format of a file from its first bytes: ``json`` (the HF answer, or a JSON object that is
    not one), ``atom`` (XML) or ``text``."""
    if head.startswith(codecs.BOM_UTF8):
        head = head[len(codecs.BOM_UTF8):]
    first = head.lstrip()[:1]
    if first in (b"[", b"{"):
        return "json"
    if first == b"<":
        return "atom"
    return "text"


def reader_for(head: bytes, reference: date, limits: DumpLimits = DumpLimits()) -> SourceReader:
    """The reader for a file that starts with ``head`` (its first few hundred bytes at least)."""
    kind = sniff(head)
    if kind == "json":
        from digestbot.core.hf_daily import HFDailyReader

        return HFDailyReader(reference, limits)
    if kind == "atom":
        from digestbot.core.arxiv_atom import AtomReader

        return AtomReader(reference, limits)
    return DumpReader(reference, limits)


def parse_source(data: bytes, reference: date, limits: DumpLimits = DumpLimits()) -> Dump:
    """Parse a whole file of any format. Raises DumpError with a one-line reason."""
    reader = reader_for(data[:4096], reference, limits)
    entries = reader.feed(data) + reader.close()
    if reader.snapshot_date is None:
        raise DumpError("no papers found")
    return Dump(snapshot_date=reader.snapshot_date, entries=entries, warnings=reader.warnings)


class Warnings:
    """Warnings kept (at most ``most``) and counted past that, as DumpReader does."""

    def __init__(self, most: int = 100) -> None:
        self.most, self.kept, self.more = most, [], 0

    def __call__(self, message: str) -> None:
        if len(self.kept) < self.most:
            self.kept.append(message)
        else:
            self.more += 1

    def all(self) -> list[str]:
        return self.kept + ([f"... and {self.more:,} more warning(s)"] if self.more else [])
