"""Ingest dump files: examine, read, parse, diff against the stored papers, record. One transaction per file.

Hostile or broken files must cost one failure each and never stop the others:

- only regular files are read. A path is examined with lstat/stat before anything is opened,
  opened with O_NONBLOCK (a FIFO or device swapped in meanwhile cannot block) and O_NOFOLLOW,
  and the open file is checked again with fstat. FIFOs, sockets, devices and directories are
  refused by name. A symbolic link found in a folder is followed only to a regular file inside
  that folder; one named on the command line is followed (the user named it), still only to a
  regular file;
- a file larger than DIGESTBOT_MAX_DUMP_BYTES is refused without being read; a longer title or
  abstract is cut (see DumpLimits);
- a file is read in blocks and stored in chunks of ``CHUNK_ENTRIES`` entries within its one
  transaction, so memory is bounded by the chunk, not the file, and a failure anywhere still
  rolls the whole file back;
- every failure is recorded in ``dump_files`` (so the admin hears of it), by the SHA-256 of the
  content or, for a file that could not be read, of its path, size and mtime. A path that does
  not exist is reported but not recorded: there is no file to speak of.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from digestbot.core.dumps import DumpLimits, DumpReader, Entry
from digestbot.core.identity import collapsed_abstract_fingerprint, title_key
from digestbot.core.matcher import gc_paused
from digestbot.core.settle import Look, settled
from digestbot.errors import DumpError
from digestbot.services.matching import NewPaper, SubscriptionMatcher
from digestbot.store import Transaction
from digestbot.settings import Settings
from digestbot.store.models import DumpFile, Paper, PaperSighting

CHUNK = 500  # bound on IN (...) lists: well under SQLite's and PostgreSQL's parameter limits
CHUNK_ENTRIES = 10_000  # entries parsed, diffed and stored at a time
READ_BLOCK = 1 << 20  # bytes read at a time
# Stored papers held in memory for one file at most (see _KnownPapers): about 2 KB each.
KNOWN_LIMIT = 100_000
# dump_files.size is a 32-bit integer on PostgreSQL: the size of a refused giant is recorded as this.
MAX_RECORDED_SIZE = 2**31 - 1


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


class DumpPath(NamedTuple):
    """A file to ingest, and the folder it was found in, which a symbolic link may not leave
    (None: named by the user, who may point it anywhere)."""

    path: Path
    folder: Path | None = None


def dump_limits(settings: Settings) -> DumpLimits:
    return DumpLimits(settings.max_title_chars, settings.max_abstract_chars, settings.max_dump_bytes)


def expand_paths(paths: Iterable[Path | DumpPath]) -> Iterator[DumpPath]:
    """Files as given; folders as every non-hidden entry inside that is not a folder (nor a link
    to one), sorted by name. What is not a regular file is listed too, to be refused by name."""
    for path in paths:
        if isinstance(path, DumpPath):
            yield path
        elif path.is_dir():
            yield from sorted(
                (DumpPath(p, path) for p in path.iterdir() if not p.name.startswith(".") and not p.is_dir()),
                key=lambda item: item.path.name,
            )
        else:
            yield DumpPath(path)


def look_at(path: Path, now: datetime) -> Look:
    """The size and mtime of what reading ``path`` would read (a link's target; the link itself if
    broken). Raises OSError if there is nothing there."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        found = os.lstat(path)
    return Look(found.st_size, found.st_mtime_ns, now)


def ingest_paths(
    engine: Engine,
    paths: Iterable[Path | DumpPath],
    *,
    now: datetime,
    settle_seconds: float,
    limits: DumpLimits = DumpLimits(),
    seen: Mapping[Path, Look] | None = None,
    sleep: Callable[[float], None] | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    match: bool = True,
    matcher: SubscriptionMatcher | None = None,
    chunk_entries: int = CHUNK_ENTRIES,
) -> IngestReport:
    """Ingest every file under ``paths``; a failing file is recorded and never stops the others.

    ``seen``: how a caller that looked before (the watcher) first saw files as they are now.
    ``sleep``: given by a caller that runs once (no later pass to look again), it lets a file
    whose mtime is in the future be looked at twice, ``settle_seconds`` apart; without it such a
    file is deferred like one still being written. With ``match``, the new papers of each file are
    matched against the active subscriptions in the same transaction as the file itself, by
    ``matcher`` (kept by the caller between ingests; a new one for this call if not given).
    """
    if match and matcher is None:
        matcher = SubscriptionMatcher()
    items = list(expand_paths(paths))
    first = dict(seen or {})
    if sleep is not None and settle_seconds > 0:
        now = _look_twice(items, first, now, settle_seconds, sleep)
    report = IngestReport()
    for item in items:
        result = ingest_file(engine, item, now=now, settle_seconds=settle_seconds, limits=limits,
                             seen=first.get(item.path), match=match, matcher=matcher, chunk_entries=chunk_entries)
        report.files.append(result)
        if on_file is not None:
            on_file(result)
    return report


def _look_twice(items: list[DumpPath], first: dict[Path, Look], now: datetime, settle_seconds: float,
                sleep: Callable[[float], None]) -> datetime:
    """Look at every file now; if one has a future mtime and is not settled, wait the settle time
    (once for all) so that the second look, when it is ingested, can say. Returns the new now."""
    waiting = False
    for item in items:
        try:
            look = look_at(item.path, now)
        except OSError:
            continue
        known = first.get(item.path)
        if known is None or not known.same_file(look):
            first[item.path] = known = look
        waiting = waiting or (look.in_future() and not settled(known, now, settle_seconds))
    if not waiting:
        return now
    sleep(settle_seconds)
    return now + timedelta(seconds=settle_seconds)


def ingest_file(
    engine: Engine,
    target: Path | DumpPath,
    *,
    now: datetime,
    settle_seconds: float,
    limits: DumpLimits = DumpLimits(),
    seen: Look | None = None,
    match: bool = True,
    matcher: SubscriptionMatcher | None = None,
    chunk_entries: int = CHUNK_ENTRIES,
) -> FileResult:
    """Ingest one file (see the module's docstring for what is refused, and how)."""
    item = target if isinstance(target, DumpPath) else DumpPath(Path(target))
    shown = shown_path(item.path)
    try:
        found = _examine(item)
    except FileNotFoundError as exc:
        return FileResult(shown, "failed", error=f"cannot read: {exc.strerror}")
    except OSError as exc:
        return _failed(engine, shown, None, f"cannot read: {exc.strerror or exc}", now)
    if found.refusal is not None:
        return _failed(engine, shown, found.own, found.refusal, now)

    look = Look(found.stat.st_size, found.stat.st_mtime_ns, now)
    if not settled(seen if seen is not None and seen.same_file(look) else look, now, settle_seconds):
        reason = ("its modification time is in the future (another clock?): read once it has stayed the same "
                  f"for {settle_seconds:g} s" if look.in_future()
                  else "modified in the last few seconds: still being written?")
        return FileResult(shown, "deferred", error=reason)
    if look.size > limits.dump_bytes:
        return _failed(engine, shown, found.stat, f"too large: {look.size:,} bytes, more than "
                       f"DIGESTBOT_MAX_DUMP_BYTES ({limits.dump_bytes:,}): not read", now)

    try:
        fd = os.open(found.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT):  # replaced or removed since it was examined
            return FileResult(shown, "deferred", error="changed while being read: still being written?")
        return _failed(engine, shown, found.stat, f"cannot read: {exc.strerror or exc}", now)
    try:
        if match and matcher is None:
            matcher = SubscriptionMatcher()
        return _ingest_open(engine, fd, found.stat, shown, now, limits, matcher if match else None, chunk_entries)
    except _Changed:
        return FileResult(shown, "deferred", error="changed while being read: still being written?")
    except OSError as exc:  # a read error: the disk, the network file system
        return _failed(engine, shown, found.stat, f"cannot read: {exc.strerror or exc}", now)
    finally:
        os.close(fd)


def shown_path(path: Path) -> str:
    """The path as text that is safe to print, mail and store: bytes that are not UTF-8 and control
    characters escaped (a file name may hold a newline or a terminal escape)."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class _Found(NamedTuple):
    path: Path  # what to open: the path, or a link's resolved target
    stat: os.stat_result  # of what would be read
    own: os.stat_result  # of the path itself (a link's own, for the key of a refusal)
    refusal: str | None  # why it is not read, if it is not


_KINDS = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
)


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"{kind}, not a regular file: not read"


def _examine(item: DumpPath) -> _Found:
    """What reading ``item`` would read, and whether it may be read: found without opening it."""
    own = os.lstat(item.path)
    if not stat.S_ISLNK(own.st_mode):
        return _Found(item.path, own, own, _not_regular(own.st_mode))
    real = Path(os.path.realpath(item.path))
    if item.folder is not None and not real.is_relative_to(os.path.realpath(item.folder)):
        return _Found(real, own, own, f"a symbolic link to outside {shown_path(item.folder)}: not followed")
    try:
        target = os.stat(real)
    except FileNotFoundError:
        return _Found(real, own, own, "a symbolic link to a missing file: not read")
    return _Found(real, target, own, _not_regular(target.st_mode))


def _path_key(shown: str, found: os.stat_result | None) -> str:
    """The record key of a file that was not read, which has no content hash: stable while the file
    stays as it is, so a failure repeated by every pass is recorded (and told the admin) once."""
    what = f"{shown}\0{found.st_size}\0{found.st_mtime_ns}" if found is not None else shown
    return hashlib.sha256(("not read\0" + what).encode("utf-8", "surrogatepass")).hexdigest()


def _failed(engine: Engine, shown: str, found: os.stat_result | None, reason: str, now: datetime) -> FileResult:
    """A file that was not read: recorded as failed, by a key made of its path, size and mtime."""
    size = min(found.st_size, MAX_RECORDED_SIZE) if found is not None else 0
    _record_failure(engine, shown, _path_key(shown, found), size, reason, now)
    return FileResult(shown, "failed", error=reason)


class _Changed(Exception):
    """The file changed between the look that settled it and the end of its reading."""


def _same(before: os.stat_result, after: os.stat_result) -> bool:
    return (stat.S_ISREG(after.st_mode) and (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)
            and (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns))


def _blocks(fd: int, size: int) -> Iterator[bytes]:
    """The file's bytes from its start, in blocks; _Changed if there are not exactly ``size`` of them
    (it is never read further than that: a pseudo-file of size 0 can be endless)."""
    os.lseek(fd, 0, os.SEEK_SET)
    left = size + 1
    while left > 0 and (block := os.read(fd, min(READ_BLOCK, left))):
        left -= len(block)
        yield block
    if left != 1:
        raise _Changed


def _ingest_open(engine: Engine, fd: int, examined: os.stat_result, shown: str, now: datetime,
                 limits: DumpLimits, matcher: SubscriptionMatcher | None, chunk_entries: int) -> FileResult:
    """Ingest the open regular file ``fd``: two passes, the first for its SHA-256 (to skip content
    already ingested without parsing it), the second to parse and store it."""
    if not _same(examined, os.fstat(fd)):  # swapped between the look and the open
        raise _Changed
    size = examined.st_size
    digest = hashlib.sha256()
    for block in _blocks(fd, size):
        digest.update(block)
    sha = digest.hexdigest()
    with Session(engine) as session:
        known = session.scalar(select(DumpFile).where(DumpFile.sha256 == sha))
        if known is not None and known.status == "ingested":
            return FileResult(shown, "skipped", error=f"same content as {known.path}, already ingested")

    reference = min(datetime.fromtimestamp(examined.st_mtime, UTC).date(), now.date())
    # Parsing and diffing make many objects that stay alive to the end of a chunk: see gc_paused
    # (a quarter of the time of re-ingesting 50,000 papers).
    with gc_paused():
        return _parse_and_store(engine, fd, examined, shown, sha, reference, now, limits, matcher, chunk_entries)


def _entry_chunks(fd: int, size: int, reader: DumpReader, chunk_entries: int) -> Iterator[tuple[list[Entry], int]]:
    """The file's entries, ``chunk_entries`` at a time, each with how many bytes were read by then."""
    pending: list[Entry] = []
    read = 0
    for block in _blocks(fd, size):
        read += len(block)
        pending += reader.feed(block)
        while len(pending) >= chunk_entries:
            yield pending[:chunk_entries], read
            del pending[:chunk_entries]
    pending += reader.close()
    for start in range(0, len(pending), chunk_entries):
        yield pending[start:start + chunk_entries], read


def _parse_and_store(
    engine: Engine, fd: int, examined: os.stat_result, shown: str, sha: str, reference: date, now: datetime,
    limits: DumpLimits, matcher: SubscriptionMatcher | None, chunk_entries: int,
) -> FileResult:
    size = examined.st_size
    reader = DumpReader(reference, limits)
    try:
        with Session(engine) as session, session.begin():
            store = _DumpStore(session, shown, sha, size, now, matcher)
            for entries, read in _entry_chunks(fd, size, reader, chunk_entries):
                store.add(entries, expected=max(len(entries) * size // max(read, 1), len(entries)))
            if not _same(examined, os.fstat(fd)):
                raise _Changed  # rolls the file back
            return store.finish(reader)
    except DumpError as exc:
        _record_failure(engine, shown, sha, size, str(exc), now)
        return FileResult(shown, "failed", error=str(exc))
    except IntegrityError as exc:
        with Session(engine) as session:
            winner = session.scalar(select(DumpFile.path).where(DumpFile.sha256 == sha, DumpFile.status == "ingested"))
        if winner is not None:  # another process ingested the same content at the same moment
            return FileResult(shown, "skipped", error=f"same content as {winner}, ingested concurrently")
        reason = _one_line(f"database error: {exc.orig}")
        _record_failure(engine, shown, sha, size, reason, now)
        return FileResult(shown, "failed", error=reason)
    except SQLAlchemyError as exc:
        reason = _one_line(f"database error: {exc.__class__.__name__}: {exc.orig if hasattr(exc, 'orig') else exc}")
        _record_failure(engine, shown, sha, size, reason, now)
        return FileResult(shown, "failed", error=reason)


def _one_line(text: str, limit: int = 200) -> str:
    """The first line of a message, at most ``limit`` characters, printable only: a database's
    message may quote the data it choked on."""
    line = text.strip().splitlines()[0] if text.strip() else text
    if len(line) > limit:
        line = line[:limit - 1] + "…"
    return line if line.isprintable() else "".join(c if c.isprintable() else "?" for c in line)


def _record_failure(engine: Engine, path: str, key: str, size: int, reason: str, now: datetime) -> None:
    with Session(engine) as session, session.begin():
        row = session.scalar(select(DumpFile).where(DumpFile.sha256 == key))
        if row is None:
            row = DumpFile(sha256=key)
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
    abstract: str | None  # None for a paper held by _KnownPapers without it (one this file inserted)


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
# keys of the papers stored already (see _identity). So it is done, once for a file, while the
# store holds at most this many papers per entry the file is expected to hold (and at most
# KNOWN_LIMIT): see _KnownPapers.
LOAD_ALL_RATIO = 2
# A run of consecutive paper ids at least this long is touched with one range update rather
# than in an IN (...) list: a statement of its own costs about as much as 7 ids in a list.
MIN_RUN = 8


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


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


def _attach_known(session: Session, candidates: list[_Candidate], known: _KnownPapers | None) -> None:
    """Find the stored paper of each candidate: by title key first, then by abstract fingerprint
    (the oldest paper, if several share it). ``known``: every stored paper, or None to query."""
    if not candidates:
        return
    if known is not None:
        by_key = known.by_key()
        missing = {c.fingerprint for c in candidates if c.key not in by_key}
        by_fp = _oldest_by_fingerprint(p for p in known.by_title.values() if p.abstract_fp in missing) if missing else {}
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


class _KnownPapers:
    """Every stored paper, read once for a file while the store is small (LOAD_ALL_RATIO) and kept
    up to date with what the file's chunks write: by title, and by title key once asked for. The
    papers the file inserts are held without their abstract (needed only to spare computing the
    fingerprint of a paper listed again), and no more than KNOWN_LIMIT papers are held."""

    def __init__(self, papers: Iterable[_StoredPaper]) -> None:
        self.by_title = {paper.title: paper for paper in papers}
        self._by_id: dict[int, _StoredPaper] | None = None
        self._by_key: dict[str, _StoredPaper] | None = None

    def __len__(self) -> int:
        return len(self.by_title)

    def by_key(self) -> dict[str, _StoredPaper]:
        if self._by_key is None:
            self._by_key = {paper.title_key: paper for paper in self.by_title.values()}
        return self._by_key

    def put(self, paper: _StoredPaper) -> None:
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


class _Outcomes:
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


class _DumpStore:
    """The writes of one file, a chunk of entries at a time, in the caller's one transaction.

    A paper listed in two chunks counts once, as within a chunk: its first listing gives its title
    and abstract, later ones add their metadata (see _Outcomes).
    """

    def __init__(self, session: Session, path: str, sha: str, size: int, now: datetime,
                 matcher: SubscriptionMatcher | None) -> None:
        self.session, self.path, self.now, self.matcher = session, path, now, matcher
        record = session.scalar(select(DumpFile).where(DumpFile.sha256 == sha)) or DumpFile(sha256=sha)
        record.path, record.size, record.status, record.error, record.processed_at = path, size, "ingested", None, now
        session.add(record)
        session.flush()
        self.record = record
        self.known: _KnownPapers | None = None
        self.chunks = 0
        self.outcomes = _Outcomes()
        self.new = self.updated = self.unchanged = self.matches = 0
        self.new_ids: list[int] = []

    def add(self, entries: list[Entry], expected: int) -> None:
        """Store a chunk of the file's entries. ``expected``: how many entries the file holds, about."""
        session, now, outcomes = self.session, self.now, self.outcomes
        if not self.chunks and session.scalar(
                _PAPER_BEYOND, {"count": min(LOAD_ALL_RATIO * expected, KNOWN_LIMIT)}) is None:
            self.known = _KnownPapers(_stored_papers(session, _ALL_KNOWN))
        self.chunks += 1
        known = self.known
        candidates = _distinct(entries, known.by_title if known is not None else {})
        _attach_known(session, [c for c in candidates if c.stored is None], known)

        fresh, changed, unchanged_ids, again = [], [], [], []
        for c in candidates:
            e, row = c.entry, c.stored
            if row is None:
                fresh.append({
                    "title": e.title, "title_key": c.key, "abstract": e.abstract, "abstract_fp": c.fingerprint,
                    "authors_count": e.authors_count, "upvotes": e.upvotes, "published": e.published,
                    "first_seen": now, "first_dump_id": self.record.id,
                })
            elif outcomes[row.id]:
                again.append(c)
            elif _unchanged(row, e, c.fingerprint):
                unchanged_ids.append(row.id)
            else:
                merged = _merged_row(row, e, c.fingerprint)
                changed.append((row, {"id": row.id, **merged, "title_key": c.key, "updated_at": now,
                                      **({"abstract": e.abstract} if c.fingerprint != row.abstract_fp else {})}))

        new_ids = _insert_papers(session, fresh) if fresh else []
        if new_ids:
            session.execute(insert(_SIGHTINGS), [{"paper_id": pid, "last_seen": now} for pid in new_ids])
        # Rows with and without an abstract change have different keys: send each shape as one batch.
        for batch in _by_shape([values for _, values in changed]):
            session.execute(update(Paper), batch)
        _touch(session, unchanged_ids + [row.id for row, _ in changed], now)
        self._listed_again(again)

        outcomes.set(new_ids, _Outcomes.NEW)
        outcomes.set((row.id for row, _ in changed), _Outcomes.UPDATED)
        outcomes.set(unchanged_ids, _Outcomes.UNCHANGED)
        self.new += len(fresh)
        self.updated += len(changed)
        self.unchanged += len(unchanged_ids)
        self.new_ids += new_ids
        if known is not None:
            for pid, values in zip(new_ids, fresh):
                known.put(_StoredPaper(pid, values["title"], values["title_key"], values["abstract_fp"],
                                       values["authors_count"], values["upvotes"], values["published"], None))
            for row, values in changed:
                known.put(row._replace(**{name: values.get(name, getattr(row, name)) for name in _CHANGING}))
            if len(known) > KNOWN_LIMIT:
                self.known = None  # memory stays bounded: look the rest up

        if self.matcher is not None and new_ids:
            papers = [NewPaper(pid, values["title"], values["abstract"], now) for pid, values in zip(new_ids, fresh)]
            self.matches += self.matcher.match_and_store(Transaction(session), papers)

    def _listed_again(self, again: list[_Candidate]) -> None:
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
            if (merged["authors_count"], merged["upvotes"], merged["published"]) == (
                    row.authors_count, row.upvotes, row.published):
                continue
            outcome = outcomes[row.id]
            if outcome == _Outcomes.UNCHANGED:  # unchanged with its first listing, not with both
                outcomes.set([row.id], _Outcomes.UPDATED)
                self.unchanged -= 1
                self.updated += 1
            # a paper new in this file is new, not updated: as if inserted with all its metadata
            rows.append({"id": row.id, **merged, **({} if outcome == _Outcomes.NEW else {"updated_at": self.now})})
            if self.known is not None:
                self.known.put(row._replace(**merged))
        for batch in _by_shape(rows):
            self.session.execute(update(Paper), batch)

    def finish(self, reader: DumpReader) -> FileResult:
        record = self.record
        warnings = reader.warnings
        record.snapshot_date, record.entries, record.warnings = reader.snapshot_date, reader.entries, "\n".join(warnings) or None
        record.new, record.updated, record.unchanged = self.new, self.updated, self.unchanged
        return FileResult(self.path, "ingested", self.new, self.updated, self.unchanged, warnings=warnings,
                          matches=self.matches, new_paper_ids=self.new_ids)


_CHANGING = ("title", "title_key", "abstract_fp", "authors_count", "upvotes", "published", "abstract")


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

