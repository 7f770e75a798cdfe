"""Read an arXiv Atom feed into entries: the RSS feed's (``rss.arxiv.org/atom/cs.CL``) or the API's
(``export.arxiv.org/api/query``).

- RSS feed: entry ``id`` is ``oai:arXiv.org:2508.13426v1``; the summary starts
  ``arXiv:2508.13426v1 Announce Type: new`` then ``Abstract: ...``; all authors are in one
  ``dc:creator``, comma-separated. A bad category gives a feed titled "Feed error for query".
- API: ``id`` is ``http://arxiv.org/abs/1512.08756v2``; one ``<author><name>`` per author.

Parsed with the standard library's expat parser (C), fed in blocks through a target that keeps
only the entry being read: memory holds a block and one entry (each text at most
``DumpLimits.paragraph_bytes``), whatever the feed's size. A document type declaration is refused
before parsing, so no entity can be declared (no entity expansion, no external entity): what is
left of XML is elements and text. The document is read as UTF-8 whatever it declares.
"""

from __future__ import annotations

import re
from datetime import date
from xml.etree.ElementTree import ParseError, XMLParser

from digestbot.core.dump_format import Entry, excerpt
from digestbot.core.dumps import DumpLimits
from digestbot.core.sources import EntryMaker, Warnings, arxiv_id, clean_names
from digestbot.errors import DumpError

ATOM = "{http://www.w3.org/2005/Atom}"
_FEED, _ENTRY, _TITLE, _SUMMARY, _ID, _PUBLISHED, _UPDATED, _AUTHOR, _NAME = (
    ATOM + name for name in ("feed", "entry", "title", "summary", "id", "published", "updated", "author", "name"))
_CREATOR = "{http://purl.org/dc/elements/1.1/}creator"
_FORBIDDEN = (b"<!DOCTYPE", b"<!ENTITY")
_KEEP = max(len(f) for f in _FORBIDDEN) - 1  # bytes kept from a block's end to find a marker across blocks
# "arXiv:2508.13426v1 Announce Type: new \nAbstract: ..." at the start of an RSS feed's summary.
_ANNOUNCE = re.compile(r"\s*arXiv:\S+\s+Announce Type:\s*\S+\s*(?:Abstract:\s*)?")
_AND = re.compile(r",?\s+and\s+")


def _date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        return None


def split_creators(text: str) -> list[str]:
    """The names in an RSS feed's ``dc:creator``: comma-separated, maybe with a last ``and``."""
    return [name for part in text.split(",") for name in _AND.split(part)]


class _Target:
    """Receives expat's events: the feed's title and date, and each entry as a dict once it ends."""

    def __init__(self, text_limit: int) -> None:
        self.depth = 0
        self.text: list[str] = []
        self.size = 0
        self.limit = text_limit
        self.root: str | None = None
        self.feed_title = ""
        self.feed_updated = ""
        self.entry: dict | None = None
        self.in_author = False
        self.done: list[dict] = []

    def start(self, tag: str, attrib: dict) -> None:
        self.depth += 1
        self.text, self.size = [], 0
        if self.depth == 1:
            self.root = tag
            if tag != _FEED:
                raise DumpError(f"XML, but not an Atom feed (its root element is {excerpt(tag, 40)})")
        elif self.depth == 2 and tag == _ENTRY:
            self.entry = {"authors": [], "creators": []}
        elif self.depth == 3 and tag == _AUTHOR and self.entry is not None:
            self.in_author = True

    def data(self, text: str) -> None:
        if self.size < self.limit:  # a longer text is cut: the entry maker warns and shortens
            self.text.append(text)
            self.size += len(text)

    def end(self, tag: str) -> None:
        text = "".join(self.text) if self.text else ""
        self.text, self.size = [], 0
        depth, entry = self.depth, self.entry
        self.depth -= 1
        if entry is not None:
            if depth == 2:
                self.done.append(entry)
                self.entry = None
            elif depth == 3:
                if tag == _AUTHOR:
                    self.in_author = False
                elif tag == _CREATOR:
                    entry["creators"].append(text)
                elif tag in (_ID, _TITLE, _SUMMARY, _PUBLISHED, _UPDATED):
                    entry[tag] = text
            elif depth == 4 and tag == _NAME and self.in_author:
                entry["authors"].append(text)
        elif depth == 2:
            if tag == _TITLE:
                self.feed_title = text
            elif tag == _UPDATED:
                self.feed_updated = text

    def close(self) -> None:
        return None


class AtomReader:
    """An arXiv Atom feed, fed in blocks (DumpReader's interface)."""

    def __init__(self, reference: date, limits: DumpLimits = DumpLimits()) -> None:
        self.reference = reference
        self.limits = limits
        self.snapshot_date: date | None = None
        self.entries = 0
        self._warn = Warnings()
        self._make = EntryMaker(limits, self._warn)
        self._target = _Target(limits.paragraph_bytes)
        self._parser = XMLParser(target=self._target, encoding="utf-8")
        self._tail = b""
        self._items = 0
        self._checked_title = False

    @property
    def warnings(self) -> list[str]:
        return self._warn.all()

    def feed(self, data: bytes) -> list[Entry]:
        window = self._tail + data[:64] if self._tail else b""
        if any(marker in data or marker in window for marker in _FORBIDDEN):
            raise DumpError("XML with a document type declaration (<!DOCTYPE or <!ENTITY): refused, "
                            "a feed has none")
        self._tail = data[-_KEEP:]
        try:
            self._parser.feed(data)
        except ParseError as exc:
            raise DumpError(f"broken XML: {exc}") from None
        return self._taken()

    def close(self) -> list[Entry]:
        try:
            self._parser.close()
        except ParseError as exc:
            raise DumpError(f"broken XML (truncated?): {exc}") from None
        target = self._target
        if target.root is None:
            raise DumpError("XML without any element: not an Atom feed")
        out = self._taken()
        if not self.entries:
            self._check_title()
            raise DumpError("an Atom feed without entries (no papers)")
        return out

    def _check_title(self) -> None:
        if not self._checked_title and "feed error" in self._target.feed_title.casefold():
            raise DumpError(f"arXiv answered with an error feed: {excerpt(self._target.feed_title)}")
        self._checked_title = True

    def _taken(self) -> list[Entry]:
        target = self._target
        if self.snapshot_date is None and target.feed_updated:
            self.snapshot_date = _date(target.feed_updated)
        if not target.done:
            return []
        self._check_title()
        if self.snapshot_date is None:
            self.snapshot_date = self.reference  # the feed's <updated> comes first, when there is one
        out = []
        for raw in target.done:
            self._items += 1
            entry = self._entry(raw, self._items)
            if entry is not None:
                out.append(entry)
        target.done = []
        self.entries += len(out)
        return out

    def _entry(self, raw: dict, number: int) -> Entry | None:
        found = arxiv_id(raw.get(_ID, ""))
        if found is None:
            self._warn(f"entry {number:,}: no arXiv id ({excerpt(raw.get(_ID, ''), 40)}): identified by title")
        abstract = raw.get(_SUMMARY, "")
        if abstract.lstrip().startswith("arXiv:"):
            abstract = _ANNOUNCE.sub("", abstract, count=1)
        names = raw["authors"] or [name for text in raw["creators"] for name in split_creators(text)]
        authors = clean_names(names) if names else None
        # The API's <published> is the first version's date; the RSS feed's is the announcement's,
        # which other sources would contradict: left unknown.
        rss = raw.get(_ID, "").lstrip().startswith("oai:")
        published = None if rss else _date(raw.get(_PUBLISHED, "")) or _date(raw.get(_UPDATED, ""))
        return self._make.make(number, raw.get(_TITLE, ""), abstract, arxiv=found, authors=authors,
                               authors_count=len(authors) if authors else None, published=published, upvotes=None)
