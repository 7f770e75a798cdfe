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
from itertools import chain
from dataclasses import dataclass, field
from datetime import date

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


@dataclass(frozen=True, slots=True)
class Entry:
    """One paper as listed in a dump.

    Title and abstract are one line each, with every run of whitespace made one space.
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


def _lines(data: bytes | str) -> tuple[list[str], bool]:
    """The lines of the text, as if decoded by decode() and split at "\n", "\r\n" and "\r";
    and whether the text is free of _ODD_SPACES, so that " " is the only whitespace in an ASCII line.
    """
    if isinstance(data, str):
        return _split_lines(data.removeprefix("\ufeff"))
    # What decode() would read as UTF-8 is decoded here, line by line; the rest, and errors, go through decode().
    utf8 = not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and b"\x00" not in data
    if utf8 and data and not data.isspace():
        body = data.removeprefix(codecs.BOM_UTF8)
        if b"\r" in body:
            body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        try:
            # Line by line gives the same text, since UTF-8 has no byte "\n" inside a character,
            # and is faster: an ASCII line decodes at memory speed, while one bullet anywhere
            # makes decoding the whole file at once take the slow, wide-string route.
            lines = [line.decode() for line in body.split(b"\n")]
        except UnicodeDecodeError:
            pass  # decode() raises, saying where in the file the bad byte is
        else:
            return lines, not any(c in body for c in _ODD_SPACE_BYTES)
    return _split_lines(decode(data))


def _split_lines(text: str) -> tuple[list[str], bool]:
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n"), not any(c in text for c in _ODD_SPACES)


def _paragraphs(lines: list[str]):
    """Yield (first line number, [stripped lines]) for each run of non-blank lines."""
    block: list[str] = []
    start = 0
    for number, raw in enumerate(lines, start=1):
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
    m = _DATE_LINE.fullmatch(line)
    return m is not None and m[1].lower() in MONTHS  # "Qwen 3" is a title, not a date


def parse_dump(data: bytes | str, reference: date) -> Dump:
    """Parse a dump. ``reference`` is the latest date the snapshot can have (e.g. the file's mtime).

    Raises DumpError with a one-line reason when the input is not a dump at all.
    """
    all_lines, plain = _lines(data)
    paragraphs = _paragraphs(all_lines)
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
    for start, lines in paragraphs:
        if title is None and entries and _is_metadata(lines[0]):
            entries[-1] = _with_metadata(entries[-1], lines, start, snapshot, warnings)
            continue
        joined = _collapse(lines, plain)
        if title is None:
            title, title_line = joined, start
        else:
            entries.append(Entry(title=title, abstract=joined, line=title_line))
            title = None
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


def _with_metadata(entry: Entry, lines: list[str], start: int, snapshot: date, warnings: list[str]) -> Entry:
    authors, published, upvotes = entry.authors_count, entry.published, entry.upvotes
    for offset, line in enumerate(lines):
        if line in _SEPARATORS:
            continue
        if m := _AUTHORS_LINE.fullmatch(line):
            authors = int(m[1])
        elif parsed := _parse_date(line, snapshot):
            published, upvotes = parsed
        else:
            warnings.append(f"line {start + offset}: unrecognised metadata {line[:60]!r}: ignored")
    return Entry(entry.title, entry.abstract, authors, published, upvotes, entry.line)
