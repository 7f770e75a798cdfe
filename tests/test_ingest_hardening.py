"""Ingest against hostile files (issue 10, items 4-6), on SQLite and PostgreSQL where it stores.

- special files: only regular files are read; FIFOs, sockets, devices, directories and links out
  of their folder are refused by name without blocking; every failure is recorded, and its
  reason quotes at most a short, printable excerpt of the file;
- size limits: long titles and abstracts are cut with a warning, a file over the byte limit is
  refused unread, and a file is parsed and stored in chunks (memory bounded by the chunk) with
  within-dump de-duplication across chunks and one transaction per file;
- settling: a file with an mtime in the future settles by what digestbot observes.

Nothing of digestbot is mocked: real FIFOs, sockets, symbolic links and devices; time is the
``now`` handed to the services, and the one-shot wait is a fake ``sleep`` (the outside clock).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import socket
import stat
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from conftest import NAMES, SAMPLES, copy_samples, write_dated
from digestbot.bootstrap import bootstrap
from digestbot.core.dump_format import excerpt, shorten
from digestbot.core.dumps import DumpLimits, DumpReader, parse_dump
from digestbot.core.identity import MAX_KEY_CHARS, title_key
from digestbot.core.settle import Look, settled
from digestbot.errors import ConfigError, DumpError
from digestbot.runner import Bot
from digestbot.services.health import pending_alerts
from digestbot.services.ingest import DumpPath, ingest_file, ingest_paths
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.status import store_status
from digestbot.services.watch import Watcher
from digestbot.settings import Settings
from digestbot.store import DumpFile, Paper, Store

NOW = datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
MTIME = datetime(2025, 12, 1, 8, 0, tzinfo=UTC).timestamp()
NEW = [70, 61, 102, 42, 67]
PASSWD = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


def write(path: Path, content: str | bytes, mtime: float = MTIME) -> Path:
    return write_dated(path, content, mtime)


def ingest(engine, *paths, now: datetime = NOW, settle: float = 0, **options):
    options.setdefault("matcher", SubscriptionMatcher())
    return ingest_paths(Store(engine), list(paths), now=now, settle_seconds=settle, **options)


def dump_rows(engine) -> list[DumpFile]:
    with Session(engine) as session:
        return list(session.scalars(select(DumpFile).order_by(DumpFile.id)))


def failed_rows(engine) -> dict[str, DumpFile]:
    return {row.path: row for row in dump_rows(engine) if row.status == "failed"}


def papers(engine) -> dict[str, Paper]:
    with Session(engine) as session:
        return {p.title: p for p in session.scalars(select(Paper))}


def paper_count(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Paper))


def sample(index: int = 0) -> bytes:
    return (SAMPLES / NAMES[index]).read_bytes()


def counts(result) -> tuple[str, int, int, int]:
    return result.status, result.new, result.updated, result.unchanged


def as_json(proc) -> dict:
    return json.loads(proc.stdout)


def assert_short_printable(reason: str) -> None:
    assert reason and reason.isprintable() and len(reason) < 250, reason


# ================================================================ special files


def test_fifo_named_on_the_command_line_is_refused_at_once_and_the_next_file_goes_in(engine, tmp_path):
    fifo = tmp_path / "dump.fifo"
    os.mkfifo(fifo)  # nobody writes to it: opening it for reading would block forever
    good = write(tmp_path / "good.txt", sample(0))
    report = ingest(engine, fifo, good)
    refused, taken = report.files
    assert (refused.status, refused.path) == ("failed", str(fifo))
    assert "named pipe (FIFO)" in refused.note and "not a regular file" in refused.note
    assert counts(taken) == ("ingested", NEW[0], 0, 0)
    # Recorded, so `digestbot status` shows it and the admin hears of it.
    row = failed_rows(engine)[str(fifo)]
    assert (row.error, row.size, row.processed_at) == (refused.note, 0, NOW)


def test_devices_pipes_sockets_and_links_to_devices_in_a_folder_are_refused_by_name(engine, tmp_path):
    folder = tmp_path / "dumps"
    copy_samples(folder, MTIME)
    (folder / "000b_zero").symlink_to("/dev/zero")  # would be read until memory runs out
    os.mkfifo(folder / "000d_pipe")
    try:  # a device node of its own, where the container allows making one
        os.mknod(folder / "000c_device", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    except PermissionError:
        pass
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(folder / "000e_sock"))
        report = ingest(engine, folder)
    finally:
        listener.close()
    by_name = {Path(f.path).name: f for f in report.files}
    assert [by_name[n].new for n in NAMES] == NEW  # every good file is ingested, in order
    assert "symbolic link to outside" in by_name["000b_zero"].note
    assert "named pipe (FIFO), not a regular file" in by_name["000d_pipe"].note
    assert "socket, not a regular file" in by_name["000e_sock"].note
    refused = {"000b_zero", "000d_pipe", "000e_sock"}
    if "000c_device" in by_name:
        assert "character device, not a regular file" in by_name["000c_device"].note
        refused.add("000c_device")
    assert {Path(f.path).name for f in report.failed} == refused
    assert set(failed_rows(engine)) == {str(folder / n) for n in refused}


def test_a_directory_given_as_a_file_is_refused(engine, tmp_path):
    (tmp_path / "sub").mkdir()
    result = ingest_file(Store(engine), DumpPath(tmp_path / "sub"), now=NOW, settle_seconds=0, matcher=None)
    assert result.status == "failed" and "a directory" in result.note
    assert str(tmp_path / "sub") in failed_rows(engine)


def test_a_folder_skips_its_subfolders_and_links_to_folders(engine, tmp_path):
    folder = copy_samples(tmp_path / "dumps", MTIME)
    (folder / "archive").mkdir()
    write(folder / "archive" / "old.txt", sample(1))
    (folder / "elsewhere").symlink_to(tmp_path)
    report = ingest(engine, folder)
    assert [Path(f.path).name for f in report.files] == NAMES


def test_links_out_of_a_folder_are_refused_without_quoting_their_target(engine, tmp_path):
    secrets = write(tmp_path / "etc" / "passwd", PASSWD)
    outside_dump = write(tmp_path / "elsewhere" / "dump.txt", sample(1))
    folder = tmp_path / "dumps"
    write(folder / NAMES[0], sample(0))
    (folder / "passwd").symlink_to(secrets)
    (folder / "sneaky").symlink_to(Path("..") / "elsewhere" / "dump.txt")  # relative, and a real dump
    (folder / "inside").symlink_to(folder / NAMES[0])  # inside the folder: followed
    (folder / "dangling").symlink_to(folder / "nothing-here")
    report = ingest(engine, folder)
    by_name = {Path(f.path).name: f for f in report.files}
    for name in ("passwd", "sneaky"):
        assert by_name[name].status == "failed"
        assert "symbolic link to outside" in by_name[name].note and "not followed" in by_name[name].note
    assert "missing file" in by_name["dangling"].note
    assert by_name["inside"].status == "skipped"  # read: the same content as 000, taken first
    assert counts(by_name[NAMES[0]]) == ("ingested", NEW[0], 0, 0)
    rows = failed_rows(engine)
    assert set(rows) == {str(folder / n) for n in ("passwd", "sneaky", "dangling")}
    assert not any("root:x" in row.error for row in rows.values())
    assert "root:x" not in str(store_status(Store(engine), NOW)["failed_files"])

    # Named on the command line, a link is followed (the user named it), to a regular file only.
    named = tmp_path / "named-link"
    named.symlink_to(outside_dump)
    (result,) = ingest(engine, named).files
    assert counts(result) == ("ingested", NEW[1], 0, 15)  # 001 after 000, as in the samples
    (tmp_path / "to-zero").symlink_to("/dev/zero")
    (result,) = ingest(engine, tmp_path / "to-zero").files
    assert result.status == "failed" and "character device" in result.note


def test_an_unreadable_file_is_recorded_and_told_to_the_admin(engine, tmp_path):
    # /proc/self/mem is a regular file that cannot be read at its start (EIO), even by root.
    mem = Path("/proc/self/mem")
    good = write(tmp_path / "good.txt", sample(0))
    report = ingest(engine, mem, good)
    assert report.files[0].status == "failed" and report.files[0].note.startswith("cannot read: ")
    assert report.files[1].status == "ingested"
    assert str(mem) in failed_rows(engine)
    admin = Settings(admin="admin@example.org", watch_dir=tmp_path)
    with Store(engine).reading() as tx:
        alerts = pending_alerts(tx, admin, NOW)
    assert [subject for _, subject, _ in alerts] == [f"digestbot: a dump file failed: {mem}"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_a_file_without_read_permission_is_recorded(engine, tmp_path):
    locked = write(tmp_path / "locked.txt", sample(0))
    locked.chmod(0)
    (result,) = ingest(engine, locked).files
    assert result.status == "failed" and "Permission denied" in result.note
    assert str(locked) in failed_rows(engine)


def test_a_missing_path_is_reported_but_not_recorded(engine, tmp_path):
    (result,) = ingest(engine, tmp_path / "nope.txt").files
    assert result.status == "failed" and result.note.startswith("cannot read")
    assert dump_rows(engine) == []


def test_a_failure_repeated_by_every_pass_is_recorded_once_until_the_file_changes(engine, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    os.utime(fifo, (MTIME, MTIME))
    for minutes in (0, 1, 2):
        ingest(engine, fifo, now=NOW + timedelta(minutes=minutes))
    rows = dump_rows(engine)
    assert [(r.path, r.processed_at) for r in rows] == [(str(fifo), NOW + timedelta(minutes=2))]
    os.utime(fifo, (MTIME + 60, MTIME + 60))
    ingest(engine, fifo, now=NOW + timedelta(minutes=3))
    assert len(dump_rows(engine)) == 2  # another state of the file: the admin hears again


def test_reasons_quote_at_most_a_short_printable_excerpt(engine, tmp_path):
    escape = "\x1b[2J\x1b]0;pwned\x07"
    first_line = f"{escape}secret-token-{'x' * 5000}"
    noisy = write(tmp_path / "noisy.txt", first_line + "\n\nmore\n")
    metadata = write(tmp_path / "meta.txt", "Mar 1\n\nT\n\nA.\n\n  • 3 authors\n" + f"·\n{escape}{'y' * 300}\n")
    report = ingest(engine, noisy, metadata)
    refused, warned = report.files
    assert refused.status == "failed" and "not a Daily Papers dump" in refused.note
    assert_short_printable(refused.note)
    quoted = refused.note.split("found ", 1)[1]
    assert len(quoted) <= 62 and "\x1b" not in quoted and "secret-token" in quoted
    assert warned.status == "ingested" and len(warned.warnings) == 1
    assert_short_printable(warned.warnings[0])
    assert failed_rows(engine)[str(noisy)].error == refused.note


def test_a_file_name_with_control_characters_is_shown_escaped(engine, tmp_path):
    odd = write(tmp_path / "evil\n\x1b[31mname.txt", b"not a dump")
    (result,) = ingest(engine, odd).files
    assert result.status == "failed"
    assert result.path.isprintable() and "\\n" in result.path and "\\x1b" in result.path
    assert failed_rows(engine)[result.path].path == result.path


def test_excerpt():
    assert excerpt("short") == "'short'"
    assert excerpt("a\x00b\u202ec") == "'a?b?c'"
    cut = excerpt("z" * 500)
    assert len(cut) == 62 and cut.endswith("…'")


# ================================================================ size limits


def entries_text(count: int, *, start: int = 0, title_words: int = 6) -> str:
    return "".join(f"{' '.join(['Paper'] * title_words)} number {i}\n\nAbstract of paper {i}, about things.\n\n"
                   for i in range(start, start + count))


def test_long_title_and_abstract_are_cut_at_a_word_with_a_warning_naming_the_line(engine, tmp_path):
    long_title = " ".join(f"word{i}" for i in range(20_000))
    long_abstract = "Lorem ipsum dolor sit amet. " * 2_000
    text = f"Mar 1\n\nShort One\n\nFine.\n\n{long_title}\n\nIts abstract.\n\nThird Paper\n\n{long_abstract}\n\nLast\n\nEnd.\n"
    (result,) = ingest(engine, write(tmp_path / "long.txt", text)).files
    assert counts(result) == ("ingested", 4, 0, 0)
    stored = papers(engine)
    cut_title = next(t for t in stored if t.startswith("word0 "))
    assert len(cut_title) <= 1_000 and cut_title.endswith("…") and cut_title[:-1].split()[-1].startswith("word")
    assert long_title.startswith(cut_title[:-1])
    third = stored["Third Paper"].abstract
    assert len(third) <= 20_000 and third.endswith("…") and long_abstract.startswith(third[:-1])
    assert stored["Last"].abstract == "End."
    assert result.warnings == [
        f"line 7: title of {len(long_title):,} characters cut to 1,000",
        f"line 13: abstract of {len(long_abstract) - 1:,} characters cut to 20,000",  # its last space collapsed
    ]
    assert dump_rows(engine)[0].warnings == "\n".join(result.warnings)


def test_a_runaway_paragraph_is_cut_in_memory_and_the_rest_of_the_file_goes_in(engine, tmp_path):
    limits = DumpLimits(title_chars=100, abstract_chars=200)  # paragraphs over 66,336 bytes are cut
    runaway = "x" * 20_000_000  # one 20 MB line: a title with no end
    text = f"Mar 1\n\n{entries_text(3)}{runaway}\n\nIts abstract.\n\n{entries_text(3, start=3)}"
    path = write(tmp_path / "runaway.txt", text)
    tracemalloc.start()
    try:
        (result,) = ingest(engine, path, limits=limits).files
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counts(result) == ("ingested", 7, 0, 0)
    assert peak < 10_000_000  # the 20 MB paragraph was never held whole
    assert [w.split(":")[0] for w in result.warnings] == ["line 15", "line 15"]
    assert "paragraph longer than 66,336 bytes" in result.warnings[0]
    assert len([t for t in papers(engine) if t.startswith("xxx")][0]) == 100


def test_a_long_title_of_wide_characters_fits_the_key_index(engine, tmp_path):
    """1,000 CJK characters are 3,000 bytes: more than PostgreSQL's B-tree takes in uq_papers_title_key,
    which failed the whole file. Long keys end with a hash of the whole key instead."""
    rng = random.Random(1)
    wide = "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(1_000))
    other = wide[:-1] + ("一" if wide[-1] != "一" else "二")  # differs in its last character only
    text = f"Mar 1\n\n{wide}\n\nOne abstract.\n\n{other}\n\nAnother abstract.\n\nShort\n\nFine.\n"
    (result,) = ingest(engine, write(tmp_path / "wide.txt", text)).files
    assert counts(result) == ("ingested", 3, 0, 0)
    keys = {p.title: p.title_key for p in papers(engine).values()}
    assert len(keys[wide]) == MAX_KEY_CHARS and len(keys[wide].encode()) <= 2_000
    assert keys[wide] != keys[other] and keys[wide] == title_key(wide)
    assert keys["Short"] == "short"


def test_a_file_over_the_byte_limit_fails_unread_and_is_recorded(engine, tmp_path):
    big = write(tmp_path / "big.txt", b"not a dump at all, but too large to find out\n" * 5000)
    good = write(tmp_path / "good.txt", sample(0))
    report = ingest(engine, big, good, limits=DumpLimits(dump_bytes=len(sample(0))))
    refused, taken = report.files
    assert refused.status == "failed"
    assert refused.note == (f"too large: {big.stat().st_size:,} bytes, more than DIGESTBOT_MAX_DUMP_BYTES "
                             f"({len(sample(0)):,}): not read")
    assert taken.status == "ingested"
    row = failed_rows(engine)[str(big)]
    assert row.size == big.stat().st_size
    assert row.sha256 != hashlib.sha256(big.read_bytes()).hexdigest()  # it was not read


def test_a_giant_sparse_file_is_refused_at_once_and_its_size_recorded_as_the_column_allows(engine, tmp_path):
    giant = tmp_path / "giant.txt"
    with giant.open("wb") as f:
        f.truncate(3 * 2**30)  # 3 GiB of nothing, on no disk: reading it would take a while
    os.utime(giant, (MTIME, MTIME))
    (result,) = ingest(engine, giant).files
    assert result.note == "too large: 3,221,225,472 bytes, more than DIGESTBOT_MAX_DUMP_BYTES (200,000,000): not read"
    assert failed_rows(engine)[str(giant)].size == 2**31 - 1  # a 32-bit column on PostgreSQL


def test_warnings_are_capped(engine, tmp_path):
    text = "Mar 1\n\nT\n\nA.\n\n  • 3 authors\n" + "".join(f"odd metadata line {i}\n" for i in range(500))
    (result,) = ingest(engine, write(tmp_path / "odd.txt", text)).files
    assert result.status == "ingested" and len(result.warnings) == 101
    assert result.warnings[-1] == "... and 400 more warning(s)"


def test_shorten():
    assert shorten("short", 10) == "short"
    assert shorten("alpha beta gamma delta", 12) == "alpha beta…"
    assert shorten("a" * 30, 10) == "a" * 9 + "…"


# ---- streaming: the same dump in any blocks -------------------------------------------------------


def read_in_blocks(data: bytes, sizes: list[int], reference: date, limits: DumpLimits = DumpLimits()):
    reader = DumpReader(reference, limits)
    entries, position, turn = [], 0, 0
    while position < len(data):
        size = sizes[turn % len(sizes)]
        entries += reader.feed(data[position:position + size])
        position, turn = position + size, turn + 1
    entries += reader.close()
    return reader.snapshot_date, entries, reader.warnings


def variants() -> list[bytes]:
    text = (SAMPLES / NAMES[4]).read_text(encoding="utf-8")
    return [text.encode(), text.replace("\n", "\r\n").encode(), text.replace("\n", "\r").encode(),
            text.encode("utf-16"), b"\xef\xbb\xbf" + text.replace("\n\n", "\n   \n").encode()]


@pytest.mark.parametrize("variant", range(5))
@given(sizes=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=5))
@settings(max_examples=25, deadline=None)
def test_any_blocks_parse_as_the_whole(variant, sizes):
    data = variants()[variant]
    whole = parse_dump(data, date(2025, 12, 31))
    assert read_in_blocks(data, sizes, date(2025, 12, 31)) == (whole.snapshot_date, whole.entries, whole.warnings)


@given(st.binary(max_size=600), st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=4))
@settings(max_examples=200, deadline=None)
def test_any_blocks_fail_as_the_whole(data, sizes):
    data = b"Mar 1\n\nT\n\nA.\n\n" + data
    try:
        whole = parse_dump(data, date(2025, 5, 1))
    except DumpError as exc:
        with pytest.raises(DumpError) as info:
            read_in_blocks(data, sizes, date(2025, 5, 1))
        if b"\x00" not in data:  # a NUL is found before anything else only when all is read at once
            assert str(info.value) == str(exc)
    else:
        assert read_in_blocks(data, sizes, date(2025, 5, 1)) == (whole.snapshot_date, whole.entries, whole.warnings)


def test_a_bad_byte_deep_in_a_streamed_file_is_placed_exactly():
    data = sample(0).replace(b"\n", b"\r\n")
    position = len(data) - 1000
    data = data[:position] + b"\xff" + data[position + 1:]
    with pytest.raises(DumpError, match=f"byte 0xff at offset {position} "):
        read_in_blocks(data, [4096, 777], date(2025, 12, 31))


# ---- chunks: the same result whatever the chunk -----------------------------------------------------


def stored(engine) -> dict[str, tuple]:
    return {t: (p.abstract, p.authors_count, p.published, p.upvotes, p.first_seen, p.last_seen, p.updated_at)
            for t, p in papers(engine).items()}


@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_small_chunks_store_what_one_chunk_stores(engine, tmp_path, chunk):
    folder = copy_samples(tmp_path / "dumps", MTIME)
    in_chunks = [counts(f) for f in ingest(engine, folder, chunk_entries=chunk).files]
    small = stored(engine)
    rows = [(r.entries, r.new, r.updated, r.unchanged, r.warnings) for r in dump_rows(engine)]
    with engine.begin() as connection:
        for table in ("paper_sightings", "papers", "dump_files"):
            connection.exec_driver_sql(f"delete from {table}")
    whole = [counts(f) for f in ingest(engine, folder).files]
    assert in_chunks == whole
    assert stored(engine) == small
    assert [(r.entries, r.new, r.updated, r.unchanged, r.warnings) for r in dump_rows(engine)] == rows


def test_a_paper_listed_in_two_chunks_counts_once_and_its_later_metadata_wins(engine, tmp_path):
    first = "Mar 1\n\nRepeated Paper\n\nThe repeated abstract.\n\n" + entries_text(6)
    again = "Repeated Paper\n\nThe repeated abstract.\n\n  • 5 authors\n·\nFeb 3, 2025 9\n\n"
    (result,) = ingest(engine, write(tmp_path / "twice.txt", first + again), chunk_entries=3).files
    assert counts(result) == ("ingested", 7, 0, 0)
    assert dump_rows(engine)[0].entries == 8
    paper = papers(engine)["Repeated Paper"]
    assert (paper.authors_count, paper.published, paper.upvotes, paper.updated_at) == (5, date(2025, 2, 3), 9, None)

    # Known papers listed twice across chunks of a later dump: unchanged, then with new metadata.
    later = NOW + timedelta(days=1)
    renewed = "Mar 2\n\nRepeated Paper\n\nThe repeated abstract.\n\n" + entries_text(6) + again.replace(
        "Feb 3, 2025 9", "Feb 3, 2025 12")
    (result,) = ingest(engine, write(tmp_path / "renewed.txt", renewed), now=later, chunk_entries=3).files
    assert counts(result) == ("ingested", 0, 1, 6)
    paper = papers(engine)["Repeated Paper"]
    assert (paper.upvotes, paper.updated_at, paper.last_seen) == (12, later, later)


def test_a_failure_in_a_later_chunk_rolls_the_whole_file_back(engine, tmp_path):
    text = ("Mar 1\n\n" + entries_text(40)).encode() + b"Caf\xe9 Paper\n\nAn abstract.\n"
    (result,) = ingest(engine, write(tmp_path / "late.txt", text), chunk_entries=5).files
    assert result.status == "failed" and "not UTF-8" in result.note
    assert paper_count(engine) == 0
    assert [(r.status, r.entries) for r in dump_rows(engine)] == [("failed", 0)]


def test_ingest_memory_is_bounded_by_the_chunk_not_the_file(tmp_path, sqlite_url):
    """The file is never held whole: ten times the entries take a fraction of the file's size. (The
    ids and keys of the papers a file inserts are kept for it, up to KNOWN_LIMIT: a little grows.)"""
    from digestbot.store import connect, migrate

    abstract = "A sentence of an abstract about learning things, as long as a real one. " * 25
    peaks, sizes = [], []
    for count in (2_000, 20_000):
        engine = connect(sqlite_url.replace("digestbot.db", f"{count}.db"))
        migrate(engine)
        body = "".join(f"Paper number {i}\n\n{abstract}{i}.\n\n" for i in range(count))
        path = write(tmp_path / f"{count}.txt", "Mar 1\n\n" + body)
        sizes.append(path.stat().st_size)
        tracemalloc.start()
        try:
            (result,) = ingest(engine, path, chunk_entries=500, matcher=None).files
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
            engine.dispose()
        assert counts(result) == ("ingested", count, 0, 0)
    assert peaks[1] < sizes[1] / 2, (peaks, sizes)  # before: the bytes, the text and every entry at once
    assert peaks[1] < 3 * peaks[0], peaks


# ================================================================ settling


def future_file(tmp_path: Path, name: str = "future.txt", ahead: float = 3600) -> Path:
    return write(tmp_path / name, sample(0), mtime=NOW.timestamp() + ahead)


def test_settled():
    look = Look(10, int((NOW.timestamp() + 3600) * 1e9), NOW)  # mtime an hour ahead
    assert settled(look, NOW, 0)
    assert not settled(look, NOW + timedelta(seconds=4), 5)
    assert settled(look, NOW + timedelta(seconds=5), 5)
    recent = Look(10, int((NOW.timestamp() - 2) * 1e9), NOW)
    assert not settled(recent, NOW, 5) and settled(recent, NOW + timedelta(seconds=3), 5)


def test_a_future_mtime_with_settle_zero_is_read_at_once(engine, tmp_path):
    (result,) = ingest(engine, future_file(tmp_path), settle=0).files
    assert counts(result) == ("ingested", NEW[0], 0, 0)


def test_a_future_mtime_settles_in_the_watcher_once_unchanged_for_the_settle_time(store, tmp_path):
    folder = tmp_path / "watch"
    path = future_file(folder)
    watcher = Watcher(folder, settle_seconds=5, matcher=SubscriptionMatcher())
    (result,) = watcher.scan(store, NOW).files
    assert result.status == "deferred" and "in the future" in result.note
    (result,) = watcher.scan(store, NOW + timedelta(seconds=3)).files
    assert result.status == "deferred"
    # It changes: the settle time starts again from when that was seen.
    write(path, sample(0) + b"\n", mtime=NOW.timestamp() + 7200)
    (result,) = watcher.scan(store, NOW + timedelta(seconds=4)).files
    assert result.status == "deferred"
    (result,) = watcher.scan(store, NOW + timedelta(seconds=8)).files
    assert result.status == "deferred"
    (result,) = watcher.scan(store, NOW + timedelta(seconds=9)).files
    assert counts(result) == ("ingested", NEW[0], 0, 0)
    assert watcher.scan(store, NOW + timedelta(seconds=60)).files == []


def test_a_one_shot_run_looks_twice_at_a_future_mtime(engine, tmp_path):
    path = future_file(tmp_path)
    waits = []
    (result,) = ingest(engine, path, settle=5, sleep=waits.append).files
    assert waits == [5] and counts(result) == ("ingested", NEW[0], 0, 0)
    assert dump_rows(engine)[0].processed_at == NOW + timedelta(seconds=5)

    # A writer still at work during the wait: deferred, not read half-written.
    growing = future_file(tmp_path, "growing.txt")

    def writer_meanwhile(seconds: float) -> None:
        waits.append(seconds)
        write(growing, sample(1) + b"\n\nmore", mtime=NOW.timestamp() + 3700)

    (result,) = ingest(engine, growing, settle=5, sleep=writer_meanwhile).files
    assert waits == [5, 5] and result.status == "deferred"


def test_a_one_shot_run_does_not_wait_for_a_recent_mtime_in_the_past(engine, tmp_path):
    path = write(tmp_path / "fresh.txt", sample(0), mtime=NOW.timestamp() - 1)
    waits = []
    (result,) = ingest(engine, path, settle=5, sleep=waits.append).files
    assert waits == [] and result.status == "deferred" and "still being written" in result.note


def test_run_once_ingests_a_future_mtime(engine, tmp_path):
    settings = Settings(watch_dir=tmp_path / "watch", outbox_dir=tmp_path / "outbox", settle_seconds=2.0,
                        email_backend="file", slack_backend="file", secret_key="test", fetch_minutes=0)
    future_file(settings.watch_dir)
    waits = []
    Bot(bootstrap(settings, engine=engine, clock=lambda: NOW)).run_once(sleep=waits.append)
    assert waits == [2.0]
    assert [(r.status, r.new) for r in dump_rows(engine)] == [("ingested", NEW[0])]


# ================================================================ the command line and settings


def test_cli_refuses_a_fifo_and_a_file_too_large_each_in_one_line(run, tmp_path):
    assert run("init").returncode == 0
    os.mkfifo(tmp_path / "pipe")
    big, ok = sample(1), sample(0)
    assert len(big) > len(ok)
    (tmp_path / "big.txt").write_bytes(big)
    (tmp_path / "ok.txt").write_bytes(ok)
    proc = run("ingest", "pipe", "big.txt", "ok.txt", DIGESTBOT_MAX_DUMP_BYTES=str(len(ok) + 10))
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert errors == [
        "error: pipe: a named pipe (FIFO), not a regular file: not read",
        f"error: big.txt: too large: {len(big):,} bytes, more than DIGESTBOT_MAX_DUMP_BYTES ({len(ok) + 10:,}): not read",
    ]
    status = run("status", "--json")
    failed = {f["path"]: f["error"] for f in as_json(status)["failed_files"]}
    assert set(failed) == {"pipe", "big.txt"}
    assert as_json(status)["papers"] == NEW[0]


def test_cli_waits_for_a_future_mtime_and_ingests(run, tmp_path):
    assert run("init").returncode == 0
    path = tmp_path / "future.txt"
    path.write_bytes(sample(0))
    ahead = datetime.now(UTC).timestamp() + 3600
    os.utime(path, (ahead, ahead))
    proc = run("ingest", "future.txt", "--json", DIGESTBOT_SETTLE_SECONDS="1")
    assert proc.returncode == 0, proc.stderr
    (entry,) = as_json(proc)["files"]
    assert (entry["status"], entry["new"]) == ("ingested", NEW[0])


@pytest.mark.parametrize("env, message", [
    ({"DIGESTBOT_MAX_TITLE_CHARS": "5"}, "DIGESTBOT_MAX_TITLE_CHARS and _MAX_ABSTRACT_CHARS must be at least 20"),
    ({"DIGESTBOT_MAX_ABSTRACT_CHARS": "-1"}, "DIGESTBOT_MAX_TITLE_CHARS and _MAX_ABSTRACT_CHARS must be at least 20"),
    ({"DIGESTBOT_MAX_DUMP_BYTES": "5000000000"}, "DIGESTBOT_MAX_DUMP_BYTES must be between 1000 and 2147483647"),
    ({"DIGESTBOT_MAX_DUMP_BYTES": "lots"}, "DIGESTBOT_MAX_DUMP_BYTES must be a int, not 'lots'"),
])
def test_limit_settings_are_validated(env, message):
    with pytest.raises(ConfigError) as info:
        Settings.load(env, dotenv_path=None)
    assert str(info.value) == message


def test_limit_settings_load():
    s = Settings.load({"DIGESTBOT_MAX_TITLE_CHARS": "300", "DIGESTBOT_MAX_ABSTRACT_CHARS": "5000",
                       "DIGESTBOT_MAX_DUMP_BYTES": "1000000"}, dotenv_path=None)
    assert (s.max_title_chars, s.max_abstract_chars, s.max_dump_bytes) == (300, 5000, 1_000_000)
    defaults = Settings.load({}, dotenv_path=None)
    assert (defaults.max_title_chars, defaults.max_abstract_chars, defaults.max_dump_bytes) == (1_000, 20_000, 200_000_000)
