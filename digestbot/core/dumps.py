"""Parse a plain-text snapshot of the Hugging Face "Daily Papers" listing.

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
then optionally a metadata paragraph. A title left without an abstract at the end of a
truncated file is dropped with a warning.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from itertools import chain
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

from digestbot.errors import DumpError

MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}

# "Mar 26", "Oct 16, 2023", "Feb 18 2" (upvotes), "Dec 12, 2024 1"
_DATE_LINE = re.compile(r"([A-Za-z]{3})[a-z]*\.? (\d{1,2})(?:, ?(\d{4}))?(?: (\d{1,7}))?")
_AUTHORS_LINE = re.compile(r"•\s*(\d{1,6})\s+authors?", re.IGNORECASE)
_SEPARATORS = frozenset({"·", "•", "-"})
_CHROME = frozenset({
    "new",
    "get trending papers in your email inbox!",
    "subscribe",
    "daily papers",
    "byak and the research community",
})
# How far into a file the snapshot date may appear before we decide it is not a dump.
_HEADER_LINES = 40


class Entry(NamedTuple):
    """One paper as listed in a dump.

    Title and abstract are one line each, with every run of whitespace made one space.
    A named tuple: immutable like a frozen dataclass, and made in a third of the time, which
    counts when a dump lists tens of thousands of papers.
    """

    title: str
    abstract: str
    authors_count: int | None = None
    published: date | None = None
    upvotes: int | None = None
    line: int = 0  # 1-based line of the title, for messages


@dataclass(frozen=True, slots=True)
class Dump:
    snapshot_date: date
    entries: list[Entry]
    warnings: list[str] = field(default_factory=list)


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


def _parse_date(line: str, reference: date) -> tuple[date, int | None] | None:
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
_ODD_SPACES = ("\t", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f")
_ODD_SPACE_BYTES = tuple(c.encode() for c in _ODD_SPACES)


# An empty line, where the text is first cut into pieces (see _paragraphs). A regular expression
# cuts there in half the time str.split and bytes.split take: it skips from one "\n" to the next.
_EMPTY_LINE = re.compile("\n\n")
_EMPTY_LINE_BYTES = re.compile(b"\n\n")


def _pieces(data: bytes | str) -> tuple[list[str], bool]:
    """The text, as if decoded by decode() with "\r\n" and "\r" made "\n", cut at every "\n\n";
    and whether the text is free of _ODD_SPACES, so that " " is the only whitespace in an ASCII line.
    """
    if isinstance(data, str):
        return _split_text(data.removeprefix("\ufeff"))
    # What decode() would read as UTF-8 is decoded here, piece by piece; the rest, and errors, go through decode().
    utf8 = not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and b"\x00" not in data
    if utf8 and data and not data.isspace():
        body = data.removeprefix(codecs.BOM_UTF8)
        if b"\r" in body:
            body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        try:
            # Piece by piece gives the same text, since UTF-8 has no byte "\n" inside a character,
            # and is faster: an ASCII piece decodes at memory speed, while one bullet anywhere
            # makes decoding the whole file at once take the slow, wide-string route.
            pieces = [piece.decode() for piece in _EMPTY_LINE_BYTES.split(body)]
        except UnicodeDecodeError:
            pass  # decode() raises, saying where in the file the bad byte is
        else:
            return pieces, not any(c in body for c in _ODD_SPACE_BYTES)
    return _split_text(decode(data))


def _split_text(text: str) -> tuple[list[str], bool]:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _EMPTY_LINE.split(text), not any(c in text for c in _ODD_SPACES)


def _paragraphs(pieces: list[str]) -> Iterator[tuple[int, list[str]]]:
    """Yield (first line number, [stripped lines]) for each run of non-blank lines of the text
    that ``pieces`` are cut from at every "\n\n".

    A paragraph never spans two pieces, as an empty line separates them. Most pieces are a
    single line, a title or an abstract, and are taken whole: going line by line through the
    whole text was the slowest part of parsing.
    """
    number = 1  # of the first line of the piece
    for piece in pieces:
        if "\n" not in piece:
            if line := piece.strip():
                yield number, [line]
            number += 2
        else:
            lines = piece.split("\n")
            yield from _paragraphs_of_lines(lines, number)
            number += len(lines) + 1


def _paragraphs_of_lines(lines: list[str], first_number: int) -> Iterator[tuple[int, list[str]]]:
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


def _is_metadata(line: str) -> bool:
    if line[0] in "•·" or line in _SEPARATORS:
        return True
    if not line[-1].isdecimal():  # a date line ends in a digit (\d); most titles, told apart here, do not
        return False
    m = _DATE_LINE.fullmatch(line)
    return m is not None and m[1].lower() in MONTHS  # "Qwen 3" is a title, not a date


def parse_dump(data: bytes | str, reference: date) -> Dump:
    """Parse a dump. ``reference`` is the latest date the snapshot can have (e.g. the file's mtime).

    Raises DumpError with a one-line reason when the input is not a dump at all.
    """
    pieces, plain = _pieces(data)
    paragraphs = _paragraphs(pieces)
    warnings: list[str] = []

    snapshot: date | None = None
    for start, lines in paragraphs:
        rest = []
        for offset, line in enumerate(lines):
            if snapshot is None and line.casefold() in _CHROME:
                continue
            if snapshot is None:
                parsed = _parse_date(line, reference)
                if parsed is None:
                    raise DumpError(
                        f"not a Daily Papers dump: line {start + offset} should be the snapshot date "
                        f"(like 'Mar 13'), found {line[:60]!r}"
                    )
                snapshot = parsed[0]
            else:
                rest.append(line)
        if snapshot is not None:
            if rest:  # the date shared its paragraph with the first title: unusual, but not fatal
                paragraphs = chain([(start + len(lines) - len(rest), rest)], paragraphs)
            break
        if start > _HEADER_LINES:
            break
    if snapshot is None:
        raise DumpError("not a Daily Papers dump: no snapshot date line (like 'Mar 13') near the top")

    entries: list[Entry] = []
    title: str | None = None
    title_line = 0
    paper: list | None = None  # the fields of the last paper, made an Entry once its metadata is read
    for start, lines in paragraphs:
        if title is None and paper is not None and _is_metadata(lines[0]):
            _read_metadata(paper, lines, start, snapshot, warnings)
            continue
        joined = _collapse(lines, plain)
        if title is None:
            title, title_line = joined, start
        else:
            if paper is not None:
                entries.append(Entry._make(paper))
            paper = [title, joined, None, None, None, title_line]
            title = None
    if paper is not None:
        entries.append(Entry._make(paper))
    if title is not None:
        warnings.append(f"line {title_line}: title without an abstract at the end (truncated file?): skipped")
    if not entries:
        raise DumpError("no papers found after the snapshot date")
    return Dump(snapshot_date=snapshot, entries=entries, warnings=warnings)


def _collapse(lines: list[str], plain: bool) -> str:
    """The paragraph as one line with every run of whitespace made one space:
    ``" ".join(" ".join(lines).split())``, without splitting into words when nothing would change.

    ``plain``: the text holds none of _ODD_SPACES.
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


def _read_metadata(paper: list, lines: list[str], start: int, snapshot: date, warnings: list[str]) -> None:
    """Set in ``paper``, the fields of an Entry, what a paragraph of metadata says."""
    for offset, line in enumerate(lines):
        if line in _SEPARATORS:
            continue
        if m := _AUTHORS_LINE.fullmatch(line):
            paper[_AUTHORS] = int(m[1])
        elif parsed := _parse_date(line, snapshot):
            paper[_PUBLISHED], paper[_UPVOTES] = parsed
        else:
            warnings.append(f"line {start + offset}: unrecognised metadata {line[:60]!r}: ignored")
