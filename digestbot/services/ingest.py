"""Ingest dump files: read, parse, diff against the stored papers, record. One transaction per file."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from digestbot.core.dumps import Dump, Entry, parse_dump
from digestbot.core.identity import collapsed_abstract_fingerprint, title_key
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

    reference = datetime.fromtimestamp(after.st_mtime, UTC).date()
    try:
        dump = parse_dump(data, reference=min(reference, now.date()))
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


@dataclass(slots=True)
class _Candidate:
    """One distinct paper of a dump, with its keys and the stored paper it matched, if any."""

    entry: Entry
    key: str
    fingerprint: str
    stored: object = None  # the Row of the matching stored paper


def _distinct(entries: list[Entry]) -> list[_Candidate]:
    """Entries folded by identity: a paper listed twice in one dump counts once (later metadata wins)."""
    by_key: dict[str, _Candidate] = {}
    by_fp: dict[str, _Candidate] = {}
    out: list[_Candidate] = []
    for entry in entries:
        # parse_dump() has collapsed the abstract's whitespace already: no need to check it again.
        key, fp = title_key(entry.title), collapsed_abstract_fingerprint(entry.abstract)
        seen = by_key.get(key) or by_fp.get(fp)
        if seen is None:
            seen = _Candidate(entry, key, fp)
            out.append(seen)
        else:
            seen.entry = _merge(seen.entry, entry)
        by_key[key] = by_fp[fp] = seen
    return out


def _merge(old: Entry, new: Entry) -> Entry:
    return Entry(
        title=old.title, abstract=old.abstract,
        authors_count=new.authors_count if new.authors_count is not None else old.authors_count,
        published=new.published if new.published is not None else old.published,
        upvotes=new.upvotes if new.upvotes is not None else old.upvotes,
        line=old.line,
    )


_KNOWN_COLUMNS = (
    Paper.id, Paper.title, Paper.title_key, Paper.abstract_fp,
    Paper.authors_count, Paper.upvotes, Paper.published,
)
# Built once, with "expanding" IN parameters that take a whole chunk: cheaper than building
# column.in_(chunk) for every chunk, which coerces each value into an SQL literal first.
_KNOWN_BY_KEY = select(*_KNOWN_COLUMNS).where(Paper.title_key.in_(bindparam("keys", expanding=True)))
_KNOWN_BY_FP = select(*_KNOWN_COLUMNS).where(Paper.abstract_fp.in_(bindparam("fps", expanding=True)))
_IDS_BY_KEY = select(Paper.title_key, Paper.id).where(Paper.title_key.in_(bindparam("keys", expanding=True)))
_PAPERS = Paper.__table__  # Core statements on the table: no ORM bookkeeping, the same SQL
_SIGHTINGS = PaperSighting.__table__
_TOUCH = (update(_SIGHTINGS).where(_SIGHTINGS.c.paper_id.in_(bindparam("ids", expanding=True)))
          .values(last_seen=bindparam("now")))


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _attach_known(session: Session, candidates: list[_Candidate]) -> None:
    """Find the stored paper of each candidate: by title key first, then by abstract fingerprint."""
    by_key = {c.key: c for c in candidates}
    for chunk in _chunks(list(by_key)):
        for row in session.execute(_KNOWN_BY_KEY, {"keys": chunk}):
            by_key[row.title_key].stored = row
    by_fp = {c.fingerprint: c for c in candidates if c.stored is None}
    for chunk in _chunks(list(by_fp)):
        for row in session.execute(_KNOWN_BY_FP, {"fps": chunk}):
            candidate = by_fp[row.abstract_fp]
            if candidate.stored is None:
                candidate.stored = row


def _store_dump(
    session: Session, path: str, sha: str, size: int, dump: Dump, now: datetime,
    matcher: SubscriptionMatcher | None,
) -> FileResult:
    candidates = _distinct(dump.entries)
    _attach_known(session, candidates)

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
    seen_again = unchanged_ids + [row["id"] for row in changed]
    for chunk in _chunks(seen_again):
        session.execute(_TOUCH, {"ids": chunk, "now": now})

    matched = 0
    if matcher is not None and new_ids:
        papers = [NewPaper(pid, row["title"], row["abstract"], now) for pid, row in zip(new_ids, fresh)]
        matched = matcher.match_and_store(session, papers, now)

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

