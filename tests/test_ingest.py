"""Ingesting dump files into the store, on SQLite and PostgreSQL, and the read-only views of it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, func, select, text
from sqlalchemy.orm import Session

from conftest import NAMES, SAMPLES, copy_samples, write_dated
from digestbot.core.dumps import parse_dump
from digestbot.core.identity import abstract_fingerprint, title_key
from digestbot.services.ingest import ingest_paths
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.status import paper_json, recent_papers, store_status
from digestbot.store import DumpFile, Paper, Store, connect, migrate
from digestbot.store.papers import LOAD_ALL_RATIO, MIN_RUN, _runs

NOW = datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
MTIME = datetime(2025, 12, 1, 8, 0, tzinfo=UTC).timestamp()  # when the copies were "saved"
NEW = [70, 61, 102, 42, 67]
# 002 re-lists IA-RED^2 as IA-RED$^2$ (1 update); 004 adds metadata to 20 papers seen before.
UPDATED = [0, 0, 1, 0, 20]
UNCHANGED = [0, 15, 17, 32, 0]
ENTRIES = [70, 76, 120, 74, 87]
SNAPSHOTS = [date(2025, 3, 13), date(2025, 3, 11), date(2025, 4, 30), date(2025, 3, 11), date(2025, 11, 21)]
MAR3D = "MAR-3D: Progressive Masked Auto-regressor for High-Resolution 3D Generation"
SONGGEN = "SongGen: A Single Stage Auto-regressive Transformer for Text-to-Song Generation"


def write(path: Path, content: str | bytes, mtime: float = MTIME) -> Path:
    return write_dated(path, content, mtime)


@pytest.fixture
def dumps(tmp_path: Path) -> Path:
    """The five samples copied into a folder, saved a month before NOW."""
    return copy_samples(tmp_path / "dumps", MTIME)


def sample_text(index: int) -> str:
    return (SAMPLES / NAMES[index]).read_text(encoding="utf-8")


def ingest(engine, *paths: Path, now: datetime = NOW, settle: float = 0):
    return ingest_paths(Store(engine), list(paths), now=now, settle_seconds=settle, matcher=SubscriptionMatcher())


def all_papers(engine) -> dict[str, Paper]:
    with Session(engine) as session:
        return {p.title: p for p in session.scalars(select(Paper))}


def paper_count(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Paper))


def dump_rows(engine) -> list[DumpFile]:
    with Session(engine) as session:
        return list(session.scalars(select(DumpFile).order_by(DumpFile.id)))


def counts(result) -> tuple[str, int, int, int]:
    return result.status, result.new, result.updated, result.unchanged


# --- the samples --------------------------------------------------------------------------------


def test_ingest_samples_in_name_order(engine, dumps):
    seen = []
    report = ingest_paths(Store(engine), [dumps], now=NOW, settle_seconds=0, matcher=SubscriptionMatcher(),
                          on_file=seen.append)
    assert [Path(f.path).name for f in report.files] == NAMES
    assert seen == report.files
    assert [f.status for f in report.files] == ["ingested"] * 5
    assert [f.new for f in report.files] == NEW
    assert [f.updated for f in report.files] == UPDATED
    assert [f.unchanged for f in report.files] == UNCHANGED
    assert all(f.note is None and f.warnings == [] for f in report.files)
    assert (report.new, report.updated, report.unchanged, report.failed) == (342, 21, 64, [])
    assert paper_count(engine) == 342

    rows = dump_rows(engine)
    assert [Path(r.path).name for r in rows] == NAMES
    assert [r.status for r in rows] == ["ingested"] * 5
    assert [r.error for r in rows] == [None] * 5
    assert [r.entries for r in rows] == ENTRIES
    assert [r.snapshot_date for r in rows] == SNAPSHOTS
    assert [(r.new, r.updated, r.unchanged) for r in rows] == list(zip(NEW, UPDATED, UNCHANGED))
    assert [r.size for r in rows] == [(SAMPLES / n).stat().st_size for n in NAMES]
    assert all(r.processed_at == NOW for r in rows)

    papers = all_papers(engine)
    assert all(p.first_seen == NOW and p.last_seen == NOW for p in papers.values())
    assert all(p.first_seen.tzinfo is not None for p in papers.values())
    assert len({p.title_key for p in papers.values()}) == 342


def test_new_paper_ids_follow_the_dump_order(engine, dumps):
    report = ingest(engine, dumps / NAMES[0])
    ids = report.new_paper_ids
    assert len(ids) == 70 and ids == report.files[0].new_paper_ids
    entries = parse_dump((dumps / NAMES[0]).read_bytes(), date(2025, 12, 31)).entries
    with Session(engine) as session:
        titles = [session.get(Paper, pid).title for pid in ids]
        first_dump = {session.get(Paper, pid).first_dump_id for pid in ids}
    assert titles == [e.title for e in entries]
    assert first_dump == {dump_rows(engine)[0].id}


def test_metadata_of_the_samples_is_stored(engine, dumps):
    ingest(engine, dumps)
    papers = all_papers(engine)
    mar3d = papers[MAR3D]
    assert (mar3d.authors_count, mar3d.published, mar3d.upvotes) == (7, date(2025, 3, 26), None)
    song = papers[SONGGEN]
    assert (song.authors_count, song.published, song.upvotes) == (9, date(2025, 2, 18), 2)
    survey = papers["A Survey on Video Diffusion Models"]
    assert (survey.authors_count, survey.published, survey.upvotes) == (8, date(2023, 10, 16), None)
    with_meta = [p for p in papers.values() if p.authors_count is not None]
    assert len(with_meta) == 85


def test_the_twenty_updates_of_004_are_metadata_for_known_papers(engine, dumps):
    """Cross-check UPDATED[4] from the parser: papers of 004 listed before, now with metadata."""
    earlier = set()
    for name in NAMES[:4]:
        for e in parse_dump((dumps / name).read_bytes(), date(2025, 12, 31)).entries:
            earlier |= {title_key(e.title), abstract_fingerprint(e.abstract)}
    last = parse_dump((dumps / NAMES[4]).read_bytes(), date(2025, 12, 31)).entries
    known = [e for e in last if title_key(e.title) in earlier or abstract_fingerprint(e.abstract) in earlier]
    assert len(known) == 20 and all(e.authors_count is not None for e in known)
    ingest(engine, *(dumps / n for n in NAMES))
    papers = all_papers(engine)
    assert all(papers[e.title].authors_count == e.authors_count for e in known)


def test_ia_red_relisted_under_latex_title_is_one_paper(engine, dumps):
    times = [NOW + timedelta(hours=i) for i in range(3)]
    for name, when in zip(NAMES[:3], times):
        ingest(engine, dumps / name, now=when)
    ia_red = [p for p in all_papers(engine).values() if p.title.startswith("IA-RED")]
    assert len(ia_red) == 1
    (paper,) = ia_red
    assert paper.title == "IA-RED$^2$: Interpretability-Aware Redundancy Reduction for Vision Transformers"
    assert (paper.first_seen, paper.last_seen, paper.updated_at) == (times[0], times[2], times[2])


# --- re-ingesting -------------------------------------------------------------------------------


def test_reingesting_the_same_files_skips_them(engine, dumps):
    ingest(engine, dumps)
    later = NOW + timedelta(days=1)
    report = ingest(engine, dumps, now=later)
    assert [f.status for f in report.files] == ["skipped"] * 5
    assert (report.new, report.updated, report.unchanged) == (0, 0, 0)
    assert all("already ingested" in f.note for f in report.files)
    assert paper_count(engine) == 342
    assert len(dump_rows(engine)) == 5
    assert all(p.last_seen == NOW for p in all_papers(engine).values())  # skipped files touch nothing


def test_same_content_under_another_name_is_skipped(engine, dumps, tmp_path):
    ingest(engine, dumps / NAMES[0])
    copy = write(tmp_path / "renamed.txt", (dumps / NAMES[0]).read_bytes())
    (result,) = ingest(engine, copy).files
    assert result.status == "skipped"
    assert NAMES[0] in result.note
    assert len(dump_rows(engine)) == 1 and paper_count(engine) == 70


def _replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old[:60]
    return text.replace(old, new)


def test_changed_abstract_updates_that_paper_only(engine, dumps, tmp_path):
    ingest(engine, dumps / NAMES[0])
    entry = parse_dump((dumps / NAMES[0]).read_bytes(), date(2025, 12, 31)).entries[3]
    new_abstract = entry.abstract + " (Revised version: code and weights released.)"
    changed = write(tmp_path / "changed.txt", _replace_once(sample_text(0), entry.abstract, new_abstract))
    later = NOW + timedelta(days=1)

    (result,) = ingest(engine, changed, now=later).files
    assert counts(result) == ("ingested", 0, 1, 69)
    papers = all_papers(engine)
    assert len(papers) == 70
    paper = papers[entry.title]
    assert paper.abstract == new_abstract
    assert paper.abstract_fp == abstract_fingerprint(new_abstract)
    assert (paper.first_seen, paper.last_seen, paper.updated_at) == (NOW, later, later)
    others = [p for t, p in papers.items() if t != entry.title]
    assert all((p.first_seen, p.last_seen, p.updated_at) == (NOW, later, None) for p in others)


def test_recased_title_same_abstract_is_the_same_paper(engine, dumps, tmp_path):
    ingest(engine, dumps / NAMES[0])
    entry = parse_dump((dumps / NAMES[0]).read_bytes(), date(2025, 12, 31)).entries[5]
    recased = write(tmp_path / "recased.txt", _replace_once(sample_text(0), entry.title, entry.title.upper()))
    later = NOW + timedelta(hours=3)
    (result,) = ingest(engine, recased, now=later).files
    assert counts(result) == ("ingested", 0, 1, 69)
    papers = all_papers(engine)
    assert len(papers) == 70 and entry.title not in papers
    paper = papers[entry.title.upper()]
    assert paper.abstract == entry.abstract
    assert (paper.first_seen, paper.last_seen) == (NOW, later)


def test_retitled_paper_with_same_abstract_is_the_same_paper(engine, dumps, tmp_path):
    ingest(engine, dumps / NAMES[0])
    entry = parse_dump((dumps / NAMES[0]).read_bytes(), date(2025, 12, 31)).entries[7]
    new_title = "A Completely Different Title for the Camera-Ready Version"
    retitled = write(tmp_path / "retitled.txt", _replace_once(sample_text(0), entry.title, new_title))
    (result,) = ingest(engine, retitled, now=NOW + timedelta(hours=1)).files
    assert counts(result) == ("ingested", 0, 1, 69)
    papers = all_papers(engine)
    assert len(papers) == 70 and entry.title not in papers
    assert papers[new_title].title_key == title_key(new_title)
    assert papers[new_title].first_seen == NOW

    # And back again, under the old title (a trailing newline makes it another file).
    back = write(tmp_path / "back.txt", sample_text(0) + "\n")
    (result,) = ingest(engine, back, now=NOW + timedelta(hours=2)).files
    assert counts(result) == ("ingested", 0, 1, 69)
    assert paper_count(engine) == 70
    assert all_papers(engine)[entry.title].title_key == title_key(entry.title)


def test_missing_metadata_later_does_not_erase_it(engine, dumps, tmp_path):
    ingest(engine, dumps / NAMES[4])
    paragraphs = sample_text(4).split("\n\n")
    bare = "\n\n".join(p for p in paragraphs if not p.lstrip().startswith("•"))
    assert len(bare) < len(sample_text(4))
    stripped = write(tmp_path / "no-metadata.txt", bare)
    assert all(e.authors_count is None for e in parse_dump(bare, date(2025, 12, 31)).entries)

    (result,) = ingest(engine, stripped, now=NOW + timedelta(days=1)).files
    assert counts(result) == ("ingested", 0, 0, 87)
    papers = all_papers(engine)
    assert (papers[MAR3D].authors_count, papers[MAR3D].published) == (7, date(2025, 3, 26))
    assert (papers[SONGGEN].authors_count, papers[SONGGEN].upvotes) == (9, 2)
    assert sum(1 for p in papers.values() if p.authors_count is not None) == 85


def test_new_upvotes_update_the_paper_and_keep_the_rest(engine, dumps, tmp_path):
    ingest(engine, dumps / NAMES[4])
    text = sample_text(4)
    block = "  • 9 authors\n·\nFeb 18 2\n"
    assert text.count(block) == 1
    more = write(tmp_path / "more-upvotes.txt", text.replace(block, "·\nFeb 18 40\n"))
    (result,) = ingest(engine, more, now=NOW + timedelta(days=1)).files
    assert counts(result) == ("ingested", 0, 1, 86)
    song = all_papers(engine)[SONGGEN]
    assert (song.authors_count, song.published, song.upvotes) == (9, date(2025, 2, 18), 40)


def test_a_paper_listed_twice_in_one_dump_counts_once(engine, dumps, tmp_path):
    entry = parse_dump((dumps / NAMES[0]).read_bytes(), date(2025, 12, 31)).entries[0]
    twice = sample_text(0) + f"\n\n{entry.title}\n\n{entry.abstract}\n\n  • 5 authors\n·\nMar 1 4\n"
    (result,) = ingest(engine, write(tmp_path / "twice.txt", twice)).files
    assert counts(result) == ("ingested", 70, 0, 0)
    assert dump_rows(engine)[0].entries == 71
    paper = all_papers(engine)[entry.title]
    assert (paper.authors_count, paper.published, paper.upvotes) == (5, date(2025, 3, 1), 4)


# --- the two ways of finding the stored papers ----------------------------------------------------
# A dump's papers are found among all stored papers read at once while the store holds at most
# LOAD_ALL_RATIO papers per entry of the dump, else by IN (...) queries on their keys.


@contextmanager
def paper_selects(engine) -> Iterator[list[str]]:
    """The SELECT statements on the papers table that the engine runs meanwhile."""
    seen: list[str] = []

    def record(_connection, _cursor, statement, *_args) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM papers" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def read_everything(statements: list[str]) -> bool:
    return any(re.search(r"papers\.abstract\b", s) and "WHERE" not in s for s in statements)


def query_by_key(statements: list[str]) -> bool:
    """Whether papers were looked up by key (not merely the ids of new papers: no upvotes there)."""
    return any("papers.upvotes" in s and "WHERE papers.title_key IN (" in s for s in statements)


def fillers(count: int) -> str:
    """A dump of ``count`` papers unrelated to the samples: the store outgrows the next dump."""
    papers = "".join(f"Filler Paper Number {i}\n\nAn abstract about filler topic {i}.\n\n" for i in range(count))
    return "Mar 1\n\n" + papers


def edited_sample_0() -> str:
    """Sample 000 with one paper each re-abstracted, re-cased, re-titled, re-cased in its abstract
    only, and listed twice with metadata; and one new paper."""
    entries = parse_dump((SAMPLES / NAMES[0]).read_bytes(), date(2025, 12, 31)).entries
    text = sample_text(0)
    text = _replace_once(text, entries[3].abstract, entries[3].abstract + " Now with code.")
    text = _replace_once(text, entries[5].title, entries[5].title.upper())
    text = _replace_once(text, entries[7].title, "An Entirely New Title for Paper Seven")
    text = _replace_once(text, entries[9].abstract, entries[9].abstract.upper())
    return (text + f"\n\n{entries[0].title}\n\n{entries[0].abstract}\n\n  • 5 authors\n·\nMar 1 4\n"
            "\n\nA Brand New Paper\n\nIts abstract, never seen.\n")


def ingest_edited_sample_0(engine, folder: Path, filler_papers: int) -> tuple:
    """Sample 000, then ``filler_papers`` other papers, then edited_sample_0() a day later:
    its result, and the SELECT statements on papers that this last ingest ran."""
    ingest(engine, write(folder / "000.txt", sample_text(0)))
    if filler_papers:
        ingest(engine, write(folder / "filler.txt", fillers(filler_papers)))
    with paper_selects(engine) as statements:
        (result,) = ingest(engine, write(folder / "edited.txt", edited_sample_0()), now=NOW + timedelta(days=1)).files
    return result, statements


STORED = ("title_key", "abstract", "abstract_fp", "authors_count", "published", "upvotes",
          "first_seen", "last_seen", "updated_at")


def stored_rows(engine) -> dict[str, dict]:
    """Every stored paper but the fillers, by title: all but its id."""
    with Session(engine) as session:
        return {p.title: {name: getattr(p, name) for name in STORED}
                for p in session.scalars(select(Paper)) if not p.title.startswith("Filler")}


@pytest.mark.parametrize("filler_papers", [0, 100])
def test_edited_dump_against_a_small_and_a_large_store(engine, tmp_path, filler_papers):
    result, statements = ingest_edited_sample_0(engine, tmp_path, filler_papers)
    # 72 entries, against 70 stored papers (read at once) or 170 (looked up by key).
    assert 70 <= LOAD_ALL_RATIO * 72 < 170
    assert (read_everything(statements), query_by_key(statements)) == (filler_papers == 0, filler_papers > 0)
    assert counts(result) == ("ingested", 1, 4, 66)

    rows = stored_rows(engine)
    entries = parse_dump((SAMPLES / NAMES[0]).read_bytes(), date(2025, 12, 31)).entries
    later = NOW + timedelta(days=1)
    assert len(rows) == 71 and "An Entirely New Title for Paper Seven" in rows and entries[7].title not in rows
    assert rows[entries[5].title.upper()]["updated_at"] == later
    recased = rows[entries[9].title]  # a change of case in the abstract only is no change
    assert (recased["abstract"], recased["last_seen"], recased["updated_at"]) == (entries[9].abstract, later, None)
    twice = rows[entries[0].title]
    assert (twice["authors_count"], twice["published"], twice["upvotes"]) == (5, date(2025, 3, 1), 4)
    # The keys stored are those of the text stored: re-ingesting reuses them instead of computing them.
    assert all(row["title_key"] == title_key(title) and row["abstract_fp"] == abstract_fingerprint(row["abstract"])
               for title, row in rows.items())


def test_both_ways_of_finding_stored_papers_store_the_same_rows(engine, tmp_path):
    ingest_edited_sample_0(engine, tmp_path / "small", 0)
    small_store = stored_rows(engine)
    with engine.begin() as connection:
        for table in ("paper_sightings", "papers", "dump_files"):
            connection.execute(text(f"delete from {table}"))
    ingest_edited_sample_0(engine, tmp_path / "large", 100)
    assert stored_rows(engine) == small_store


@pytest.mark.parametrize("filler_papers", [0, 10])
def test_abstract_shared_by_two_stored_papers_matches_the_oldest(engine, tmp_path, filler_papers):
    ingest(engine, write(tmp_path / "1.txt", "Mar 1\n\nPaper A\n\nAbstract X.\n\nPaper B\n\nAbstract Y.\n"))
    if filler_papers:
        ingest(engine, write(tmp_path / "2.txt", fillers(filler_papers)))
    ingest(engine, write(tmp_path / "3.txt", "Mar 2\n\nPaper B\n\nAbstract X.\n"))  # B takes A's abstract
    with paper_selects(engine) as statements:
        (result,) = ingest(engine, write(tmp_path / "4.txt", "Mar 3\n\nPaper C\n\nAbstract X.\n")).files
    assert (read_everything(statements), query_by_key(statements)) == (filler_papers == 0, filler_papers > 0)
    assert counts(result) == ("ingested", 0, 1, 0)
    papers = all_papers(engine)
    assert "Paper A" not in papers and papers["Paper C"].id < papers["Paper B"].id
    assert papers["Paper B"].abstract == papers["Paper C"].abstract == "Abstract X."


def test_last_seen_moves_for_the_papers_listed_only(engine, dumps, tmp_path):
    """Papers listed again in runs of consecutive ids, long and short, and alone."""
    ingest(engine, dumps / NAMES[0])
    entries = parse_dump((dumps / NAMES[0]).read_bytes(), date(2025, 12, 31)).entries
    listed = [*range(0, 10), 20, 22, 24, *range(40, 40 + MIN_RUN), *range(50, 50 + MIN_RUN - 1), 69]
    text = "Mar 14\n\n" + "".join(f"{entries[i].title}\n\n{entries[i].abstract}\n\n" for i in listed)
    later = NOW + timedelta(days=1)
    (result,) = ingest(engine, write(tmp_path / "some.txt", text), now=later).files
    assert counts(result) == ("ingested", 0, 0, len(listed))
    papers = all_papers(engine)
    assert {t for t, p in papers.items() if p.last_seen == later} == {entries[i].title for i in listed}
    assert all(p.last_seen == NOW for t, p in papers.items() if t not in {entries[i].title for i in listed})


def test_runs_of_consecutive_ids():
    assert _runs([]) == ([], [])
    assert _runs(list(range(3, 3 + MIN_RUN))) == ([(3, 2 + MIN_RUN)], [])
    assert _runs(list(range(3, 2 + MIN_RUN))) == ([], list(range(3, 2 + MIN_RUN)))
    short = list(range(30, 30 + MIN_RUN - 1))
    ids = [1, 3, *range(5, 5 + MIN_RUN), 20, *short, *range(100, 100 + 2 * MIN_RUN)]
    assert _runs(ids) == ([(5, 4 + MIN_RUN), (100, 99 + 2 * MIN_RUN)], [1, 3, 20, *short])


# --- files not ready, and files that fail ---------------------------------------------------------


def test_file_still_being_written_is_deferred(engine, tmp_path):
    fresh = write(tmp_path / "fresh.txt", sample_text(0), mtime=NOW.timestamp() - 2)
    (result,) = ingest(engine, fresh, settle=5).files
    assert result.status == "deferred" and result.note
    assert (result.new, result.updated, result.unchanged) == (0, 0, 0)
    assert paper_count(engine) == 0 and dump_rows(engine) == []

    (result,) = ingest(engine, fresh, now=NOW + timedelta(seconds=10), settle=5).files
    assert counts(result) == ("ingested", 70, 0, 0)


def test_broken_files_fail_and_the_others_are_ingested(engine, dumps):
    readme = write(dumps / "001b_readme.txt", "# digestbot\n\nKeyword alerts for new papers.\n")
    latin1 = write(dumps / "003b_latin1.txt", sample_text(3).replace("Mar 11", "Mar 11\n\nCaf\u00e9 au lait")
                   .encode("latin-1", errors="replace"))
    empty = write(dumps / "004b_empty.txt", b"")
    report = ingest(engine, dumps)
    by_name = {Path(f.path).name: f for f in report.files}
    assert [Path(f.path).name for f in report.files] == sorted(NAMES + [readme.name, latin1.name, empty.name])
    assert [by_name[n].new for n in NAMES] == NEW
    assert all(by_name[n].status == "ingested" for n in NAMES)
    assert {f.path for f in report.failed} == {str(readme), str(latin1), str(empty)}
    assert "not a Daily Papers dump" in by_name[readme.name].note
    assert "not UTF-8" in by_name[latin1.name].note
    assert by_name[empty.name].note == "empty file"
    assert paper_count(engine) == 342

    failed = {r.path: r for r in dump_rows(engine) if r.status == "failed"}
    assert set(failed) == {str(readme), str(latin1), str(empty)}
    for path, row in failed.items():
        assert row.error == by_name[Path(path).name].note
        assert "\n" not in row.error
        assert row.processed_at == NOW
        assert row.size == Path(path).stat().st_size
        assert (row.snapshot_date, row.entries, row.new) == (None, 0, 0)


def test_reingest_after_a_failure(engine, tmp_path):
    target = write(tmp_path / "dump.txt", "Mar 13\n\nA title without its abstract\n")
    (result,) = ingest(engine, target).files
    assert result.status == "failed" and "no papers" in result.note
    # Retrying the same content fails again, still recorded once.
    (result,) = ingest(engine, target, now=NOW + timedelta(minutes=1)).files
    assert result.status == "failed"
    assert [(r.status, r.processed_at) for r in dump_rows(engine)] == [("failed", NOW + timedelta(minutes=1))]

    write(target, sample_text(0))  # the complete file arrives
    (result,) = ingest(engine, target, now=NOW + timedelta(minutes=2)).files
    assert counts(result) == ("ingested", 70, 0, 0)
    assert paper_count(engine) == 70
    ingested = [r for r in dump_rows(engine) if r.status == "ingested"]
    assert [(r.path, r.error, r.entries) for r in ingested] == [(str(target), None, 70)]


def test_missing_file_fails_without_a_record(engine, tmp_path):
    (result,) = ingest(engine, tmp_path / "nope.txt").files
    assert result.status == "failed"
    assert result.note.startswith("cannot read")
    assert dump_rows(engine) == []


def test_truncated_dump_is_ingested_with_its_warning_recorded(engine, tmp_path):
    text = sample_text(0).rstrip()
    cut = write(tmp_path / "cut.txt", text[:text.rindex("\n")])
    (result,) = ingest(engine, cut).files
    assert counts(result) == ("ingested", 69, 0, 0)
    assert len(result.warnings) == 1 and "truncated" in result.warnings[0]
    (row,) = dump_rows(engine)
    assert row.warnings == result.warnings[0]


@pytest.mark.postgres
def test_one_file_is_one_transaction(postgres_url, dumps):
    """A file whose ingest fails after it has written rows leaves no trace but its failure record.

    The failure is real: another session holds a row lock on the sighting of a paper the second file lists,
    and this engine's connections give up on locks after 300 ms (PostgreSQL's lock_timeout).
    SQLite cannot show this: digestbot takes its write lock with BEGIN IMMEDIATE before any write.
    """
    engine = connect(postgres_url + "%20-clock_timeout%3D300")
    migrate(engine)
    blocker = create_engine(postgres_url)
    try:
        ingest(engine, dumps / NAMES[0])
        assert paper_count(engine) == 70
        later = NOW + timedelta(days=1)
        with blocker.begin() as connection:
            # when a paper was last seen lives in paper_sightings: the file's last write
            locked = connection.execute(text("select paper_id from paper_sightings for update")).all()
            assert len(locked) == 70
            (result,) = ingest(engine, dumps / NAMES[1], now=later).files
        assert result.status == "failed"
        assert "lock" in result.note and "\n" not in result.note
        # The 61 new papers were inserted before the lock was hit, and rolled back with the rest.
        assert paper_count(engine) == 70
        assert all(p.last_seen == NOW for p in all_papers(engine).values())
        rows = dump_rows(engine)
        assert [(r.status, r.entries, r.snapshot_date) for r in rows] == [
            ("ingested", 70, date(2025, 3, 13)), ("failed", 0, None)]
        assert rows[1].error == result.note

        # The lock is gone: the same file now goes in, and its failure record becomes the success.
        (result,) = ingest(engine, dumps / NAMES[1], now=later).files
        assert counts(result) == ("ingested", 61, 0, 15)
        rows = dump_rows(engine)
        assert [(r.status, r.error, r.entries) for r in rows] == [("ingested", None, 70), ("ingested", None, 76)]
        assert paper_count(engine) == 131
    finally:
        blocker.dispose()
        engine.dispose()


# --- status and recent papers -------------------------------------------------------------------


def test_status_of_an_empty_store(engine):
    assert store_status(Store(engine), NOW) == {
        "papers": 0, "newest_paper_seen": None, "dump_files": {"ingested": 0, "failed": 0},
        "last_ingest": None, "failed_files": [], "jobs": {},
        "outbox": {"pending": 0, "sending": 0, "sent": 0, "failed": 0}, "next_digests": [],
    }
    assert recent_papers(Store(engine), 5) == []


def test_status_after_ingest_with_a_failure(engine, dumps):
    ingest(engine, *(dumps / n for n in NAMES[:4]))
    broken = write(dumps / "zz_broken.bin", b"\x00\x01\x02binary")
    later = NOW + timedelta(hours=1)
    ingest(engine, dumps / NAMES[4], broken, now=later)
    status = store_status(Store(engine), NOW)
    assert status["papers"] == 342
    assert status["newest_paper_seen"] == later.isoformat()
    assert status["dump_files"] == {"ingested": 5, "failed": 1}
    assert status["last_ingest"] == {
        "path": str(dumps / NAMES[4]), "at": later.isoformat(), "snapshot_date": "2025-11-21",
        "new": 67, "updated": 20, "unchanged": 0,
    }
    assert status["failed_files"] == [
        {"path": str(broken), "error": "binary file (NUL bytes), not a text dump", "at": later.isoformat()},
    ]


def test_failed_files_newest_first(engine, tmp_path):
    first = write(tmp_path / "a.txt", b"not a dump")
    second = write(tmp_path / "b.txt", b"\xff\xfe\x00")
    ingest(engine, second, now=NOW)
    ingest(engine, first, now=NOW + timedelta(minutes=5))
    failed = store_status(Store(engine), NOW)["failed_files"]
    assert [f["path"] for f in failed] == [str(first), str(second)]
    assert all(f["error"] for f in failed)


def test_recent_papers_newest_first(engine, dumps):
    ingest(engine, dumps / NAMES[0], now=NOW)
    later = NOW + timedelta(days=1)
    report = ingest(engine, dumps / NAMES[1], now=later)
    recent = recent_papers(Store(engine), 3)
    assert [p.id for p in recent] == report.new_paper_ids[::-1][:3]
    assert all(p.first_seen == later for p in recent)
    everything = recent_papers(Store(engine), 1000)
    assert len(everything) == 131
    assert [p.first_seen for p in everything] == [later] * 61 + [NOW] * 70
    assert [p.id for p in everything[:61]] == sorted((p.id for p in everything[:61]), reverse=True)

    entries = parse_dump((dumps / NAMES[1]).read_bytes(), date(2025, 12, 31)).entries
    assert recent[0].title == entries[-1].title  # the last new entry of the newest dump


def test_updated_paper_keeps_its_place_in_recent_papers(engine, dumps, tmp_path):
    ingest(engine, dumps / NAMES[0], now=NOW)
    ingest(engine, dumps / NAMES[1], now=NOW + timedelta(hours=1))
    entry = parse_dump((dumps / NAMES[0]).read_bytes(), date(2025, 12, 31)).entries[0]
    write(tmp_path / "x.txt", _replace_once(sample_text(0), entry.abstract, entry.abstract + " Updated."))
    ingest(engine, tmp_path / "x.txt", now=NOW + timedelta(hours=2))
    newest = recent_papers(Store(engine), 61)
    assert entry.title not in {p.title for p in newest}
    assert {p.first_seen for p in newest} == {NOW + timedelta(hours=1)}


def test_paper_json(engine, dumps):
    ingest(engine, dumps / NAMES[4])
    with Session(engine) as session:
        paper = session.scalars(select(Paper).where(Paper.title == SONGGEN)).one()
        as_json = paper_json(paper)
    assert set(as_json) == {"id", "title", "abstract", "authors_count", "upvotes", "published", "first_seen",
                            "last_seen", "arxiv_id", "authors", "url"}  # the last three: issue 12 (sources)
    assert as_json["title"] == SONGGEN
    # A paper known only from a text dump: no id, no names, the search link.
    assert (as_json["arxiv_id"], as_json["authors"]) == (None, [])
    assert as_json["url"].startswith("https://huggingface.co/papers?q=SongGen")
    assert (as_json["authors_count"], as_json["upvotes"], as_json["published"]) == (9, 2, "2025-02-18")
    assert as_json["first_seen"] == as_json["last_seen"] == "2025-12-31T12:00:00+00:00"
    assert re.fullmatch(r"\d+", str(as_json["id"]))
