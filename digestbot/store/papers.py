"""The Papers repository: papers, their sightings and the dump files they came from.

Ingest is the hot path here, so its statements are Core statements built once, on the table
rather than through the ORM (no per-row bookkeeping, the same SQL), with "expanding" IN
parameters that take a whole chunk of values: cheaper than building ``column.in_(chunk)`` for
every chunk, which coerces each value into an SQL literal first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import NamedTuple

from sqlalchemy import bindparam, func, insert, select, update

from digestbot.core.diff import Candidate, StoredPaper
from digestbot.store.models import DumpFile, Paper, PaperSighting
from digestbot.store.repository import Repository

CHUNK = 500  # bound on IN (...) lists: well under SQLite's and PostgreSQL's parameter limits
# Reading every stored paper, abstract included, takes half the time of looking up as many by
# key in IN (...) lists, and spares computing the keys of the papers stored already (see
# core/diff.py; figures in BENCHMARKS.md). So it is done, once for a file, while the store holds
# at most this many papers per entry the file is expected to hold (see all_known).
LOAD_ALL_RATIO = 2
# A run of consecutive paper ids at least this long is touched with one range update rather
# than in an IN (...) list: a statement of its own costs about as much as 7 ids in a list.
MIN_RUN = 8
# dump_files.size is a 32-bit integer on PostgreSQL: the size of a refused giant is recorded as this.
MAX_RECORDED_SIZE = 2**31 - 1


class PaperText(NamedTuple):
    """What matching reads of a paper (the fields of services.matching.NewPaper)."""

    id: int
    title: str
    abstract: str
    first_seen: datetime
    authors: list[str] | None


_KNOWN_COLUMNS = (  # those of StoredPaper
    Paper.id, Paper.title, Paper.title_key, Paper.abstract_fp,
    Paper.authors_count, Paper.upvotes, Paper.published, Paper.abstract, Paper.arxiv_id, Paper.authors,
)
_KNOWN_BY_KEY = select(*_KNOWN_COLUMNS).where(Paper.title_key.in_(bindparam("keys", expanding=True)))
_KNOWN_BY_ARXIV = select(*_KNOWN_COLUMNS).where(Paper.arxiv_id.in_(bindparam("ids", expanding=True)))
_KNOWN_BY_FP = select(*_KNOWN_COLUMNS).where(Paper.abstract_fp.in_(bindparam("fps", expanding=True)))
_ALL_KNOWN = select(*_KNOWN_COLUMNS)
_PAPER_BEYOND = select(Paper.id).limit(1).offset(bindparam("count"))  # reads at most :count + 1 rows
_IDS_BY_KEY = select(Paper.title_key, Paper.id).where(Paper.title_key.in_(bindparam("keys", expanding=True)))
_PAPERS = Paper.__table__
_SIGHTINGS = PaperSighting.__table__
_TOUCH = (update(_SIGHTINGS).where(_SIGHTINGS.c.paper_id.in_(bindparam("ids", expanding=True)))
          .values(last_seen=bindparam("now")))
_TOUCH_RANGE = (update(_SIGHTINGS).where(_SIGHTINGS.c.paper_id.between(bindparam("first"), bindparam("last")))
                .values(last_seen=bindparam("now")))
_NEWEST_FIRST = (Paper.first_seen.desc(), Paper.id.desc())  # then by id: the order within a dump


class Papers(Repository):
    """SQL for papers, their sightings and the dump files they came from."""

    # ---- what ingest's diff needs of the stored papers

    def all_known(self, entries: int, most: int) -> list[StoredPaper] | None:
        """Every stored paper, when reading them all is the cheaper way to find those of a dump of
        about ``entries`` entries: while the store holds at most LOAD_ALL_RATIO papers per entry, and
        at most ``most``. None otherwise: look them up by key (known_by_keys)."""
        if self.session.scalar(_PAPER_BEYOND, {"count": min(LOAD_ALL_RATIO * entries, most)}) is not None:
            return None
        return self._stored(_ALL_KNOWN)

    def known_by_keys(self, keys: list[str]) -> dict[str, StoredPaper]:
        """The stored papers with these title keys, by key."""
        return {paper.title_key: paper for paper in self._stored_in(_KNOWN_BY_KEY, "keys", keys)}

    def known_by_arxiv_ids(self, arxiv_ids: list[str]) -> dict[str, StoredPaper]:
        """The stored papers with these arXiv ids, by id."""
        return {paper.arxiv_id: paper for paper in self._stored_in(_KNOWN_BY_ARXIV, "ids", arxiv_ids)}

    def known_by_fingerprints(self, fingerprints: list[str]) -> list[StoredPaper]:
        """The stored papers with these abstract fingerprints (several may share one)."""
        return self._stored_in(_KNOWN_BY_FP, "fps", fingerprints)

    def _stored_in(self, statement, name: str, values: list) -> list[StoredPaper]:
        """The papers ``statement`` selects with its expanding parameter ``name`` set to ``values``."""
        return [paper for chunk in _chunks(values) for paper in self._stored(statement, {name: chunk})]

    def _stored(self, statement, parameters: dict | None = None) -> list[StoredPaper]:
        # On the connection, as Core: through the session, the ORM would process every row.
        return list(map(StoredPaper._make, self.session.connection().execute(statement, parameters).all()))

    # ---- ingest's writes

    def add(self, new: Sequence[Candidate], now: datetime, dump_id: int) -> list[int]:
        """Insert these papers, first seen (and last seen) ``now`` in dump file ``dump_id``; returns
        their ids, in their order.

        One executemany, then the ids looked up by title key, which is unique. Not ORM INSERT ...
        RETURNING in parameter order: that groups consecutive rows by which of their values are
        None, runs one statement per row on SQLite, and splices each group's ids onto all the
        earlier ones: quadratic for papers that mix rows with and without metadata (BENCHMARKS.md).
        """
        if not new:
            return []
        self.session.execute(insert(_PAPERS), [{
            "title": c.entry.title, "title_key": c.key, "abstract": c.entry.abstract, "abstract_fp": c.fingerprint,
            "authors_count": c.entry.authors_count, "upvotes": c.entry.upvotes, "published": c.entry.published,
            "first_seen": now, "first_dump_id": dump_id, "arxiv_id": c.entry.arxiv_id,
            "authors": list(c.entry.authors) if c.entry.authors is not None else None,
        } for c in new])
        keys = [c.key for c in new]
        found: dict[str, int] = {}
        for chunk in _chunks(keys):
            found.update(self.session.execute(_IDS_BY_KEY, {"keys": chunk}).all())
        ids = [found[key] for key in keys]
        self.session.execute(insert(_SIGHTINGS), [{"paper_id": pid, "last_seen": now} for pid in ids])
        return ids

    def update(self, rows: list[dict]) -> None:
        """Write these values (each with the paper's id) over the stored ones. Rows that set
        different columns are different statements: each shape is sent as one batch."""
        shapes: dict[frozenset, list[dict]] = {}
        for row in rows:
            shapes.setdefault(frozenset(row), []).append(row)
        for batch in shapes.values():
            self.session.execute(update(Paper), batch)

    def touch(self, paper_ids: list[int], now: datetime) -> None:
        """Set when these papers were last seen: runs of consecutive ids (the papers of one earlier
        dump, usually) by range, the others in IN (...) lists."""
        ranges, singles = _runs(sorted(set(paper_ids)))  # a stored paper can match two papers of the dump
        if ranges:
            self.session.execute(_TOUCH_RANGE, [{"first": first, "last": last, "now": now} for first, last in ranges])
        for chunk in _chunks(singles):
            self.session.execute(_TOUCH, {"ids": chunk, "now": now})

    # ---- dump files

    def dump_file(self, sha256: str) -> DumpFile | None:
        """The record of the file with this SHA-256 (or key of a file not read), if there is one."""
        return self.session.scalar(select(DumpFile).where(DumpFile.sha256 == sha256))

    def ingested_path(self, sha256: str) -> str | None:
        """The path of the file with this content, if it was ingested."""
        return self.session.scalar(
            select(DumpFile.path).where(DumpFile.sha256 == sha256, DumpFile.status == "ingested"))

    def record_ingested(self, sha256: str, path: str, size: int, now: datetime) -> DumpFile:
        """The record of a file being ingested: new, or the record of its failure taken over.
        Flushed, for the id its papers refer to; what the file held comes with record_outcome."""
        record = self.dump_file(sha256) or DumpFile(sha256=sha256)
        record.path, record.size, record.status, record.error, record.processed_at = (
            path, min(size, MAX_RECORDED_SIZE), "ingested", None, now)
        self.session.add(record)
        self.session.flush()
        return record

    def record_outcome(self, record: DumpFile, *, snapshot_date: date | None, entries: int, warnings: list[str],
                       new: int, updated: int, unchanged: int) -> None:
        """What an ingested file held and did."""
        record.snapshot_date, record.entries, record.warnings = snapshot_date, entries, "\n".join(warnings) or None
        record.new, record.updated, record.unchanged = new, updated, unchanged

    def record_failed(self, key: str, path: str, size: int, reason: str, now: datetime) -> None:
        """A file that failed, by the SHA-256 of its content or, if it was not read, the key of its
        path, size and mtime: once per key, the latest failure told."""
        row = self.dump_file(key)
        if row is None:
            row = DumpFile(sha256=key)
            self.session.add(row)
        row.path, row.size, row.status, row.error, row.processed_at = (
            path, min(size, MAX_RECORDED_SIZE), "failed", reason, now)

    # ---- reading papers

    def get(self, paper_id: int) -> Paper | None:
        return self.session.get(Paper, paper_id)

    def newest(self, limit: int) -> list[Paper]:
        """Newest first: by when digestbot first saw them, then by id (the order within a dump)."""
        return list(self.session.scalars(select(Paper).order_by(*_NEWEST_FIRST).limit(limit)))

    def since(self, when: datetime) -> list[PaperText]:
        """The papers first seen at or after ``when``, as matching reads them."""
        rows = self.session.execute(
            select(Paper.id, Paper.title, Paper.abstract, Paper.first_seen, Paper.authors).where(Paper.first_seen >= when))
        return list(map(PaperText._make, rows))

    def newest_since(self, when: datetime, limit: int) -> list[Paper]:
        """The newest ``limit`` papers first seen at or after ``when``, newest first."""
        return list(self.session.scalars(
            select(Paper).where(Paper.first_seen >= when).order_by(*_NEWEST_FIRST).limit(limit)))

    def window(self, when: datetime) -> tuple[int, int | None, int | None]:
        """How many papers were first seen at or after ``when``, and their highest and lowest ids:
        these change whenever the papers of the window do."""
        return tuple(self.session.execute(
            select(func.count(), func.max(Paper.id), func.min(Paper.id)).where(Paper.first_seen >= when)).one())

    def after(self, paper_id: int, limit: int) -> list[Paper]:
        """The first ``limit`` papers with an id above ``paper_id``, by id: a store read in chunks."""
        return list(self.session.scalars(select(Paper).where(Paper.id > paper_id).order_by(Paper.id).limit(limit)))

    # ---- what `status` counts

    def count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(Paper)) or 0

    def newest_first_seen(self) -> datetime | None:
        return self.session.scalar(select(func.max(Paper.first_seen)))

    def files_by_status(self) -> dict[str, int]:
        """How many dump files are recorded with each status (ingested, failed)."""
        return dict(self.session.execute(select(DumpFile.status, func.count()).group_by(DumpFile.status)).all())

    def last_ingested_file(self) -> DumpFile | None:
        return self.session.scalar(select(DumpFile).where(DumpFile.status == "ingested")
                                   .order_by(DumpFile.processed_at.desc(), DumpFile.id.desc()).limit(1))

    def failed_files(self) -> list[DumpFile]:
        """Newest first."""
        return list(self.session.scalars(
            select(DumpFile).where(DumpFile.status == "failed").order_by(DumpFile.processed_at.desc())))


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _runs(ids: list[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """Sorted, distinct ids as (first, last) of each run of at least MIN_RUN consecutive ids,
    and the ids in shorter runs."""
    ranges, singles = [], []
    start = 0
    for end in range(1, len(ids) + 1):
        if end == len(ids) or ids[end] != ids[end - 1] + 1:
            if end - start >= MIN_RUN:
                ranges.append((ids[start], ids[end - 1]))
            else:
                singles.extend(ids[start:end])
            start = end
    return ranges, singles
