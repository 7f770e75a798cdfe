"""The diff of a dump against the stored papers (core/diff.py), without a database.

The store's side is ``FakePapers``: stored papers in a dict, doing for the diff what the Papers
repository does (look papers up by key and fingerprint, insert, update), so that a dump can be
diffed chunk by chunk as ingest does it, both ways: with every stored paper held by the diff, and
looked up chunk by chunk.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digestbot.core.diff import (
    Candidate, DumpDiff, Outcomes, StoredPaper, attach, fold, identity, oldest_by_fingerprint,
)
from digestbot.core.dump_format import Entry
from digestbot.core.identity import abstract_fingerprint, title_key

NOW = datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
LATER = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def stored(pid: int, title: str, abstract: str, authors: int | None = None, upvotes: int | None = None,
           published: date | None = None) -> StoredPaper:
    return StoredPaper(pid, title, title_key(title), abstract_fingerprint(abstract), authors, upvotes, published,
                       abstract)


class FakePapers:
    """Stored papers in memory, and what ingest does with a diff's answer (see services/ingest.py)."""

    def __init__(self, papers: list[StoredPaper] = ()) -> None:
        self.papers = {p.id: p for p in papers}
        self.updated_at: dict[int, datetime] = {}
        self.next_id = max(self.papers, default=0) + 1

    def known_by_keys(self, keys: list[str]) -> dict[str, StoredPaper]:
        return {p.title_key: p for p in self.papers.values() if p.title_key in set(keys)}

    def known_by_fingerprints(self, fingerprints: list[str]) -> list[StoredPaper]:
        return [p for p in self.papers.values() if p.abstract_fp in set(fingerprints)]

    def known_by_arxiv_ids(self, ids: list[str]) -> dict[str, StoredPaper]:
        return {p.arxiv_id: p for p in self.papers.values() if p.arxiv_id in set(ids)}

    def ingest(self, entries: list[Entry], chunk: int, now: datetime, load_all: bool, limit: int = 100_000):
        """Diff and store ``entries`` a chunk at a time; the diff, for its counts."""
        diff = DumpDiff(list(self.papers.values()) if load_all else None, limit)
        for start in range(0, len(entries), chunk):
            candidates = diff.fold(entries[start:start + chunk])
            if diff.known is None:
                by_key = self.known_by_keys([c.key for c in candidates])
                missing = [c.fingerprint for c in candidates if c.key not in by_key]
                by_arxiv = self.known_by_arxiv_ids([c.entry.arxiv_id for c in candidates if c.entry.arxiv_id])
                attach(candidates, by_key, oldest_by_fingerprint(self.known_by_fingerprints(missing)), by_arxiv)
            changes = diff.compare(candidates, now)
            ids = []
            for c in changes.new:
                e = c.entry
                self.papers[self.next_id] = StoredPaper(
                    self.next_id, e.title, c.key, c.fingerprint, e.authors_count, e.upvotes, e.published, e.abstract,
                    e.arxiv_id, list(e.authors) if e.authors is not None else None)
                ids.append(self.next_id)
                self.next_id += 1
            for values in [values for _, values in changes.updated] + changes.relisted:
                row = self.papers[values["id"]]
                self.papers[row.id] = row._replace(**{k: v for k, v in values.items() if k in StoredPaper._fields})
                if "updated_at" in values:
                    self.updated_at[row.id] = values["updated_at"]
            diff.added(changes.new, ids)
        return diff

    def by_title(self) -> dict[str, StoredPaper]:
        return {p.title: p for p in self.papers.values()}


def counts(diff: DumpDiff) -> tuple[int, int, int]:
    return diff.new, diff.updated, diff.unchanged


BOTH_WAYS = pytest.mark.parametrize("load_all", [True, False], ids=["held", "looked-up"])


# ---- new, updated, unchanged ---------------------------------------------------------------------

@BOTH_WAYS
def test_new_updated_and_unchanged(load_all):
    store = FakePapers([stored(1, "Paper One", "Abstract one.", 3), stored(2, "Paper Two", "Abstract two.")])
    entries = [
        Entry("Paper One", "Abstract one."),  # as stored (its metadata omitted: kept)
        Entry("Paper Two", "Abstract two, revised."),  # a new abstract
        Entry("Paper Three", "Abstract three.", 4, date(2025, 3, 1), 7),
    ]
    diff = store.ingest(entries, chunk=10, now=NOW, load_all=load_all)
    assert counts(diff) == (1, 1, 1)
    papers = store.by_title()
    assert papers["Paper One"].authors_count == 3 and 1 not in store.updated_at
    assert papers["Paper Two"].abstract == "Abstract two, revised." and store.updated_at[2] == NOW
    assert papers["Paper Two"].abstract_fp == abstract_fingerprint("Abstract two, revised.")
    assert papers["Paper Three"] == StoredPaper(3, "Paper Three", title_key("Paper Three"),
                                                abstract_fingerprint("Abstract three."), 4, 7, date(2025, 3, 1),
                                                "Abstract three.")


def test_what_compare_says_of_each_paper():
    one, two = stored(1, "Paper One", "Abstract one."), stored(2, "Paper Two", "Abstract two.", 2)
    diff = DumpDiff([one, two])
    candidates = diff.fold([Entry("Paper One", "Abstract one."), Entry("PAPER TWO", "Abstract two."),
                            Entry("Paper Three", "Abstract three.")])
    changes = diff.compare(candidates, NOW)
    assert [c.entry.title for c in changes.new] == ["Paper Three"]
    assert changes.unchanged == [1] and changes.relisted == []
    # A title-only change (re-cased: the same key) rewrites the title, not the abstract.
    [(row, values)] = changes.updated
    assert row == two
    assert values == {"id": 2, "title": "PAPER TWO", "title_key": two.title_key, "abstract_fp": two.abstract_fp,
                      "authors_count": 2, "upvotes": None, "published": None, "updated_at": NOW}
    assert counts(diff) == (0, 1, 1)  # the new paper counts once stored
    diff.added(changes.new, [3])
    assert counts(diff) == (1, 1, 1)
    assert diff.outcomes[3] == Outcomes.NEW and diff.outcomes[2] == Outcomes.UPDATED
    assert diff.outcomes[1] == Outcomes.UNCHANGED and diff.outcomes[4] == 0


@BOTH_WAYS
def test_a_change_of_case_in_the_abstract_only_is_no_change(load_all):
    store = FakePapers([stored(1, "Paper One", "Abstract one.")])
    diff = store.ingest([Entry("Paper One", "ABSTRACT ONE.")], chunk=10, now=NOW, load_all=load_all)
    assert counts(diff) == (0, 0, 1) and store.papers[1].abstract == "Abstract one."


@BOTH_WAYS
def test_metadata_a_dump_omits_is_kept(load_all):
    store = FakePapers([stored(1, "Paper One", "Abstract one.", 5, 9, date(2025, 2, 1))])
    diff = store.ingest([Entry("Paper One, Retold", "Abstract one.", None, None, 12)], chunk=10, now=NOW,
                        load_all=load_all)
    assert counts(diff) == (0, 1, 0)
    assert store.papers[1][1:7] == ("Paper One, Retold", title_key("Paper One, Retold"),
                                    abstract_fingerprint("Abstract one."), 5, 12, date(2025, 2, 1))


# ---- identity ------------------------------------------------------------------------------------

@BOTH_WAYS
def test_a_retitled_paper_is_found_by_its_abstract_the_oldest_if_several(load_all):
    store = FakePapers([stored(4, "Paper B", "Shared abstract."), stored(2, "Paper A", "Shared abstract."),
                        stored(7, "Paper C", "Shared abstract.")])
    diff = store.ingest([Entry("Paper D", "Shared abstract.")], chunk=10, now=NOW, load_all=load_all)
    assert counts(diff) == (0, 1, 0)
    assert store.papers[2].title == "Paper D" and store.papers[2].title_key == title_key("Paper D")
    assert {store.papers[4].title, store.papers[7].title} == {"Paper B", "Paper C"}


@BOTH_WAYS
def test_the_title_key_comes_before_the_abstract(load_all):
    store = FakePapers([stored(1, "Paper A", "Abstract X."), stored(2, "Paper B", "Abstract Y.")])
    diff = store.ingest([Entry("paper a!", "Abstract Y.")], chunk=10, now=NOW, load_all=load_all)
    assert counts(diff) == (0, 1, 0)
    assert store.papers[1].title == "paper a!" and store.papers[1].abstract == "Abstract Y."
    assert store.papers[2].title == "Paper B"


def test_oldest_by_fingerprint():
    a, b, c = stored(5, "A", "X."), stored(3, "B", "X."), stored(4, "C", "Y.")
    assert oldest_by_fingerprint([a, b, c]) == {a.abstract_fp: b, c.abstract_fp: c}
    assert oldest_by_fingerprint([]) == {}


def test_identical_text_reuses_the_stored_keys():
    """The keys of a stored paper with the entry's title are taken, not computed again: shown with
    stored keys no computation would give."""
    held = StoredPaper(1, "Paper One", "stored key", "stored fingerprint", None, None, None, "Abstract one.")
    assert identity(Entry("Paper One", "Abstract one."), held) == ("stored key", "stored fingerprint")
    # Another abstract: the title's key is still the stored one, the fingerprint is computed.
    assert identity(Entry("Paper One", "Abstract two."), held) == ("stored key", abstract_fingerprint("Abstract two."))
    # A paper this file inserted is held without its abstract: its fingerprint is computed again.
    assert identity(Entry("Paper One", "Abstract one."), held._replace(abstract=None))[1] == abstract_fingerprint(
        "Abstract one.")
    assert identity(Entry("Paper One", "Abstract one."), None) == (title_key("Paper One"),
                                                                   abstract_fingerprint("Abstract one."))
    [candidate] = fold([Entry("Paper One", "Abstract one.")], {"Paper One": held})
    assert candidate == Candidate(Entry("Paper One", "Abstract one."), "stored key", "stored fingerprint", held)
    [candidate] = DumpDiff([held]).fold([Entry("Paper One", "Abstract one.")])
    assert candidate.stored is held and candidate.key == "stored key"


# ---- a paper listed twice --------------------------------------------------------------------------

def test_a_paper_listed_twice_in_a_chunk_is_folded_later_metadata_winning():
    entries = [
        Entry("Paper One", "Abstract one.", 3, None, 1, line=1),
        Entry("Paper Two", "Abstract two.", line=5),
        Entry("PAPER ONE", "Another abstract.", None, date(2025, 3, 1), 4, line=9),  # the same title key
        Entry("Paper One, Renamed", "ABSTRACT ONE.", 6, line=13),  # the same abstract
    ]
    one, two = fold(entries, {})
    assert one.entry == Entry("Paper One", "Abstract one.", 6, date(2025, 3, 1), 4, line=1)
    assert (one.key, one.fingerprint) == (title_key("Paper One"), abstract_fingerprint("Abstract one."))
    assert two.entry == entries[1]


@BOTH_WAYS
@pytest.mark.parametrize("chunk", [1, 2, 10])
def test_a_new_paper_listed_twice_counts_once_as_new(load_all, chunk):
    entries = [Entry("Paper One", "Abstract one.", 3), Entry("Paper Two", "Abstract two."),
               Entry("Paper One", "Abstract one, listed again.", None, date(2025, 3, 1), 4)]
    store = FakePapers()
    diff = store.ingest(entries, chunk=chunk, now=NOW, load_all=load_all)
    assert counts(diff) == (2, 0, 0)
    one = store.by_title()["Paper One"]
    assert (one.abstract, one.authors_count, one.published, one.upvotes) == ("Abstract one.", 3, date(2025, 3, 1), 4)
    assert store.updated_at == {}  # new, not updated


@BOTH_WAYS
@pytest.mark.parametrize("chunk", [1, 2, 10])
def test_an_unchanged_paper_listed_again_with_new_metadata_counts_once_as_updated(load_all, chunk):
    store = FakePapers([stored(1, "Paper One", "Abstract one.", 3), stored(2, "Paper Two", "Abstract two.")])
    entries = [Entry("Paper One", "Abstract one."), Entry("Paper Two", "Abstract two."),
               Entry("Paper One", "Abstract one.", 3, None, 8), Entry("Paper Two", "Abstract two.")]
    diff = store.ingest(entries, chunk=chunk, now=LATER, load_all=load_all)
    assert counts(diff) == (0, 1, 1)
    assert store.papers[1].upvotes == 8 and store.updated_at == {1: LATER}


@BOTH_WAYS
def test_two_listings_that_find_one_stored_paper_are_one_paper_listed_twice(load_all):
    """One by its title key, the other by its abstract: the first listing gives the text, and the
    stored fingerprint stays that of the stored abstract."""
    store = FakePapers([stored(1, "Paper B", "Abstract x.")])
    entries = [Entry("Paper B", "Abstract y."), Entry("Paper A", "Abstract x.", 4)]
    diff = store.ingest(entries, chunk=10, now=NOW, load_all=load_all)
    assert counts(diff) == (0, 1, 0)
    assert store.papers[1] == StoredPaper(1, "Paper B", title_key("Paper B"), abstract_fingerprint("Abstract y."),
                                          4, None, None, "Abstract y.")


def test_a_paper_listed_again_in_a_later_chunk_is_relisted_not_diffed_again():
    diff = DumpDiff([stored(1, "Paper One", "Abstract one.")])
    changes = diff.compare(diff.fold([Entry("Paper One", "Abstract one.")]), NOW)
    assert changes.unchanged == [1]
    again = diff.compare(diff.fold([Entry("Paper One", "A later abstract.", 2)]), NOW)
    assert again.updated == [] and again.unchanged == [] and again.new == []
    assert again.relisted == [{"id": 1, "authors_count": 2, "upvotes": None, "published": None, "updated_at": NOW}]
    assert counts(diff) == (0, 1, 0)
    nothing_more = diff.compare(diff.fold([Entry("Paper One", "Abstract one.", 2)]), NOW)
    assert nothing_more.relisted == [] and counts(diff) == (0, 1, 0)


# ---- holding the stored papers -------------------------------------------------------------------

def test_the_diff_lets_the_stored_papers_go_past_its_limit():
    diff = DumpDiff([stored(1, "Paper One", "Abstract one.")], limit=2)
    changes = diff.compare(diff.fold([Entry("Paper Two", "Abstract two.")]), NOW)
    diff.added(changes.new, [2])
    assert diff.known is not None and len(diff.known) == 2
    changes = diff.compare(diff.fold([Entry("Paper Three", "Abstract three.")]), NOW)
    diff.added(changes.new, [3])
    assert diff.known is None  # the caller looks the rest up
    [candidate] = diff.fold([Entry("Paper One", "Abstract one.")])
    assert candidate.stored is None


def test_outcomes_of_ids_past_the_dense_range():
    outcomes = Outcomes()
    outcomes.set([3, 1 << 30], Outcomes.UPDATED)
    assert (outcomes[3], outcomes[1 << 30], outcomes[2], outcomes[(1 << 30) + 1]) == (Outcomes.UPDATED,) * 2 + (0, 0)


# ---- the two ways agree --------------------------------------------------------------------------

TITLES = ["Paper A", "paper a", "Paper B", "Paper C", "PAPER C!", "Paper D"]
ABSTRACTS = ["Abstract x.", "ABSTRACT X.", "Abstract y.", "Abstract z."]
# A paper's arXiv id, when a source gives it: one per title key (an id is a property of the paper).
ARXIV_IDS = {title_key(t): f"2501.{i:05d}" for i, t in enumerate(TITLES)}


def _with_id(entry: Entry, given: bool) -> Entry:
    return entry._replace(arxiv_id=ARXIV_IDS[title_key(entry.title)]) if given else entry


entries_strategy = st.lists(
    st.builds(_with_id, st.builds(
        Entry, st.sampled_from(TITLES), st.sampled_from(ABSTRACTS), st.none() | st.integers(1, 3),
        st.none() | st.sampled_from([date(2025, 1, 1), date(2025, 2, 1)]), st.none() | st.integers(1, 3),
        st.just(0), st.none(), st.none() | st.sampled_from([("Ann Lee",), ("Ann Lee", "Bo Chen")])), st.booleans()),
    max_size=8)


@settings(max_examples=300, deadline=None)
@given(dumps=st.lists(st.tuples(entries_strategy, st.integers(1, 4), st.integers(1, 3)), min_size=1, max_size=4))
def test_holding_the_stored_papers_and_looking_them_up_agree(dumps):
    """Dumps diffed in chunks, with every stored paper held (and let go past a small limit) or
    looked up, store the same papers with the same counts."""
    held, looked_up = FakePapers(), FakePapers()
    for entries, chunk, limit in dumps:
        a = held.ingest(entries, chunk, NOW, load_all=True, limit=limit)
        b = looked_up.ingest(entries, chunk, NOW, load_all=False)
        assert counts(a) == counts(b)
        assert sum(counts(a)) <= len(entries)
    assert held.papers == looked_up.papers and held.updated_at == looked_up.updated_at
