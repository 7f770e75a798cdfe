"""The diff of a dump against the stored papers: which of its papers are new, updated or unchanged.

Pure: the store's side comes in as values (``StoredPaper``), found by the caller. A dump is
diffed a chunk of entries at a time (``DumpDiff``), and what one chunk decided is carried to
the next, so that the file as a whole is diffed as if it were one chunk:

- a paper listed twice in one dump counts once: its first listing gives its title and abstract,
  later ones add their metadata (later metadata wins), in the same chunk or in a later one;
- a listed paper is the stored paper with its title key, else the oldest stored paper with its
  abstract fingerprint (see core/identity.py); two listings that find the same stored paper are
  that paper listed twice;
- metadata a dump omits is kept, never erased;
- the keys of a paper whose title (and abstract) are stored already are taken from the store
  rather than computed again: ingest, which alone writes papers, always stores the keys of the
  text it stores, and computing them was most of the work of re-ingesting a known paper.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

from digestbot.core.dump_format import Entry
from digestbot.core.identity import collapsed_abstract_fingerprint, title_key

# Stored papers held in memory for one file at most (see KnownPapers): about 2 KB each.
KNOWN_LIMIT = 100_000


class StoredPaper(NamedTuple):
    """What the diff needs of a stored paper. A named tuple: reading a field of a Row by name
    takes over ten times as long, and re-ingesting reads some ten fields of every stored paper."""

    id: int
    title: str
    title_key: str
    abstract_fp: str
    authors_count: int | None
    upvotes: int | None
    published: date | None
    abstract: str | None  # None for a paper held by KnownPapers without it (one this file inserted)
    arxiv_id: str | None = None
    authors: list[str] | None = None


@dataclass(slots=True)
class Candidate:
    """One distinct paper of a dump, with its keys and the stored paper it matched, if any."""

    entry: Entry
    key: str
    fingerprint: str
    stored: StoredPaper | None = None


class ChunkDiff(NamedTuple):
    """What a chunk of a dump changes in the store."""

    new: list[Candidate]  # papers to insert, in the dump's order
    updated: list[tuple[StoredPaper, dict]]  # a stored paper, and its new values by column (with its id)
    unchanged: list[int]  # ids of stored papers listed as they are stored
    relisted: list[dict]  # new metadata (with the id) of papers an earlier chunk of this dump wrote


def fold(entries: Iterable[Entry], stored_by_title: Mapping[str, StoredPaper]) -> list[Candidate]:
    """Entries folded by identity: a paper listed twice in one dump counts once (later metadata wins).

    ``stored_by_title``: stored papers (all or none) by title, whose keys need not be computed
    again; a paper with the title of a stored one has its title key, so that is its stored paper.
    """
    by_key: dict[str, Candidate] = {}
    by_fp: dict[str, Candidate] = {}
    by_arxiv: dict[str, Candidate] = {}
    out: list[Candidate] = []
    for entry in entries:
        same_title = stored_by_title.get(entry.title)
        key, fp = identity(entry, same_title)
        arxiv = entry.arxiv_id
        seen = (arxiv is not None and by_arxiv.get(arxiv)) or by_key.get(key) or by_fp.get(fp)
        if not seen:
            seen = Candidate(entry, key, fp, same_title)
            out.append(seen)
        else:
            seen.entry = _merge(seen.entry, entry)
        by_key[key] = by_fp[fp] = seen
        if arxiv is not None:
            by_arxiv[arxiv] = seen
    return out


def identity(entry: Entry, same_title: StoredPaper | None) -> tuple[str, str]:
    """The title key and abstract fingerprint of the entry; those of ``same_title``, a stored
    paper with the entry's title, where its text is the entry's (see the module's docstring)."""
    if same_title is None:
        # The parser has collapsed the abstract's whitespace already: no need to check it again.
        return title_key(entry.title), collapsed_abstract_fingerprint(entry.abstract)
    if entry.abstract == same_title.abstract:
        return same_title.title_key, same_title.abstract_fp
    return same_title.title_key, collapsed_abstract_fingerprint(entry.abstract)


def _merge(old: Entry, new: Entry) -> Entry:
    return Entry(
        title=old.title, abstract=old.abstract,
        authors_count=new.authors_count if new.authors_count is not None else old.authors_count,
        published=new.published if new.published is not None else old.published,
        upvotes=new.upvotes if new.upvotes is not None else old.upvotes,
        line=old.line,
        arxiv_id=old.arxiv_id or new.arxiv_id,
        authors=new.authors if new.authors is not None else old.authors,
    )


def oldest_by_fingerprint(papers: Iterable[StoredPaper]) -> dict[str, StoredPaper]:
    """The papers by abstract fingerprint; where several share one, the oldest (lowest id)."""
    by_fp: dict[str, StoredPaper] = {}
    for paper in papers:
        held = by_fp.get(paper.abstract_fp)
        if held is None or paper.id < held.id:
            by_fp[paper.abstract_fp] = paper
    return by_fp


def attach(candidates: Iterable[Candidate], by_key: Mapping[str, StoredPaper],
           by_fingerprint: Mapping[str, StoredPaper], by_arxiv: Mapping[str, StoredPaper] | None = None) -> None:
    """Give each candidate its stored paper: the one with its arXiv id, else the one with its title
    key, else the one with its abstract fingerprint (``by_fingerprint``: the oldest of each, see
    oldest_by_fingerprint). A paper first known without an id is so found by its text, and gains it."""
    for c in candidates:
        arxiv = c.entry.arxiv_id
        found = by_arxiv.get(arxiv) if by_arxiv and arxiv is not None else None
        if found is not None:
            # Found by its id: it keeps its stored title (and title key, which another stored paper
            # may hold under the new title); its abstract and metadata are updated.
            c.stored, c.key = found, found.title_key
            if c.entry.title != found.title:
                c.entry = c.entry._replace(title=found.title)
        else:
            c.stored = by_key.get(c.key) or by_fingerprint.get(c.fingerprint)


def unchanged(row: StoredPaper, entry: Entry, fingerprint: str) -> bool:
    """Whether merged_row(row, entry, fingerprint) equals what is stored, without building it."""
    return (
        entry.title == row.title and fingerprint == row.abstract_fp
        and (entry.authors_count is None or entry.authors_count == row.authors_count)
        and (entry.upvotes is None or entry.upvotes == row.upvotes)
        and (entry.published is None or entry.published == row.published)
        and (entry.arxiv_id is None or row.arxiv_id is not None)
        and (entry.authors is None or list(entry.authors) == row.authors)
    )


def merged_row(row: StoredPaper, entry: Entry, fingerprint: str) -> dict:
    """The stored paper updated with what the dump says; metadata a dump omits is kept, not erased."""
    merged = {
        "title": entry.title,
        "abstract_fp": fingerprint,
        "authors_count": entry.authors_count if entry.authors_count is not None else row.authors_count,
        "upvotes": entry.upvotes if entry.upvotes is not None else row.upvotes,
        "published": entry.published if entry.published is not None else row.published,
    }
    # What only the sources with ids give, written when they give it. An id is never changed once
    # known: a paper found by its title or fingerprint under another id keeps the first.
    if entry.arxiv_id is not None and row.arxiv_id is None:
        merged["arxiv_id"] = entry.arxiv_id
    if entry.authors is not None:
        merged["authors"] = list(entry.authors)
    return merged


class KnownPapers:
    """Every stored paper, read once for a file while the store is small and kept up to date with
    what the file's chunks write: by title, and by title key once asked for. The papers the file
    inserts are held without their abstract (needed only to spare computing the fingerprint of a
    paper listed again)."""

    def __init__(self, papers: Iterable[StoredPaper]) -> None:
        self.by_title = {paper.title: paper for paper in papers}
        self._by_id: dict[int, StoredPaper] | None = None
        self._by_key: dict[str, StoredPaper] | None = None
        self._by_arxiv: dict[str, StoredPaper] | None = None

    def __len__(self) -> int:
        return len(self.by_title)

    def by_key(self) -> dict[str, StoredPaper]:
        if self._by_key is None:
            self._by_key = {paper.title_key: paper for paper in self.by_title.values()}
        return self._by_key

    def by_arxiv(self) -> dict[str, StoredPaper]:
        if self._by_arxiv is None:
            self._by_arxiv = {paper.arxiv_id: paper for paper in self.by_title.values() if paper.arxiv_id}
        return self._by_arxiv

    def with_fingerprints(self, fingerprints: set[str]) -> Iterable[StoredPaper]:
        return (paper for paper in self.by_title.values() if paper.abstract_fp in fingerprints)

    def put(self, paper: StoredPaper) -> None:
        """A paper as it is now stored."""
        if self._by_id is None:  # made on the first write: a file of unchanged papers never needs it
            self._by_id = {held.id: held for held in self.by_title.values()}
        held = self._by_id.get(paper.id)
        if held is not None:
            if self.by_title.get(held.title) is held:
                del self.by_title[held.title]
            if self._by_key is not None and self._by_key.get(held.title_key) is held:
                del self._by_key[held.title_key]
        self._by_id[paper.id] = self.by_title[paper.title] = paper
        if self._by_key is not None:
            self._by_key[paper.title_key] = paper
        if self._by_arxiv is not None and paper.arxiv_id:
            self._by_arxiv[paper.arxiv_id] = paper


class Outcomes:
    """What a file has done so far to each paper it listed (NEW, UPDATED, UNCHANGED), by paper id:
    a paper found again in a later chunk is a paper listed twice in one dump. One byte per id
    (ids are dense), or a dict past an id no store of this size reaches."""

    NEW, UPDATED, UNCHANGED = 1, 2, 3
    _DENSE = 1 << 26

    def __init__(self) -> None:
        self._dense = bytearray()
        self._sparse: dict[int, int] = {}

    def __getitem__(self, paper_id: int) -> int:
        if paper_id < len(self._dense):
            return self._dense[paper_id]
        return self._sparse.get(paper_id, 0) if paper_id >= self._DENSE else 0

    def set(self, paper_ids: Iterable[int], outcome: int) -> None:
        dense = self._dense
        for paper_id in paper_ids:
            if paper_id >= self._DENSE:
                self._sparse[paper_id] = outcome
                continue
            if paper_id >= len(dense):
                dense.extend(bytes(max(paper_id + 1, 2 * len(dense)) - len(dense)))
            dense[paper_id] = outcome


def _one_per_paper(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates, those that found the same stored paper folded into the first of them: one
    paper listed twice (one listing found it by title key, the other by abstract fingerprint).
    Diffed apart, each would rewrite the paper, and leave it with one's abstract and the other's
    fingerprint."""
    first: dict[int, Candidate] = {}
    out = []
    for c in candidates:
        row = c.stored
        if row is not None:
            held = first.setdefault(row.id, c)
            if held is not c:
                held.entry = _merge(held.entry, c.entry)
                continue
        out.append(c)
    return out


# The columns of StoredPaper an update may change.
_CHANGING = ("title", "title_key", "abstract_fp", "authors_count", "upvotes", "published", "abstract", "arxiv_id",
             "authors")


class DumpDiff:
    """The diff of one dump, a chunk of entries at a time, and its counts so far.

    For each chunk: ``fold`` its entries into candidates; give those left without a stored
    paper theirs (``attach``: the caller looks them up in the store, unless this diff holds every
    stored paper, ``known``); ``compare`` them; store what it says; and tell the diff the ids of
    the papers inserted (``added``). ``known``: every stored paper (no more than ``limit``: beyond
    it the diff forgets them, and the caller looks the rest up), or None.
    """

    def __init__(self, known: Iterable[StoredPaper] | None = None, limit: int = KNOWN_LIMIT) -> None:
        self.known = KnownPapers(known) if known is not None else None
        self.limit = limit
        self.outcomes = Outcomes()
        self.new = self.updated = self.unchanged = 0

    def fold(self, entries: Iterable[Entry]) -> list[Candidate]:
        """The chunk's distinct papers with their keys, and, if this diff holds every stored paper,
        their stored papers. Those left without one are to be looked up (unless ``known``)."""
        known = self.known
        if known is None:
            return fold(entries, {})
        candidates = fold(entries, known.by_title)
        # A paper with an id is found by it first, even when its title is stored (under another id).
        with_ids = any(c.entry.arxiv_id for c in candidates)
        pending = [c for c in candidates if c.stored is None or c.entry.arxiv_id is not None]
        if pending:
            by_key = known.by_key()
            missing = {c.fingerprint for c in pending if c.key not in by_key}
            attach(pending, by_key, oldest_by_fingerprint(known.with_fingerprints(missing)) if missing else {},
                   known.by_arxiv() if with_ids else None)
        return candidates

    def compare(self, candidates: list[Candidate], now: datetime) -> ChunkDiff:
        """What the chunk changes, its stored papers attached. Counts the updated and unchanged
        papers; the new ones count once inserted (``added``)."""
        outcomes = self.outcomes
        new, updated, unchanged_ids, again = [], [], [], []
        for c in _one_per_paper(candidates):
            e, row = c.entry, c.stored
            if row is None:
                new.append(c)
            elif outcomes[row.id]:
                again.append(c)
            elif unchanged(row, e, c.fingerprint):
                unchanged_ids.append(row.id)
            else:
                merged = merged_row(row, e, c.fingerprint)
                updated.append((row, {"id": row.id, **merged, "title_key": c.key, "updated_at": now,
                                      **({"abstract": e.abstract} if c.fingerprint != row.abstract_fp else {})}))
        relisted = self._listed_again(again, now)
        outcomes.set((row.id for row, _ in updated), Outcomes.UPDATED)
        outcomes.set(unchanged_ids, Outcomes.UNCHANGED)
        self.updated += len(updated)
        self.unchanged += len(unchanged_ids)
        if self.known is not None:
            for row, values in updated:
                self.known.put(row._replace(**{name: values.get(name, getattr(row, name)) for name in _CHANGING}))
        return ChunkDiff(new, updated, unchanged_ids, relisted)

    def added(self, new: list[Candidate], ids: list[int]) -> None:
        """The papers ``compare`` found new are stored, with these ids (in their order)."""
        self.outcomes.set(ids, Outcomes.NEW)
        self.new += len(new)
        known = self.known
        if known is None:
            return
        for pid, c in zip(ids, new):
            e = c.entry
            known.put(StoredPaper(pid, e.title, c.key, c.fingerprint, e.authors_count, e.upvotes, e.published, None,
                                  e.arxiv_id, list(e.authors) if e.authors is not None else None))
        if len(known) > self.limit:
            self.known = None  # memory stays bounded: the caller looks the rest up

    def _listed_again(self, again: list[Candidate], now: datetime) -> list[dict]:
        """Papers an earlier chunk of this file listed already: their metadata is added, their title
        and abstract stay those of the first listing, and they are counted once."""
        outcomes, rows = self.outcomes, []
        for c in again:
            row, e = c.stored, c.entry
            merged = {
                "authors_count": e.authors_count if e.authors_count is not None else row.authors_count,
                "upvotes": e.upvotes if e.upvotes is not None else row.upvotes,
                "published": e.published if e.published is not None else row.published,
            }
            if e.arxiv_id is not None and row.arxiv_id is None:
                merged["arxiv_id"] = e.arxiv_id
            if e.authors is not None and list(e.authors) != row.authors:
                merged["authors"] = list(e.authors)
            if len(merged) == 3 and (merged["authors_count"], merged["upvotes"], merged["published"]) == (
                    row.authors_count, row.upvotes, row.published):
                continue
            outcome = outcomes[row.id]
            if outcome == Outcomes.UNCHANGED:  # unchanged with its first listing, not with both
                outcomes.set([row.id], Outcomes.UPDATED)
                self.unchanged -= 1
                self.updated += 1
            # a paper new in this file is new, not updated: as if inserted with all its metadata
            rows.append({"id": row.id, **merged, **({} if outcome == Outcomes.NEW else {"updated_at": now})})
            if self.known is not None:
                self.known.put(row._replace(**merged))
        return rows
