"""Ingest dump files: read, parse, diff against the stored papers, record. One transaction per file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from digestbot.core.dumps import Dump, Entry, parse_dump
from digestbot.core.identity import collapsed_abstract_fingerprint, title_key
from digestbot.core.matcher import gc_paused
from digestbot.errors import DumpError
from digestbot.services.matching import NewPaper, SubscriptionMatcher, matcher_for
from digestbot.store.models import DumpFile, Paper, PaperSighting

CHUNK = 500  # bound on IN (...) lists: well under SQLite's and PostgreSQL's parameter limits


@dataclass
class FileResult:
    path: str
    status: str  # ingested | skipped | deferred | failed
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    matches: int = 0
    new_paper_ids: list[int] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "path": self.path, "status": self.status, "new": self.new, "updated": self.updated,
            "unchanged": self.unchanged, "matches": self.matches, "error": self.error,
        }


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)

    @property
    def new(self) -> int:
        return sum(f.new for f in self.files)

    @property
    def updated(self) -> int:
        return sum(f.updated for f in self.files)

    @property
    def unchanged(self) -> int:
        return sum(f.unchanged for f in self.files)

    @property
    def matches(self) -> int:
        return sum(f.matches for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def new_paper_ids(self) -> list[int]:
        return [pid for f in self.files for pid in f.new_paper_ids]

    def as_json(self) -> dict:
        return {
            "new": self.new, "updated": self.updated, "unchanged": self.unchanged, "matches": self.matches,
            "files": [f.as_json() for f in self.files],
        }


def expand_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Files as given; folders as every regular, non-hidden file inside, sorted by name."""
    for path in paths:
        if path.is_dir():
            yield from sorted(
                (p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")),
                key=lambda p: p.name,
            )
        else:
            yield path


def ingest_paths(
    engine: Engine,
    paths: Iterable[Path],
    *,
    now: datetime,
    settle_seconds: float,
    on_file: Callable[[FileResult], None] | None = None,
    match: bool = True,
) -> IngestReport:
    """Ingest every file under ``paths``; a failing file is recorded and never stops the others.

    With ``match``, the new papers of each file are matched against the active subscriptions
    in the same transaction as the file itself.
    """
    report = IngestReport()
    for path in expand_paths(paths):
        result = ingest_file(engine, path, now=now, settle_seconds=settle_seconds, match=match)
        report.files.append(result)
        if on_file is not None:
            on_file(result)
    return report


def ingest_file(
    engine: Engine, path: Path, *, now: datetime, settle_seconds: float, match: bool = True
) -> FileResult:
    shown = str(path)
    try:
        before = path.stat()
        if now.timestamp() - before.st_mtime < settle_seconds:
            return FileResult(shown, "deferred", error="modified in the last few seconds: still being written?")
        data = path.read_bytes()
        after = path.stat()
    except OSError as exc:
        return FileResult(shown, "failed", error=f"cannot read: {exc.strerror or exc}")
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or len(data) != after.st_size:
        return FileResult(shown, "deferred", error="changed while being read: still being written?")

    sha = hashlib.sha256(data).hexdigest()
    with Session(engine) as session:
        known = session.scalar(select(DumpFile).where(DumpFile.sha256 == sha))
        if known is not None and known.status == "ingested":
            return FileResult(shown, "skipped", error=f"same content as {known.path}, already ingested")

    reference = min(datetime.fromtimestamp(after.st_mtime, UTC).date(), now.date())
    # Parsing and diffing a large dump make hundreds of thousands of objects that stay alive
    # until the end: see gc_paused (a quarter of the time of re-ingesting 50,000 papers).
    with gc_paused():
        return _parse_and_store(engine, shown, sha, data, reference, now, match)


def _parse_and_store(
    engine: Engine, shown: str, sha: str, data: bytes, reference: date, now: datetime, match: bool
) -> FileResult:
    try:
        dump = parse_dump(data, reference=reference)
    except DumpError as exc:
        _record_failure(engine, shown, sha, len(data), str(exc), now)
        return FileResult(shown, "failed", error=str(exc))

    try:
        with Session(engine) as session, session.begin():
            matcher = matcher_for(engine) if match else None
            result = _store_dump(session, shown, sha, len(data), dump, now, matcher)
    except IntegrityError as exc:
        with Session(engine) as session:
            winner = session.scalar(select(DumpFile.path).where(DumpFile.sha256 == sha, DumpFile.status == "ingested"))
        if winner is not None:  # another process ingested the same content at the same moment
            return FileResult(shown, "skipped", error=f"same content as {winner}, ingested concurrently")
        reason = f"database error: {str(exc.orig).strip().splitlines()[0]}"
        _record_failure(engine, shown, sha, len(data), reason, now)
        return FileResult(shown, "failed", error=reason)
    except SQLAlchemyError as exc:
        reason = f"database error: {exc.__class__.__name__}: {str(exc.orig if hasattr(exc, 'orig') else exc)}"
        reason = reason.splitlines()[0]
        _record_failure(engine, shown, sha, len(data), reason, now)
        return FileResult(shown, "failed", error=reason)
    return result


def _record_failure(engine: Engine, path: str, sha: str, size: int, reason: str, now: datetime) -> None:
    with Session(engine) as session, session.begin():
        row = session.scalar(select(DumpFile).where(DumpFile.sha256 == sha))
        if row is None:
            row = DumpFile(sha256=sha)
            session.add(row)
        row.path, row.size, row.status, row.error, row.processed_at = path, size, "failed", reason, now


class _StoredPaper(NamedTuple):
    """What the diff needs of a stored paper. A named tuple: reading a field of a Row by name
    takes over ten times as long, and re-ingesting reads some ten fields of every stored paper."""

    id: int
    title: str
    title_key: str
    abstract_fp: str
    authors_count: int | None
    upvotes: int | None
    published: date | None
    abstract: str


@dataclass(slots=True)
class _Candidate:
    """One distinct paper of a dump, with its keys and the stored paper it matched, if any."""

    entry: Entry
    key: str
    fingerprint: str
    stored: _StoredPaper | None = None


_KNOWN_COLUMNS = (  # those of _StoredPaper
    Paper.id, Paper.title, Paper.title_key, Paper.abstract_fp,
    Paper.authors_count, Paper.upvotes, Paper.published, Paper.abstract,
)
# Built once, with "expanding" IN parameters that take a whole chunk: cheaper than building
# column.in_(chunk) for every chunk, which coerces each value into an SQL literal first.
_KNOWN_BY_KEY = select(*_KNOWN_COLUMNS).where(Paper.title_key.in_(bindparam("keys", expanding=True)))
_KNOWN_BY_FP = select(*_KNOWN_COLUMNS).where(Paper.abstract_fp.in_(bindparam("fps", expanding=True)))
_ALL_KNOWN = select(*_KNOWN_COLUMNS)
_PAPER_BEYOND = select(Paper.id).limit(1).offset(bindparam("count"))  # reads at most :count + 1 rows
_IDS_BY_KEY = select(Paper.title_key, Paper.id).where(Paper.title_key.in_(bindparam("keys", expanding=True)))
_PAPERS = Paper.__table__  # Core statements on the table: no ORM bookkeeping, the same SQL
_SIGHTINGS = PaperSighting.__table__
_TOUCH = (update(_SIGHTINGS).where(_SIGHTINGS.c.paper_id.in_(bindparam("ids", expanding=True)))
          .values(last_seen=bindparam("now")))
_TOUCH_RANGE = (update(_SIGHTINGS).where(_SIGHTINGS.c.paper_id.between(bindparam("first"), bindparam("last")))
                .values(last_seen=bindparam("now")))
# Reading every stored paper, abstract included, takes half the time of looking up as many by
# key in IN (...) lists (SQLite, 50,000 papers: 0.2 s against 0.47 s), and spares computing the
# keys of the papers stored already (see _identity). So it is done while the store holds at
# most this many papers per entry of the dump.
LOAD_ALL_RATIO = 2
# A run of consecutive paper ids at least this long is touched with one range update rather
# than in an IN (...) list: a statement of its own costs about as much as 7 ids in a list.
MIN_RUN = 8


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _all_stored_papers(session: Session, entries: int) -> list[_StoredPaper] | None:
    """Every stored paper if the store holds at most LOAD_ALL_RATIO papers per entry of the dump;
    else None: the dump's papers are then looked up by their keys."""
    if session.scalar(_PAPER_BEYOND, {"count": LOAD_ALL_RATIO * entries}) is not None:
        return None
    return _stored_papers(session, _ALL_KNOWN)


def _stored_papers(session: Session, statement, parameters: dict | None = None) -> list[_StoredPaper]:
    # On the connection, as Core: through the session, the ORM would process every row.
    return list(map(_StoredPaper._make, session.connection().execute(statement, parameters).all()))


def _distinct(entries: list[Entry], stored_by_title: dict[str, _StoredPaper]) -> list[_Candidate]:
    """Entries folded by identity: a paper listed twice in one dump counts once (later metadata wins).

    ``stored_by_title``: stored papers (all or none) by title, whose keys need not be computed
    again; a paper with the title of a stored one has its title key, so that is its stored paper.
    """
    by_key: dict[str, _Candidate] = {}
    by_fp: dict[str, _Candidate] = {}
    out: list[_Candidate] = []
    for entry in entries:
        same_title = stored_by_title.get(entry.title)
        key, fp = _identity(entry, same_title)
        seen = by_key.get(key) or by_fp.get(fp)
        if seen is None:
            seen = _Candidate(entry, key, fp, same_title)
            out.append(seen)
        else:
            seen.entry = _merge(seen.entry, entry)
        by_key[key] = by_fp[fp] = seen
    return out


def _identity(entry: Entry, same_title: _StoredPaper | None) -> tuple[str, str]:
    """The title key and abstract fingerprint of the entry.

    A stored paper with the same title holds the key of that title, and the fingerprint of its
    abstract: ingest, which alone writes papers, always stores the keys of the text it stores.
    Reusing them makes re-ingesting a known paper cheap, as computing them was most of the work.
    """
    if same_title is None:
        # parse_dump() has collapsed the abstract's whitespace already: no need to check it again.
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
    )


def _attach_known(session: Session, candidates: list[_Candidate], everything: list[_StoredPaper] | None) -> None:
    """Find the stored paper of each candidate: by title key first, then by abstract fingerprint
    (the oldest paper, if several share it). ``everything``: every stored paper, or None to query."""
    if not candidates:
        return
    if everything is not None:
        by_key = {paper.title_key: paper for paper in everything}
        missing = {c.fingerprint for c in candidates if c.key not in by_key}
        by_fp = _oldest_by_fingerprint(paper for paper in everything if paper.abstract_fp in missing)
    else:
        keys = [c.key for c in candidates]
        by_key = {paper.title_key: paper for paper in _stored_papers_in(session, _KNOWN_BY_KEY, "keys", keys)}
        missing = [c.fingerprint for c in candidates if c.key not in by_key]
        by_fp = _oldest_by_fingerprint(_stored_papers_in(session, _KNOWN_BY_FP, "fps", missing))
    for c in candidates:
        c.stored = by_key.get(c.key) or by_fp.get(c.fingerprint)


def _stored_papers_in(session: Session, statement, name: str, values: list) -> list[_StoredPaper]:
    """The papers ``statement`` selects with its expanding parameter ``name`` set to ``values``."""
    return [paper for chunk in _chunks(values) for paper in _stored_papers(session, statement, {name: chunk})]


def _oldest_by_fingerprint(papers: Iterable[_StoredPaper]) -> dict[str, _StoredPaper]:
    by_fp: dict[str, _StoredPaper] = {}
    for paper in papers:
        held = by_fp.get(paper.abstract_fp)
        if held is None or paper.id < held.id:
            by_fp[paper.abstract_fp] = paper
    return by_fp


def _touch(session: Session, paper_ids: list[int], now: datetime) -> None:
    """Set when these papers were last seen: runs of consecutive ids (the papers of one earlier
    dump, usually) by range, the others in IN (...) lists."""
    ranges, singles = _runs(sorted(set(paper_ids)))  # a stored paper can match two papers of the dump
    if ranges:
        session.execute(_TOUCH_RANGE, [{"first": first, "last": last, "now": now} for first, last in ranges])
    for chunk in _chunks(singles):
        session.execute(_TOUCH, {"ids": chunk, "now": now})


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


def _store_dump(
    session: Session, path: str, sha: str, size: int, dump: Dump, now: datetime,
    matcher: SubscriptionMatcher | None,
) -> FileResult:
    everything = _all_stored_papers(session, len(dump.entries))
    candidates = _distinct(dump.entries, {paper.title: paper for paper in everything or ()})
    _attach_known(session, [c for c in candidates if c.stored is None], everything)

    record = session.scalar(select(DumpFile).where(DumpFile.sha256 == sha)) or DumpFile(sha256=sha)
    record.path, record.size, record.status, record.error = path, size, "ingested", None
    record.snapshot_date, record.entries, record.processed_at = dump.snapshot_date, len(dump.entries), now
    record.warnings = "\n".join(dump.warnings) or None
    session.add(record)
    session.flush()

    fresh, changed, unchanged_ids = [], [], []
    for c in candidates:
        e, row = c.entry, c.stored
        if row is None:
            fresh.append({
                "title": e.title, "title_key": c.key, "abstract": e.abstract, "abstract_fp": c.fingerprint,
                "authors_count": e.authors_count, "upvotes": e.upvotes, "published": e.published,
                "first_seen": now, "first_dump_id": record.id,
            })
            continue
        if _unchanged(row, e, c.fingerprint):
            unchanged_ids.append(row.id)
        else:
            merged = _merged_row(row, e, c.fingerprint)
            changed.append({"id": row.id, **merged, "title_key": c.key, "updated_at": now,
                            **({"abstract": e.abstract} if c.fingerprint != row.abstract_fp else {})})

    new_ids = _insert_papers(session, fresh) if fresh else []
    if new_ids:
        session.execute(insert(_SIGHTINGS), [{"paper_id": pid, "last_seen": now} for pid in new_ids])
    # Rows with and without an abstract change have different keys: send each shape as one batch.
    for batch in _by_shape(changed):
        session.execute(update(Paper), batch)
    _touch(session, unchanged_ids + [row["id"] for row in changed], now)

    matched = 0
    if matcher is not None and new_ids:
        papers = [NewPaper(pid, row["title"], row["abstract"], now) for pid, row in zip(new_ids, fresh)]
        matched = matcher.match_and_store(session, papers)

    record.new, record.updated, record.unchanged = len(fresh), len(changed), len(unchanged_ids)
    return FileResult(path, "ingested", len(fresh), len(changed), len(unchanged_ids),
                      warnings=list(dump.warnings), matches=matched, new_paper_ids=new_ids)


def _by_shape(rows: list[dict]) -> list[list[dict]]:
    shapes: dict[frozenset, list[dict]] = {}
    for row in rows:
        shapes.setdefault(frozenset(row), []).append(row)
    return list(shapes.values())


def _insert_papers(session: Session, rows: list[dict]) -> list[int]:
    """Insert the rows (one executemany) and return their new ids, in the order of the rows.

    The ids are looked up by title key, which is unique. Not ORM INSERT ... RETURNING in parameter
    order: that groups consecutive rows by which of their values are None, runs one statement per
    row on SQLite, and splices each group's ids onto all the earlier ones - quadratic: 80 s for
    50,000 papers that mix rows with and without metadata.
    """
    session.execute(insert(_PAPERS), rows)
    keys = [row["title_key"] for row in rows]
    ids: dict[str, int] = {}
    for chunk in _chunks(keys):
        ids.update(session.execute(_IDS_BY_KEY, {"keys": chunk}).all())
    return [ids[key] for key in keys]


def _unchanged(row, entry: Entry, fingerprint: str) -> bool:
    """Whether _merged_row(row, entry, fingerprint) equals what is stored, without building it."""
    return (
        entry.title == row.title and fingerprint == row.abstract_fp
        and (entry.authors_count is None or entry.authors_count == row.authors_count)
        and (entry.upvotes is None or entry.upvotes == row.upvotes)
        and (entry.published is None or entry.published == row.published)
    )


def _merged_row(row, entry: Entry, fingerprint: str) -> dict:
    """The stored paper updated with what the dump says; metadata a dump omits is kept, not erased."""
    return {
        "title": entry.title,
        "abstract_fp": fingerprint,
        "authors_count": entry.authors_count if entry.authors_count is not None else row.authors_count,
        "upvotes": entry.upvotes if entry.upvotes is not None else row.upvotes,
        "published": entry.published if entry.published is not None else row.published,
    }

