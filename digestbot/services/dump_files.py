"""Finding dump files and reading them safely: only regular files, never blocked, never past their size.

A path is examined with lstat/stat before anything is opened, opened with O_NONBLOCK (a FIFO
or device swapped in meanwhile cannot block) and O_NOFOLLOW, and the open file is checked
again with fstat. FIFOs, sockets, devices and directories are refused by name. A symbolic link
found in a folder is followed only to a regular file inside that folder; one named on the
command line is followed (the user named it), still only to a regular file. A file is read in
blocks, exactly as many bytes as it had when examined: one that changes meanwhile is
``Changed`` (ingest defers it, as still being written).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from digestbot.core.dump_format import Entry
from digestbot.core.sources import SourceReader
from digestbot.core.settle import Look

READ_BLOCK = 1 << 20  # bytes read at a time


class DumpPath(NamedTuple):
    """A file to ingest, and the folder it was found in, which a symbolic link may not leave
    (None: named by the user, who may point it anywhere)."""

    path: Path
    folder: Path | None = None


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


def shown_path(path: Path) -> str:
    """The path as text that is safe to print, mail and store: bytes that are not UTF-8 and control
    characters escaped (a file name may hold a newline or a terminal escape)."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class Found(NamedTuple):
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


def examine(item: DumpPath) -> Found:
    """What reading ``item`` would read, and whether it may be read: found without opening it."""
    own = os.lstat(item.path)
    if not stat.S_ISLNK(own.st_mode):
        return Found(item.path, own, own, _not_regular(own.st_mode))
    real = Path(os.path.realpath(item.path))
    if item.folder is not None and not real.is_relative_to(os.path.realpath(item.folder)):
        return Found(real, own, own, f"a symbolic link to outside {shown_path(item.folder)}: not followed")
    try:
        target = os.stat(real)
    except FileNotFoundError:
        return Found(real, own, own, "a symbolic link to a missing file: not read")
    return Found(real, target, own, _not_regular(target.st_mode))


def path_key(shown: str, found: os.stat_result | None) -> str:
    """The record key of a file that was not read, which has no content hash: stable while the file
    stays as it is, so a failure repeated by every pass is recorded (and told the admin) once."""
    what = f"{shown}\0{found.st_size}\0{found.st_mtime_ns}" if found is not None else shown
    return hashlib.sha256(("not read\0" + what).encode("utf-8", "surrogatepass")).hexdigest()


class Changed(Exception):
    """The file changed between the look that settled it and the end of its reading."""


def same_file(before: os.stat_result, after: os.stat_result) -> bool:
    """Whether ``after`` is the regular file ``before`` was, as it was."""
    return (stat.S_ISREG(after.st_mode) and (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)
            and (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns))


def blocks(fd: int, size: int) -> Iterator[bytes]:
    """The file's bytes from its start, in blocks; Changed if there are not exactly ``size`` of them
    (it is never read further than that: a pseudo-file of size 0 can be endless)."""
    os.lseek(fd, 0, os.SEEK_SET)
    left = size + 1
    while left > 0 and (block := os.read(fd, min(READ_BLOCK, left))):
        left -= len(block)
        yield block
    if left != 1:
        raise Changed


def sha256_of(fd: int, size: int) -> str:
    digest = hashlib.sha256()
    for block in blocks(fd, size):
        digest.update(block)
    return digest.hexdigest()


def entry_chunks(fd: int, size: int, reader: SourceReader, chunk_entries: int) -> Iterator[tuple[list[Entry], int]]:
    """The file's entries, ``chunk_entries`` at a time, each with how many bytes were read by then."""
    pending: list[Entry] = []
    read = 0
    for block in blocks(fd, size):
        read += len(block)
        pending += reader.feed(block)
        while len(pending) >= chunk_entries:
            yield pending[:chunk_entries], read
            del pending[:chunk_entries]
    pending += reader.close()
    for start in range(0, len(pending), chunk_entries):
        yield pending[start:start + chunk_entries], read
