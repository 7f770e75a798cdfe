"""Read the Hugging Face daily-papers API answer (``GET /api/daily_papers?date=...``) into entries.

The answer is a JSON array of items; each item's ``paper`` holds ``id`` (the arXiv id, no
version), ``title``, ``summary``, ``authors`` (objects with a ``name``), ``upvotes`` and
``publishedAt``; the item's own ``publishedAt`` is when it was put on the daily list (the
snapshot date). Extra fields (githubRepo, ai_keywords, ...) are ignored.

The array is read one item at a time (``json.JSONDecoder.raw_decode`` at a position of the text
decoded so far), so memory holds the block being read and one item, never the whole answer;
an item larger than ``DumpLimits.paragraph_bytes`` is refused as broken.
"""

from __future__ import annotations

import codecs
import json
import re
from datetime import date

from digestbot.core.dump_format import Entry, excerpt
from digestbot.core.dumps import DumpLimits
from digestbot.core.sources import MAX_AUTHORS, EntryMaker, Warnings, arxiv_id, clean_names
from digestbot.errors import DumpError

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_START, _ITEM, _AFTER, _DONE = range(4)


def _date(value: object) -> date | None:
    """The date of an ISO timestamp like ``2025-03-13T14:02:11.000Z``; None if it is not one."""
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


class HFDailyReader:
    """The HF daily-papers answer, fed in blocks (DumpReader's interface)."""

    def __init__(self, reference: date, limits: DumpLimits = DumpLimits()) -> None:
        self.reference = reference
        self.limits = limits
        self.snapshot_date: date | None = None
        self.entries = 0
        self._warn = Warnings()
        self._make = EntryMaker(limits, self._warn)
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._text = ""
        self._state = _START
        self._items = 0
        self._out: list[Entry] = []

    @property
    def warnings(self) -> list[str]:
        return self._warn.all()

    def feed(self, data: bytes) -> list[Entry]:
        try:
            self._text += self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise DumpError(f"not UTF-8 JSON: byte 0x{exc.object[exc.start:exc.start + 1].hex()}") from None
        self._scan(final=False)
        return self._taken()

    def close(self) -> list[Entry]:
        try:
            self._text += self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DumpError("not UTF-8 JSON: it ends inside a character") from None
        self._scan(final=True)
        if self._state != _DONE:
            raise DumpError(f"truncated JSON: the array ends after {self._items:,} item(s) without its ']'")
        if not self._items:
            raise DumpError("an empty daily-papers answer (no papers that day)")
        if self.snapshot_date is None:
            self.snapshot_date = self.reference
        return self._taken()

    def _taken(self) -> list[Entry]:
        out, self._out = self._out, []
        self.entries += len(out)
        return out

    def _scan(self, final: bool) -> None:
        text, pos, state = self._text, 0, self._state
        end = len(text)
        while True:
            pos = _WHITESPACE.match(text, pos).end()
            if pos == end:
                break
            char = text[pos]
            if state == _START:
                if char == "{":
                    raise DumpError("a JSON object, not the daily-papers array (an API error answer?): "
                                    f"{excerpt(text[pos:pos + 80])}")
                if char != "[":
                    raise DumpError(f"not JSON: starts with {excerpt(text[pos:pos + 20])}")
                pos, state = pos + 1, _ITEM
                if (after := _WHITESPACE.match(text, pos).end()) < end and text[after] == "]":
                    pos, state = after + 1, _DONE
            elif state == _ITEM:
                try:
                    item, after = _DECODER.raw_decode(text, pos)
                except json.JSONDecodeError as exc:
                    if final:
                        ends = exc.pos >= end - 1 or exc.msg.startswith("Unterminated")
                        what = "truncated JSON: the file ends inside" if ends else "broken JSON in"
                        raise DumpError(f"{what} item {self._items + 1:,} ({exc.msg})") from None
                    if end - pos > self.limits.paragraph_bytes:
                        raise DumpError(f"item {self._items + 1:,} larger than {self.limits.paragraph_bytes:,} "
                                        "bytes: not a daily-papers answer") from None
                    break  # the item goes on in the next block
                if after == end and not final and not isinstance(item, (dict, list, str)):
                    break  # a number or a word may go on in the next block
                self._items += 1
                self._item(item)
                pos, state = after, _AFTER
            elif state == _AFTER:
                if char == ",":
                    pos, state = pos + 1, _ITEM
                elif char == "]":
                    pos, state = pos + 1, _DONE
                else:
                    raise DumpError(f"broken JSON after item {self._items:,}: {excerpt(text[pos:pos + 20])}")
            else:
                raise DumpError(f"broken JSON: more after the array's end: {excerpt(text[pos:pos + 20])}")
        self._text, self._state = text[pos:], state

    def _item(self, item: object) -> None:
        number = self._items
        if not isinstance(item, dict) or not isinstance(item.get("paper"), dict):
            raise DumpError(f"item {number:,} is not a daily-papers item (no 'paper' object): "
                            "not the Hugging Face daily-papers answer")
        paper = item["paper"]
        listed = _date(item.get("publishedAt"))
        if listed is not None and (self.snapshot_date is None or listed > self.snapshot_date):
            self.snapshot_date = listed
        title, abstract = paper.get("title", item.get("title")), paper.get("summary", item.get("summary"))
        if not isinstance(title, str) or not isinstance(abstract, str):
            self._warn(f"item {number:,}: no title or summary: skipped")
            return
        found_id = paper.get("id")
        arxiv = arxiv_id(found_id) if isinstance(found_id, str) else None
        if arxiv is None:
            self._warn(f"item {number:,}: no arXiv id ({excerpt(str(found_id), 30)}): identified by title")
        people = paper.get("authors")
        names = None
        count = None
        if isinstance(people, list):
            count = len(people)
            names = clean_names([a["name"] for a in people[:MAX_AUTHORS]
                                 if isinstance(a, dict) and isinstance(a.get("name"), str)])
        upvotes = paper.get("upvotes")
        if not isinstance(upvotes, int) or isinstance(upvotes, bool) or upvotes < 0:
            upvotes = None
        entry = self._make.make(number, title, abstract, arxiv=arxiv, authors=names, authors_count=count,
                                published=_date(paper.get("publishedAt")), upvotes=upvotes)
        if entry is not None:
            self._out.append(entry)
