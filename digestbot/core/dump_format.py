"""The plain-text snapshot of the Hugging Face "Daily Papers" listing: what its lines mean.

The format, as saved from the page::

    new
    Get trending papers in your email inbox!
    Subscribe
    Daily Papers                      (sometimes)
    byAK and the research community
    Mar 13                            <- snapshot date, no year

    <title>

    <abstract>

      • 7 authors                     <- optional metadata block
    ·
    Oct 16, 2023 12                   <- published date, optional year, optional upvotes

Paragraphs (runs of non-blank lines) are the unit: a title paragraph, an abstract paragraph,
then optionally a metadata paragraph. This module holds the pieces of that format: the page's
header lines, dates, metadata paragraphs, paragraphs and whitespace, and the ``Entry`` a paper
becomes. Reading a file (in blocks, within limits) is digestbot.core.dumps.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from datetime import date
from typing import NamedTuple

from digestbot.errors import DumpError

MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}

# "Mar 26", "Oct 16, 2023", "Feb 18 2" (upvotes), "Dec 12, 2024 1"
_DATE_LINE = re.compile(r"([A-Za-z]{3})[a-z]*\.? (\d{1,2})(?:, ?(\d{4}))?(?: (\d{1,7}))?")
_AUTHORS_LINE = re.compile(r"•\s*(\d{1,6})\s+authors?", re.IGNORECASE)
_SEPARATORS = frozenset({"·", "•", "-"})
CHROME = frozenset({
    "new",
    "get trending papers in your email inbox!",
    "subscribe",
    "daily papers",
    "byak and the research community",
})
# How far into a file the snapshot date may appear before we decide it is not a dump.
HEADER_LINES = 40


def excerpt(text: str, limit: int = 60) -> str:
    """A quotation of untrusted text for a message: at most ``limit`` characters, printable only.

    Messages about a file reach `digestbot status` and the admin's mailbox: they must never carry
    more than a glimpse of what the file holds, nor control characters.
    """
    if len(text) > limit:
        text = text[:limit - 1] + "…"
    if not text.isprintable():
        text = "".join(c if c.isprintable() else "?" for c in text)
    return repr(text)


def shorten(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters: cut at the last space that keeps at least half of
    it (else mid-word), with "…" at the end."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 1]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


class Entry(NamedTuple):
    """One paper as listed in a dump.

    Title and abstract are one line each, with every run of whitespace made one space.
    A named tuple: immutable like a frozen dataclass, and much cheaper to make (see
    BENCHMARKS.md, "Ingest"), which counts when a dump lists tens of thousands of papers.
    """

    title: str
    abstract: str
    authors_count: int | None = None
    published: date | None = None
    upvotes: int | None = None
    line: int = 0  # 1-based line of the title, for messages (the item's number in a JSON or Atom source)
    arxiv_id: str | None = None  # without its version (2412.01234), from the sources that give one
    authors: tuple[str, ...] | None = None  # names, from the sources that give them (None: unknown)


def decode(data: bytes) -> str:
    """Bytes to text: UTF-8 (with or without BOM), or UTF-16 when it says so with a BOM.

    Raises DumpError for empty, binary or non-UTF-8 input, saying what was found.
    """
    if not data or data.isspace():  # not data.strip(), which would copy the whole file
        raise DumpError("empty file")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DumpError(f"broken UTF-16 text at byte {exc.start}") from None
    if b"\x00" in data:
        raise DumpError("binary file (NUL bytes), not a text dump")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = data[exc.start:exc.start + 1].hex()
        raise DumpError(f"not UTF-8 text: byte 0x{bad} at offset {exc.start} (save the dump as UTF-8)") from None


def infer_year(month: int, day: int, not_after: date) -> date:
    """The date with this month and day closest before (or on) ``not_after``."""
    for year in range(not_after.year, not_after.year - 9, -1):  # 8 years always holds a Feb 29
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if candidate <= not_after:
            return candidate
    raise DumpError(f"impossible date: month {month}, day {day}")


def parse_date(line: str, reference: date) -> tuple[date, int | None] | None:
    """(date, upvotes) for a date line, or None if the line is not one."""
    m = _DATE_LINE.fullmatch(line)
    if not m:
        return None
    month = MONTHS.get(m[1].lower())
    if month is None:
        return None
    day = int(m[2])
    try:
        when = date(int(m[3]), month, day) if m[3] else infer_year(month, day, reference)
    except (ValueError, DumpError):
        return None
    return when, (int(m[4]) if m[4] else None)


# The ASCII whitespace besides " " that a line can hold (it cannot hold "\n" or "\r").
ODD_SPACES = ("\t", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")


def paragraphs_of_lines(lines: list[str], first_number: int) -> Iterator[tuple[int, list[str]]]:
    """_paragraphs() of these lines, the first of which has line number ``first_number``."""
    block: list[str] = []
    start = 0
    for number, raw in enumerate(lines, start=first_number):
        line = raw.strip()
        if line:
            if not block:
                start = number
            block.append(line)
        elif block:
            yield start, block
            block = []
    if block:
        yield start, block


def is_metadata(line: str) -> bool:
    if line[0] in "•·" or line in _SEPARATORS:
        return True
    if not line[-1].isdecimal():  # a date line ends in a digit (\d); most titles, told apart here, do not
        return False
    m = _DATE_LINE.fullmatch(line)
    return m is not None and m[1].lower() in MONTHS  # "Qwen 3" is a title, not a date


def collapse(lines: list[str], plain: bool) -> str:
    """The paragraph as one line with every run of whitespace made one space:
    ``" ".join(" ".join(lines).split())``, without splitting into words when nothing would change.

    ``plain``: the text holds none of ODD_SPACES.
    """
    joined = lines[0] if len(lines) == 1 else " ".join(lines)
    # The lines are stripped, so if the only whitespace left is single spaces the text is already
    # collapsed. Whether " " is the only whitespace: in an ASCII paragraph of a plain text, yes
    # (isascii() is free); else isprintable() says, as " " is the only whitespace it accepts
    # (other non-printable characters take the slow path too, which does no harm).
    if "  " not in joined and ((plain and joined.isascii()) or joined.isprintable()):
        return joined
    return " ".join(joined.split())


_AUTHORS, _PUBLISHED, _UPVOTES = map(Entry._fields.index, ("authors_count", "published", "upvotes"))


def read_metadata(paper: list, lines: list[str], start: int, snapshot: date, warn: Callable[[str], None]) -> None:
    """Set in ``paper``, the fields of an Entry, what a paragraph of metadata says."""
    for offset, line in enumerate(lines):
        if line in _SEPARATORS:
            continue
        if m := _AUTHORS_LINE.fullmatch(line):
            paper[_AUTHORS] = int(m[1])
        elif parsed := parse_date(line, snapshot):
            paper[_PUBLISHED], paper[_UPVOTES] = parsed
        else:
            warn(f"line {start + offset}: unrecognised metadata {excerpt(line)}: ignored")
