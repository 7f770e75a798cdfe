"""Ingest dump files: read (safely), parse, diff against the stored papers, store, match. One transaction per file.

Hostile or broken files must cost one failure each and never stop the others:

- only regular files are read, and never past the size they had when examined (see
  services/dump_files.py for how); FIFOs, sockets, devices, directories and symbolic links that
  leave their folder are refused by name;
- a file larger than DIGESTBOT_MAX_DUMP_BYTES is refused without being read; a longer title or
  abstract is cut (see DumpLimits);
- a file is read in blocks and stored in chunks of ``CHUNK_ENTRIES`` entries within its one
  transaction, so memory is bounded by the chunk, not the file, and a failure anywhere still
  rolls the whole file back;
- every failure is recorded in ``dump_files`` (so the admin hears of it), by the SHA-256 of the
  content or, for a file that could not be read, of its path, size and mtime. A path that does
  not exist is reported but not recorded: there is no file to speak of.

The diff itself (new, updated, unchanged; a paper listed twice counts once) is core/diff.py;
the SQL is the Papers repository (store/papers.py).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from digestbot.core.diff import KNOWN_LIMIT, Candidate, DumpDiff, attach, oldest_by_fingerprint
from digestbot.core.dump_format import Entry
from digestbot.core.dumps import DumpLimits
from digestbot.core.settle import Look, settled
from digestbot.core.sources import SourceReader, reader_for
from digestbot.errors import Conflict, DumpError, StoreError
from digestbot.services import metrics
from digestbot.services.dump_files import (
    Changed, DumpPath, entry_chunks, examine, expand_paths, look_at, path_key, same_file, sha256_of, shown_path,
)
from digestbot.services.matching import NewPaper, SubscriptionMatcher
from digestbot.settings import Settings
from digestbot.store import Store, Transaction
from digestbot.store.papers import Papers

__all__ = ["CHUNK_ENTRIES", "DumpPath", "FileResult", "IngestReport", "dump_limits", "expand_paths", "ingest_file",
           "ingest_paths", "look_at", "shown_path"]

CHUNK_ENTRIES = 10_000  # entries parsed, diffed and stored at a time


@dataclass
class FileResult:
    path: str
    status: str  # ingested | skipped | deferred | failed
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    # Why a file failed, was skipped or deferred (the "error" of the JSON report, which says it of all three).
    note: str | None = None
    warnings: list[str] = field(default_factory=list)
    matches: int = 0
    new_paper_ids: list[int] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "path": self.path, "status": self.status, "new": self.new, "updated": self.updated,
            "unchanged": self.unchanged, "matches": self.matches, "error": self.note,
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


def dump_limits(settings: Settings) -> DumpLimits:
    return DumpLimits(settings.max_title_chars, settings.max_abstract_chars, settings.max_dump_bytes)


def ingest_paths(
    store: Store,
    paths: Iterable[Path | DumpPath],
    *,
    now: datetime,
    settle_seconds: float,
    matcher: SubscriptionMatcher | None,
    limits: DumpLimits = DumpLimits(),
    seen: Mapping[Path, Look] | None = None,
    sleep: Callable[[float], None] | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    chunk_entries: int = CHUNK_ENTRIES,
) -> IngestReport:
    """Ingest every file under ``paths``; a failing file is recorded and never stops the others.

    ``matcher``: the process's matcher (kept between ingests), which matches the new papers of
    each file against the active subscriptions in the same transaction as the file itself; None
    stores papers without matching them.
    ``seen``: how a caller that looked before (the watcher) first saw files as they are now.
    ``sleep``: given by a caller that runs once (no later pass to look again), it lets a file
    whose mtime is in the future be looked at twice, ``settle_seconds`` apart; without it such a
    file is deferred like one still being written.
    """
    items = list(expand_paths(paths))
    first = dict(seen or {})
    if sleep is not None and settle_seconds > 0:
        now = _look_twice(items, first, now, settle_seconds, sleep)
    report = IngestReport()
    for item in items:
        result = ingest_file(store, item, now=now, settle_seconds=settle_seconds, matcher=matcher, limits=limits,
                             seen=first.get(item.path), chunk_entries=chunk_entries)
        report.files.append(result)
        metrics.count_ingest([result])
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
    store: Store,
    target: Path | DumpPath,
    *,
    now: datetime,
    settle_seconds: float,
    matcher: SubscriptionMatcher | None,
    limits: DumpLimits = DumpLimits(),
    seen: Look | None = None,
    chunk_entries: int = CHUNK_ENTRIES,
) -> FileResult:
    """Ingest one file (see the module's docstring for what is refused, and how)."""
    item = target if isinstance(target, DumpPath) else DumpPath(Path(target))
    shown = shown_path(item.path)
    try:
        found = examine(item)
    except FileNotFoundError as exc:
        return FileResult(shown, "failed", note=f"cannot read: {exc.strerror}")
    except OSError as exc:
        return _failed(store, shown, None, f"cannot read: {exc.strerror or exc}", now)
    if found.refusal is not None:
        return _failed(store, shown, found.own, found.refusal, now)

    look = Look(found.stat.st_size, found.stat.st_mtime_ns, now)
    if not settled(seen if seen is not None and seen.same_file(look) else look, now, settle_seconds):
        reason = ("its modification time is in the future (another clock?): read once it has stayed the same "
                  f"for {settle_seconds:g} s" if look.in_future()
                  else "modified in the last few seconds: still being written?")
        return FileResult(shown, "deferred", note=reason)
    if look.size > limits.dump_bytes:
        return _failed(store, shown, found.stat, f"too large: {look.size:,} bytes, more than "
                       f"DIGESTBOT_MAX_DUMP_BYTES ({limits.dump_bytes:,}): not read", now)

    try:
        fd = os.open(found.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT):  # replaced or removed since it was examined
            return FileResult(shown, "deferred", note="changed while being read: still being written?")
        return _failed(store, shown, found.stat, f"cannot read: {exc.strerror or exc}", now)
    try:
        return _ingest_open(store, fd, found.stat, shown, now, limits, matcher, chunk_entries)
    except Changed:
        return FileResult(shown, "deferred", note="changed while being read: still being written?")
    except OSError as exc:  # a read error: the disk, the network file system
        return _failed(store, shown, found.stat, f"cannot read: {exc.strerror or exc}", now)
    finally:
        os.close(fd)


def _failed(store: Store, shown: str, found: os.stat_result | None, reason: str, now: datetime) -> FileResult:
    """A file that was not read: recorded as failed, by a key made of its path, size and mtime."""
    _record_failure(store, shown, path_key(shown, found), found.st_size if found is not None else 0, reason, now)
    return FileResult(shown, "failed", note=reason)


def _record_failure(store: Store, path: str, key: str, size: int, reason: str, now: datetime) -> None:
    with store.transaction() as tx:
        tx.papers.record_failed(key, path, size, reason, now)


def _ingest_open(store: Store, fd: int, examined: os.stat_result, shown: str, now: datetime,
                 limits: DumpLimits, matcher: SubscriptionMatcher | None, chunk_entries: int) -> FileResult:
    """Ingest the open regular file ``fd``: two passes, the first for its SHA-256 (to skip content
    already ingested without parsing it), the second to parse and store it."""
    if not same_file(examined, os.fstat(fd)):  # swapped between the look and the open
        raise Changed
    sha = sha256_of(fd, examined.st_size)
    with store.reading() as tx:
        known = tx.papers.dump_file(sha)
    if known is not None and known.status == "ingested":
        return FileResult(shown, "skipped", note=f"same content as {known.path}, already ingested")

    reference = min(datetime.fromtimestamp(examined.st_mtime, UTC).date(), now.date())
    return _parse_and_store(store, fd, examined, shown, sha, reference, now, limits, matcher, chunk_entries)


def _parse_and_store(
    store: Store, fd: int, examined: os.stat_result, shown: str, sha: str, reference: date, now: datetime,
    limits: DumpLimits, matcher: SubscriptionMatcher | None, chunk_entries: int,
) -> FileResult:
    size = examined.st_size
    reader = reader_for(os.pread(fd, 4096, 0), reference, limits)  # by content: text, HF JSON or Atom
    try:
        with store.transaction() as tx:
            ingest = _FileIngest(tx, shown, sha, size, now, matcher)
            for entries, read in entry_chunks(fd, size, reader, chunk_entries):
                ingest.add(entries, expected=max(len(entries) * size // max(read, 1), len(entries)))
            if not same_file(examined, os.fstat(fd)):
                raise Changed  # rolls the file back
            return ingest.finish(reader)
    except DumpError as exc:
        _record_failure(store, shown, sha, size, str(exc), now)
        return FileResult(shown, "failed", note=str(exc))
    except StoreError as exc:
        if isinstance(exc, Conflict):
            with store.reading() as tx:
                winner = tx.papers.ingested_path(sha)
            if winner is not None:  # another process ingested the same content at the same moment
                return FileResult(shown, "skipped", note=f"same content as {winner}, ingested concurrently")
        _record_failure(store, shown, sha, size, str(exc), now)
        return FileResult(shown, "failed", note=str(exc))



class _FileIngest:
    """The papers of one file, a chunk of entries at a time: diffed (core/diff.py), stored
    (tx.papers) and matched, in the caller's one transaction."""

    def __init__(self, tx: Transaction, path: str, sha: str, size: int, now: datetime,
                 matcher: SubscriptionMatcher | None) -> None:
        self.tx, self.path, self.now, self.matcher = tx, path, now, matcher
        self.record = tx.papers.record_ingested(sha, path, size, now)
        self.diff: DumpDiff | None = None
        self.matches = 0
        self.new_ids: list[int] = []

    def add(self, entries: list[Entry], expected: int) -> None:
        """Store a chunk of the file's entries. ``expected``: how many entries the file holds, about."""
        papers, now = self.tx.papers, self.now
        if self.diff is None:  # the first chunk: while the store is small, the diff holds all of it
            self.diff = DumpDiff(papers.all_known(expected, KNOWN_LIMIT), KNOWN_LIMIT)
        diff = self.diff
        candidates = diff.fold(entries)
        if diff.known is None:
            _look_up(papers, candidates)
        changes = diff.compare(candidates, now)

        new_ids = papers.add(changes.new, now, self.record.id)
        papers.update([values for _, values in changes.updated])
        papers.touch(changes.unchanged + [row.id for row, _ in changes.updated], now)
        papers.update(changes.relisted)
        diff.added(changes.new, new_ids)
        self.new_ids += new_ids

        if self.matcher is not None and new_ids:
            found = [NewPaper(pid, c.entry.title, c.entry.abstract, now, c.entry.authors)
                     for pid, c in zip(new_ids, changes.new)]
            self.matches += self.matcher.match_and_store(self.tx, found)

    def finish(self, reader: SourceReader) -> FileResult:
        diff = self.diff or DumpDiff()
        warnings = reader.warnings
        self.tx.papers.record_outcome(self.record, snapshot_date=reader.snapshot_date, entries=reader.entries,
                                      warnings=warnings, new=diff.new, updated=diff.updated, unchanged=diff.unchanged)
        return FileResult(self.path, "ingested", diff.new, diff.updated, diff.unchanged, warnings=warnings,
                          matches=self.matches, new_paper_ids=self.new_ids)


def _look_up(papers: Papers, candidates: list[Candidate]) -> None:
    """Find the stored paper of each candidate in the store: by arXiv id first, then by title key,
    then by abstract fingerprint (the oldest paper, if several share it)."""
    if not candidates:
        return
    ids = [c.entry.arxiv_id for c in candidates if c.entry.arxiv_id is not None]
    by_arxiv = papers.known_by_arxiv_ids(ids) if ids else None
    by_key = papers.known_by_keys([c.key for c in candidates])
    missing = [c.fingerprint for c in candidates if c.key not in by_key]
    attach(candidates, by_key, oldest_by_fingerprint(papers.known_by_fingerprints(missing)), by_arxiv)
