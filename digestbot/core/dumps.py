"""Read a Daily Papers dump (its format: digestbot.core.dump_format) into entries.

A dump is read in blocks (``DumpReader``), so that the memory a file takes is bounded by the
block and ``DumpLimits``, never by the file: a title or an abstract longer than its limit is
cut at a word boundary with a warning naming its line, and so is a paragraph too long to be
either. A title left without an abstract at the end of a truncated file is dropped with a
warning. Messages quote at most a short, printable excerpt of the file (``excerpt``).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from itertools import chain

from digestbot.core.dump_format import (
    CHROME, HEADER_LINES, ODD_SPACES, Entry, collapse, excerpt, is_metadata, paragraphs_of_lines, parse_date,
    read_metadata, shorten,
)
from digestbot.errors import DumpError

# Warnings kept per dump; the rest are counted. A broken file could otherwise hold one per line.
MAX_WARNINGS = 100


@dataclass(frozen=True, slots=True)
class DumpLimits:
    """How much of a dump is taken (DIGESTBOT_MAX_TITLE_CHARS, _ABSTRACT_CHARS, _DUMP_BYTES).

    A longer title or abstract is cut rather than refused: the paper is still worth an alert,
    and one runaway paragraph should not lose the other papers of the file. A larger file is
    refused without being read.
    """

    title_chars: int = 1_000
    abstract_chars: int = 20_000
    dump_bytes: int = 200_000_000

    @property
    def paragraph_bytes(self) -> int:
        """The most of one paragraph kept in memory: enough for the longest title or abstract
        allowed (four bytes a character at most in UTF-8) and generous room for whitespace."""
        return 4 * max(self.title_chars, self.abstract_chars) + 65_536


@dataclass(frozen=True, slots=True)
class Dump:
    snapshot_date: date
    entries: list[Entry]
    warnings: list[str] = field(default_factory=list)


_ODD_SPACE_BYTES = tuple(c.encode() for c in ODD_SPACES)


# An empty line, where the text is cut into pieces (see DumpReader._segment). A regular expression
# cuts there faster than bytes.split (see BENCHMARKS.md, "Ingest"): it skips from one "\n" to the next.
_EMPTY_LINE_BYTES = re.compile(b"\n\n")
# A line of ASCII whitespace only, which ends a paragraph as an empty line does: where an over-long
# run of text without an empty line may still be cut (see DumpReader._overlong).
_BLANK_LINE_BYTES = re.compile(rb"\n[ \t\x0b\x0c\x1c-\x1f]*\n")
_SPACES = re.compile(rb"[ \t\x0b\x0c\x1c-\x1f]*")
_SPACES_TO_LINE_END = re.compile(rb"[ \t\x0b\x0c\x1c-\x1f]*\n")


def _lf(data: bytes) -> bytes:
    """``data`` with "\r\n" and "\r" made "\n"."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in data else data


def _raw_tail(raw: bytes, tail: int) -> int:
    """How many bytes at the end of ``raw`` make the last ``tail`` bytes of ``_lf(raw)``, for a tail
    that does not start with "\n" (so it cannot start inside a "\r\n")."""
    length = tail
    while (longer := tail + raw.count(b"\r\n", len(raw) - length)) != length:
        length = longer  # each "\r\n" in the tail is one byte more of raw text
    return length


def _whole_characters(data: bytes) -> bytes:
    """``data`` without the incomplete UTF-8 character a cut may have left at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # the lead byte of the last character: is the character whole?
            return data if back >= (2 if byte < 0xE0 else 3 if byte < 0xF0 else 4) else data[:-back]
    return data  # not UTF-8 there: decoding will say so


class DumpReader:
    """Parses a dump fed in blocks of bytes, in memory bounded by the block and ``limits``.

    ``feed`` returns the entries completed so far, ``close`` the last ones once the input has
    ended; ``snapshot_date``, ``entries`` (how many so far) and ``warnings`` hold what was learnt.
    DumpError is raised as soon as the input shows it is not a dump.

    Paragraphs never span an empty line, so what was fed is parsed up to its last empty line and
    the rest kept for the next block: usually the start of one paragraph. A paragraph longer than
    ``limits.paragraph_bytes`` is cut to that, with a warning, and the rest of it skipped.
    """

    def __init__(self, reference: date, limits: DumpLimits = DumpLimits()) -> None:
        self.reference = reference  # the latest date the snapshot can have (e.g. the file's mtime)
        self.limits = limits
        self.snapshot_date: date | None = None
        self.entries = 0
        self._warnings: list[str] = []
        self._more_warnings = 0
        self._out: list[Entry] = []
        self._start = b""  # the first bytes, until there are enough to tell the encoding
        self._started = False
        self._utf16: codecs.IncrementalDecoder | None = None
        self._fed = 0  # bytes of UTF-16 input fed so far (for messages)
        self._blank = True  # only whitespace so far: an empty file
        self._carry = b""  # input not parsed yet, from the start of a line after an empty line
        self._offset = 0  # of _carry in the input, in bytes (for messages)
        self._line = 1  # of the first line of _carry
        self._skipping = False  # the rest of an over-long paragraph is being dropped
        self._line_blank = False  # while skipping: the line being dropped is blank so far
        # The entry being read: a title waiting for its abstract, and the fields of the last paper,
        # made an Entry once its metadata (which may follow) has been read.
        self._title: str | None = None
        self._title_line = 0
        self._paper: list | None = None

    @property
    def warnings(self) -> list[str]:
        if not self._more_warnings:
            return list(self._warnings)
        return [*self._warnings, f"... and {self._more_warnings:,} more warning(s)"]

    def _warn(self, message: str) -> None:
        if len(self._warnings) < MAX_WARNINGS:
            self._warnings.append(message)
        else:
            self._more_warnings += 1

    # ---- input ----

    def feed(self, data: bytes) -> list[Entry]:
        """Parse another block of the input; returns the entries it completed."""
        if not self._started:
            self._start += data
            if len(self._start) < 4:  # a BOM may still be arriving
                return []
            data, self._start = self._start, b""
            self._begin(data)
        if data:
            self._input(data, final=False)
        return self._taken()

    def close(self) -> list[Entry]:
        """The input has ended: the last entries. Raises DumpError if it held no papers."""
        if not self._started:
            self._begin(self._start)
        self._input(self._start, final=True)
        return self._finish()

    def read(self, data: bytes) -> list[Entry]:
        """Parse a whole input: ``feed(data)`` then ``close()``, without copying ``data``."""
        self._begin(data)
        self._input(data, final=True)
        return self._finish()

    def _begin(self, data: bytes) -> None:
        self._started = True
        if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            self._utf16 = codecs.getincrementaldecoder("utf-16")()
            self._blank = False

    def _input(self, data: bytes, final: bool) -> None:
        if self._utf16 is not None:
            # Rare: decoded, then parsed as the UTF-8 text it is (where a NUL is binary too).
            pending = len(self._utf16.getstate()[0])
            try:
                text = self._utf16.decode(data, final=final)
            except UnicodeDecodeError as exc:
                raise DumpError(f"broken UTF-16 text at byte {self._fed - pending + exc.start}") from None
            self._fed += len(data)
            data = text.encode()
        elif self._blank and data and not data.isspace():
            self._blank = False
        if b"\x00" in data:
            raise DumpError("binary file (NUL bytes), not a text dump")
        if not self._offset and not self._carry and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
            self._offset = len(codecs.BOM_UTF8)
        self._take(self._carry + data if self._carry else data, final)

    def _finish(self) -> list[Entry]:
        if self._blank:
            raise DumpError("empty file")
        if self.snapshot_date is None:
            raise DumpError("not a Daily Papers dump: no snapshot date line (like 'Mar 13') near the top")
        if self._paper is not None:
            self._out.append(Entry._make(self._paper))
            self._paper = None
        if self._title is not None:
            self._warn(f"line {self._title_line}: title without an abstract at the end (truncated file?): skipped")
            self._title = None
        if not self.entries and not self._out:
            raise DumpError("no papers found after the snapshot date")
        return self._taken()

    def _taken(self) -> list[Entry]:
        out, self._out = self._out, []
        self.entries += len(out)
        return out

    def _take(self, buffer: bytes, final: bool) -> None:
        """Parse ``buffer`` (_carry and what followed it) up to its last empty line, or whole if
        ``final``; keep the rest in _carry."""
        held = b""
        if buffer.endswith(b"\r") and not final:
            buffer, held = buffer[:-1], b"\r"  # may be the first half of a "\r\n"
        text = _lf(buffer)
        if self._skipping:
            buffer = text = self._skip(text)  # from here on, offsets in messages may miss a "\r" or two
        end = len(text) if final else text.rfind(b"\n\n") + 2
        if end >= 2 or final:
            raw = len(buffer) if end == len(text) else len(buffer) - _raw_tail(buffer, len(text) - end)
            self._segment(text if end == len(text) else text[:end], buffer, raw)
            buffer = buffer[raw:] if raw < len(buffer) else b""
        if len(buffer) > self.limits.paragraph_bytes and not final:
            buffer = self._overlong(buffer)
        self._carry = buffer + held if held else buffer

    def _segment(self, text: bytes, raw: bytes, raw_length: int) -> None:
        """Parse ``text``: the first ``raw_length`` bytes of ``raw`` with line breaks made "\n",
        ending at an empty line (or where the input ends)."""
        pieces = _EMPTY_LINE_BYTES.split(text)
        try:
            # Piece by piece: UTF-8 has no byte "\n" inside a character, and an ASCII piece decodes
            # at memory speed, while one bullet in a large text makes decoding it whole take the
            # slow, wide-string route.
            pieces = [piece.decode() for piece in pieces]
        except UnicodeDecodeError:
            raise self._not_utf8(raw[:raw_length]) from None
        plain = not any(c in text for c in _ODD_SPACE_BYTES)
        paragraphs = self._paragraphs(pieces)
        if self.snapshot_date is None:
            paragraphs = self._header(paragraphs)
        if paragraphs is not None:
            self._assemble(paragraphs, plain)
        self._offset += raw_length

    def _not_utf8(self, raw: bytes) -> DumpError:
        try:
            raw.decode()
        except UnicodeDecodeError as exc:
            bad, offset = raw[exc.start:exc.start + 1].hex(), self._offset + exc.start
        else:  # only after an over-long paragraph, whose cut may leave raw and text apart
            bad, offset = "??", self._offset
        return DumpError(f"not UTF-8 text: byte 0x{bad} at offset {offset} (save the dump as UTF-8)")

    def _overlong(self, buffer: bytes) -> bytes:
        """``buffer`` holds no empty line and is longer than a paragraph may be. Parse it up to its
        last line of spaces, if it has one; else parse the start of its paragraph and drop the
        rest of it. Returns what is left to keep."""
        text = _lf(buffer)
        last = None
        for last in _BLANK_LINE_BYTES.finditer(text):
            pass
        if last is not None:
            raw = len(buffer) - _raw_tail(buffer, len(text) - last.end())
            self._segment(text[:last.end()], buffer, raw)
            return buffer[raw:]
        limit, line = self.limits.paragraph_bytes, self._line
        kept = _whole_characters(text[:limit])
        self._warn(f"line {line}: paragraph longer than {limit:,} bytes: only its start is read")
        self._segment(kept + b"\n\n", kept, len(kept))
        self._line = line + kept.count(b"\n")
        self._skipping, self._line_blank = True, False
        return self._skip(text[len(kept):])

    def _skip(self, text: bytes) -> bytes:
        """Drop from ``text`` (line breaks made "\n") the rest of an over-long paragraph: up to the
        next line that is empty or spaces only. Returns what follows, b"" if that has not come."""
        if self._line_blank and _SPACES_TO_LINE_END.match(text):
            self._skipping = False  # the line dropped before this text ends blank
            return text
        found = _BLANK_LINE_BYTES.search(text)
        if found is not None:
            self._skipping = False
            dropped = found.start() + 1
        else:
            dropped = len(text)
            last = text.rfind(b"\n")
            # Whether the line being dropped is blank so far: its text, since the last line break, is spaces.
            self._line_blank = (_SPACES.fullmatch(text, last + 1) is not None if last >= 0
                                else self._line_blank and _SPACES.fullmatch(text) is not None)
        self._line += text.count(b"\n", 0, dropped)
        self._offset += dropped
        return text[dropped:]

    # ---- paragraphs ----

    def _paragraphs(self, pieces: list[str]) -> Iterator[tuple[int, list[str]]]:
        """Yield (first line number, [stripped lines]) for each run of non-blank lines of the text
        that ``pieces`` are cut from at every "\n\n"; then advance _line past the text.

        Most pieces are a single line, a title or an abstract, and are taken whole: going line by
        line through the whole text was the slowest part of parsing.
        """
        number = self._line  # of the first line of the piece
        for piece in pieces:
            if "\n" not in piece:
                if line := piece.strip():
                    yield number, [line]
                number += 2
            else:
                lines = piece.split("\n")
                yield from paragraphs_of_lines(lines, number)
                number += len(lines) + 1
        self._line = number - 2  # each piece but the last is followed by "\n\n"

    def _header(self, paragraphs: Iterator[tuple[int, list[str]]]) -> Iterable[tuple[int, list[str]]] | None:
        """Read the page's header up to the snapshot date; the paragraphs after it, or None if
        they ran out first."""
        for start, lines in paragraphs:
            rest = []
            for offset, line in enumerate(lines):
                if self.snapshot_date is None and line.casefold() in CHROME:
                    continue
                if self.snapshot_date is None:
                    parsed = parse_date(line, self.reference)
                    if parsed is None:
                        raise DumpError(
                            f"not a Daily Papers dump: line {start + offset} should be the snapshot date "
                            f"(like 'Mar 13'), found {excerpt(line)}"
                        )
                    self.snapshot_date = parsed[0]
                else:
                    rest.append(line)
            if self.snapshot_date is not None:
                # The date may share its paragraph with the first title: unusual, but not fatal.
                return chain([(start + len(lines) - len(rest), rest)], paragraphs) if rest else paragraphs
            if start > HEADER_LINES:
                raise DumpError("not a Daily Papers dump: no snapshot date line (like 'Mar 13') near the top")
        return None

    def _assemble(self, paragraphs: Iterable[tuple[int, list[str]]], plain: bool) -> None:
        """Make entries of the paragraphs after the header. ``plain``: their text holds none of ODD_SPACES."""
        out, snapshot, warn = self._out, self.snapshot_date, self._warn
        title, title_line, paper = self._title, self._title_line, self._paper
        max_title, max_abstract = self.limits.title_chars, self.limits.abstract_chars
        for start, lines in paragraphs:
            if title is None and paper is not None and is_metadata(lines[0]):
                read_metadata(paper, lines, start, snapshot, warn)
                continue
            joined = collapse(lines, plain)
            if title is None:
                if len(joined) > max_title:
                    joined = self._cut(joined, max_title, "title", start)
                title, title_line = joined, start
            else:
                if len(joined) > max_abstract:
                    joined = self._cut(joined, max_abstract, "abstract", start)
                if paper is not None:
                    out.append(Entry._make(paper))
                paper = [title, joined, None, None, None, title_line, None, None]
                title = None
        self._title, self._title_line, self._paper = title, title_line, paper

    def _cut(self, text: str, limit: int, what: str, line: int) -> str:
        self._warn(f"line {line}: {what} of {len(text):,} characters cut to {limit:,}")
        return shorten(text, limit)


def parse_dump(data: bytes | str, reference: date, limits: DumpLimits = DumpLimits()) -> Dump:
    """Parse a whole dump. ``reference`` is the latest date the snapshot can have (e.g. the file's mtime).

    Raises DumpError with a one-line reason when the input is not a dump at all.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")  # a lone surrogate is then not UTF-8: refused
    reader = DumpReader(reference, limits)
    entries = reader.read(data)
    return Dump(snapshot_date=reader.snapshot_date, entries=entries, warnings=reader.warnings)
