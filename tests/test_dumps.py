"""The dump parser: the five real samples, real-world file variants, year inference, and properties."""

from __future__ import annotations

import codecs
from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SAMPLES
from digestbot.core.dump_format import decode, infer_year
from digestbot.core.dumps import parse_dump
from digestbot.errors import DumpError

# Late enough in 2025 that every year-less date of the samples lands in 2025.
REFERENCE = date(2025, 12, 31)
SAMPLE_FILES = sorted(SAMPLES.iterdir(), key=lambda p: p.name)
META_SAMPLE = SAMPLES / "004_7b5031a767afd3d4.txt"

HEADER = "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nbyAK and the research community\n\nMar 13\n\n"
TWO_ENTRIES = (
    "First Paper: A Study of Things\n\nWe study things. They are interesting.\n\n"
    "  • 3 authors\n·\nMar 2, 2024 5\n\n"
    "Second Paper\n\nAnother abstract here.\n"
)


def parse(data, reference: date = date(2025, 5, 1)):
    return parse_dump(data, reference)


def assert_two_entries(dump) -> None:
    assert dump.snapshot_date == date(2025, 3, 13)
    assert [(e.title, e.abstract) for e in dump.entries] == [
        ("First Paper: A Study of Things", "We study things. They are interesting."),
        ("Second Paper", "Another abstract here."),
    ]
    first, second = dump.entries
    assert (first.authors_count, first.published, first.upvotes) == (3, date(2024, 3, 2), 5)
    assert (second.authors_count, second.published, second.upvotes) == (None, None, None)
    assert dump.warnings == []


def dump_error(data, reference: date = date(2025, 5, 1)) -> str:
    with pytest.raises(DumpError) as info:
        parse_dump(data, reference)
    message = str(info.value)
    assert message and "\n" not in message and "\r" not in message
    return message


# --- the five real samples ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples():
    return {p.name: parse_dump(p.read_bytes(), REFERENCE) for p in SAMPLE_FILES}


def test_samples_entry_counts(samples):
    assert [p.name[:4] for p in SAMPLE_FILES] == ["000_", "001_", "002_", "003_", "004_"]
    assert [len(d.entries) for d in samples.values()] == [70, 76, 120, 74, 87]
    assert sum(len(d.entries) for d in samples.values()) == 427


def test_samples_have_no_warnings(samples):
    assert all(d.warnings == [] for d in samples.values())


def test_samples_metadata_only_in_004(samples):
    with_meta = {
        name: sum(1 for e in d.entries if (e.authors_count, e.published, e.upvotes) != (None, None, None))
        for name, d in samples.items()
    }
    assert sum(with_meta.values()) == 85
    assert with_meta[META_SAMPLE.name] == 85
    # The two entries of 004 without a metadata block.
    bare = [e.title for e in samples[META_SAMPLE.name].entries if e.authors_count is None]
    assert bare == [
        "STARFlow: Scaling Latent Normalizing Flows for High-resolution Image Synthesis",
        "Token-Shuffle: Towards High-Resolution Image Generation with Autoregressive Models",
    ]


def test_samples_snapshot_dates(samples):
    assert [d.snapshot_date for d in samples.values()] == [
        date(2025, 3, 13), date(2025, 3, 11), date(2025, 4, 30), date(2025, 3, 11), date(2025, 11, 21),
    ]


def test_snapshot_year_follows_the_reference():
    data = SAMPLE_FILES[0].read_bytes()  # "Mar 13"
    assert parse_dump(data, date(2026, 3, 13)).snapshot_date == date(2026, 3, 13)
    assert parse_dump(data, date(2026, 3, 12)).snapshot_date == date(2025, 3, 13)


def test_samples_titles_and_abstracts_are_clean(samples):
    for dump in samples.values():
        for e in dump.entries:
            assert e.title and e.abstract
            assert e.title == e.title.strip() and "  " not in e.title
            assert len(e.abstract) > len(e.title)
            assert e.line > 0


def _entry(samples, name, title):
    found = [e for e in samples[name].entries if e.title == title]
    assert len(found) == 1, title
    return found[0]


def test_sample_entry_authors_and_yearless_date(samples):
    e = _entry(samples, META_SAMPLE.name, "MAR-3D: Progressive Masked Auto-regressor for High-Resolution 3D Generation")
    # "  • 7 authors" / "·" / "Mar 26"
    assert (e.authors_count, e.published, e.upvotes) == (7, date(2025, 3, 26), None)
    assert e.abstract.startswith("Recent advances in auto-regressive transformers have revolutionized")
    assert e.line == 13
    assert samples[META_SAMPLE.name].entries[0] == e


def test_sample_entry_date_with_year(samples):
    e = _entry(samples, META_SAMPLE.name, "A Survey on Video Diffusion Models")  # "Oct 16, 2023"
    assert (e.authors_count, e.published, e.upvotes) == (8, date(2023, 10, 16), None)
    assert e.line == 21


def test_sample_entry_yearless_date_with_upvotes(samples):
    title = "SongGen: A Single Stage Auto-regressive Transformer for Text-to-Song Generation"
    e = _entry(samples, META_SAMPLE.name, title)  # "Feb 18 2"
    assert (e.authors_count, e.published, e.upvotes) == (9, date(2025, 2, 18), 2)


def test_sample_entry_date_with_year_and_upvotes(samples):
    e = _entry(samples, META_SAMPLE.name, "Learning Camera Movement Control from Real-World Drone Videos")
    assert (e.authors_count, e.published, e.upvotes) == (3, date(2024, 12, 12), 1)  # "Dec 12, 2024 1"
    e = _entry(samples, META_SAMPLE.name,
               "GiT: Towards Generalist Vision Transformer through Universal Language Interface")
    assert (e.authors_count, e.published, e.upvotes) == (8, date(2024, 3, 14), 11)  # "Mar 14, 2024 11"


def test_sample_entry_without_metadata_in_plain_dump(samples):
    e = samples["000_2d8e8d6e16378d7b.txt"].entries[0]
    assert e.title == "fMRI-3D: A Comprehensive Dataset for Enhancing fMRI-based 3D Reconstruction"
    assert e.abstract.startswith("Reconstructing 3D visuals from functional Magnetic Resonance Imaging (fMRI)")
    assert (e.authors_count, e.published, e.upvotes, e.line) == (None, None, None, 11)
    last = samples["000_2d8e8d6e16378d7b.txt"].entries[-1]
    assert last.title == "The Impact of Positional Encoding on Length Generalization in Transformers"


def test_samples_ia_red_titles_kept_verbatim(samples):
    titles = {e.title for d in samples.values() for e in d.entries if e.title.startswith("IA-RED")}
    assert titles == {
        "IA-RED^2: Interpretability-Aware Redundancy Reduction for Vision Transformers",
        "IA-RED$^2$: Interpretability-Aware Redundancy Reduction for Vision Transformers",
    }


# --- real-world variants of the same content -----------------------------------------------------


def test_plain_text_and_bytes_agree():
    assert_two_entries(parse(HEADER + TWO_ENTRIES))
    assert_two_entries(parse((HEADER + TWO_ENTRIES).encode()))


def test_crlf_line_endings():
    assert_two_entries(parse((HEADER + TWO_ENTRIES).replace("\n", "\r\n").encode()))


def test_cr_only_line_endings():
    assert_two_entries(parse((HEADER + TWO_ENTRIES).replace("\n", "\r").encode()))


def test_utf8_bom():
    assert_two_entries(parse(codecs.BOM_UTF8 + (HEADER + TWO_ENTRIES).encode()))
    assert_two_entries(parse("\ufeff" + HEADER + TWO_ENTRIES))


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_bom(encoding):
    text = HEADER + TWO_ENTRIES
    data = text.encode(encoding) if encoding == "utf-16" else ("\ufeff" + text).encode(encoding)
    assert data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    assert_two_entries(parse(data))


def test_utf16_crlf_sample_file():
    data = SAMPLE_FILES[0].read_text(encoding="utf-8").replace("\n", "\r\n").encode("utf-16")
    dump = parse_dump(data, REFERENCE)
    assert len(dump.entries) == 70
    assert dump.entries == parse_dump(SAMPLE_FILES[0].read_bytes(), REFERENCE).entries


def test_stray_spaces_and_tabs():
    lines = (HEADER + TWO_ENTRIES).split("\n")
    messy = "\n".join(f" \t{line}  \t" if i % 2 else f"{line}\t " for i, line in enumerate(lines))
    assert_two_entries(parse(messy.encode()))


def test_whole_sample_with_crlf_bom_and_spaces_is_unchanged():
    text = META_SAMPLE.read_text(encoding="utf-8")
    messy = "\ufeff" + "\r\n".join("  " + line + "\t" for line in text.split("\n"))
    assert parse_dump(messy.encode(), REFERENCE).entries == parse_dump(META_SAMPLE.read_bytes(), REFERENCE).entries


@pytest.mark.parametrize("blank", ["", " ", "\t", "\u00a0", "\u3000", "\x1c", " \u2002 "])
@pytest.mark.parametrize("count", [1, 2, 3])
def test_any_run_of_blank_lines_separates_paragraphs(blank, count):
    """Paragraphs end at empty lines and at lines of whitespace only, Unicode whitespace included,
    and the line numbers of titles count every line."""
    gap = "\n".join([blank] * count)
    text = "\n".join(["Mar 13", gap, "First Title", gap, "First abstract.", gap, "  • 3 authors", "·",
                      "Mar 2", gap, "Second", "Title", gap, "Second abstract", "wrapped.", gap, ""])
    dump = parse(text.encode())
    assert [(e.title, e.abstract, e.authors_count, e.line) for e in dump.entries] == [
        ("First Title", "First abstract.", 3, 1 + (count + 1)),
        ("Second Title", "Second abstract wrapped.", None, 1 + 4 * (count + 1) + 2),
    ]
    assert dump.warnings == []
    assert parse(text) == dump


def test_blank_line_of_whitespace_inside_a_block_of_lines():
    """A line of spaces between two lines ends the paragraph, as an empty line does."""
    text = "Mar 13\n\nTitle\n   \nAbstract.\n\t\n• 2 authors\n·\nMar 1\n \nNext\n\u00a0\nNext abstract.\n"
    dump = parse(text.encode())
    assert [(e.title, e.abstract, e.authors_count, e.line) for e in dump.entries] == [
        ("Title", "Abstract.", 2, 3), ("Next", "Next abstract.", None, 11),
    ]


def test_titles_ending_in_a_digit_or_a_superscript_are_not_metadata():
    text = (HEADER + "First\n\nAbs one.\n\nScaling Laws²\n\nAbs two.\n\n"
            "Llama 3\n\nAbs three.\n\n• 4 authors\n·\nMar 3 7\n")
    dump = parse(text)
    assert [(e.title, e.abstract, e.authors_count, e.upvotes) for e in dump.entries] == [
        ("First", "Abs one.", None, None), ("Scaling Laws²", "Abs two.", None, None),
        ("Llama 3", "Abs three.", 4, 7),
    ]


def test_wrapped_title_and_abstract_lines_are_joined():
    dump = parse(HEADER + "A Long Title\n  Split in Two\n\nAn abstract\nwrapped  over\nthree lines.\n")
    assert [(e.title, e.abstract) for e in dump.entries] == [
        ("A Long Title Split in Two", "An abstract wrapped over three lines.")
    ]


def test_snapshot_date_sharing_its_paragraph_with_the_first_title():
    dump = parse("new\nSubscribe\nMar 13\nFirst Title\n\nFirst abstract.\n")
    assert dump.snapshot_date == date(2025, 3, 13)
    assert [(e.title, e.abstract, e.line) for e in dump.entries] == [("First Title", "First abstract.", 4)]


def test_truncated_file_drops_the_last_title_with_a_warning():
    dump = parse(HEADER + TWO_ENTRIES + "\nThird Paper Cut Off\n")
    assert_two_entries_ignoring_warnings(dump)
    assert len(dump.warnings) == 1
    warning = dump.warnings[0]
    assert "title without an abstract" in warning and "line 23" in warning


def assert_two_entries_ignoring_warnings(dump) -> None:
    assert [e.title for e in dump.entries] == ["First Paper: A Study of Things", "Second Paper"]


def test_truncated_sample_keeps_the_complete_entries():
    text = SAMPLE_FILES[0].read_text(encoding="utf-8").rstrip()
    cut = text[:text.rindex("\n")]  # the last abstract lost: the file ends with the last title
    dump = parse_dump(cut.encode(), REFERENCE)
    assert len(dump.entries) == 69
    assert len(dump.warnings) == 1 and "truncated" in dump.warnings[0]


def test_unrecognised_metadata_line_is_a_warning_not_an_error():
    dump = parse(HEADER + "T\n\nA.\n\n  • 4 authors\n·\nsomething odd\nMar 1 3\n")
    (entry,) = dump.entries
    assert (entry.authors_count, entry.published, entry.upvotes) == (4, date(2025, 3, 1), 3)
    assert len(dump.warnings) == 1 and "something odd" in dump.warnings[0]


# --- files that are not dumps -------------------------------------------------------------------


def test_empty_file():
    assert dump_error(b"") == "empty file"
    assert dump_error(b" \r\n\t\n") == "empty file"


def test_binary_file():
    message = dump_error(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    assert "binary" in message


def test_latin1_file():
    data = (HEADER + "Caf\u00e9 Transformers\n\nAn abstract.\n").encode("latin-1")
    message = dump_error(data)
    offset = data.index(b"\xe9")
    assert "UTF-8" in message and "0xe9" in message and f"offset {offset}" in message


def test_readme_is_not_a_dump():
    readme = b"# digestbot\n\nKeyword alerts for new papers.\n\n## Install\n\n    make demo\n"
    message = dump_error(readme)
    assert message.startswith("not a Daily Papers dump")
    assert "line 1" in message and "# digestbot" in message and "Mar 13" in message


def test_chrome_only_is_not_a_dump():
    message = dump_error(b"new\n\nSubscribe\n\nDaily Papers\n")
    assert "no snapshot date" in message


def test_header_without_papers_is_not_a_dump():
    assert "no papers" in dump_error(HEADER.encode())


def test_long_garbage_line_is_cut_in_the_message():
    message = dump_error(("x" * 5000 + "\n").encode())
    assert len(message) < 200


def test_broken_utf16():
    message = dump_error(codecs.BOM_UTF16_LE + "Mar 13\n".encode("utf-16-le") + b"\x00")
    assert "UTF-16" in message


@pytest.mark.parametrize("data", [b"\x00", codecs.BOM_UTF8, b"\xff\xfe", b"Mar 13\n\n\xff\n", b"\xc3"])
def test_odd_inputs_raise_dump_error(data):
    dump_error(data)


def test_decode():
    assert decode(b"Mar 13\n") == "Mar 13\n"
    assert decode(codecs.BOM_UTF8 + "é".encode()) == "é"
    assert decode("é\r\n".encode("utf-16")) == "é\r\n"
    with pytest.raises(DumpError, match="not UTF-8"):
        decode(b"caf\xe9")


# --- year inference -----------------------------------------------------------------------------


@pytest.mark.parametrize(("month", "day", "not_after", "expected"), [
    (3, 13, date(2025, 3, 13), date(2025, 3, 13)),   # on the day
    (3, 14, date(2025, 3, 13), date(2024, 3, 14)),   # one day later: last year
    (3, 12, date(2025, 3, 13), date(2025, 3, 12)),
    (12, 20, date(2025, 1, 5), date(2024, 12, 20)),  # a December date in a January snapshot
    (12, 31, date(2025, 12, 31), date(2025, 12, 31)),
    (1, 1, date(2025, 1, 1), date(2025, 1, 1)),
    (2, 29, date(2025, 3, 1), date(2024, 2, 29)),    # the last Feb 29
    (2, 29, date(2024, 2, 29), date(2024, 2, 29)),
    (2, 29, date(2024, 2, 28), date(2020, 2, 29)),
    (2, 29, date(2104, 2, 28), date(2096, 2, 29)),   # 2100 is not a leap year
    (2, 28, date(2024, 2, 29), date(2024, 2, 28)),
])
def test_infer_year(month, day, not_after, expected):
    assert infer_year(month, day, not_after) == expected


@pytest.mark.parametrize(("month", "day"), [(2, 30), (4, 31), (13, 1), (0, 5), (1, 0)])
def test_infer_year_impossible_dates(month, day):
    with pytest.raises(DumpError):
        infer_year(month, day, date(2025, 6, 1))


@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)), st.integers(0, 365 * 9))
@settings(max_examples=150, deadline=None)
def test_infer_year_is_the_closest_date_on_or_before(not_after, back):
    target = not_after - timedelta(days=back)
    got = infer_year(target.month, target.day, not_after)
    assert got.month == target.month and got.day == target.day
    assert got <= not_after
    assert target <= got
    # and no later year has this month and day on or before not_after
    later = [date(y, target.month, target.day) for y in range(got.year + 1, not_after.year + 1)
             if not (target.month == 2 and target.day == 29 and not _leap(y))]
    assert all(d > not_after for d in later)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def test_year_inference_in_a_dump():
    text = "Jan 3\n\nT1\n\nA1.\n\n• 2 authors\n·\nDec 30\n\nT2\n\nA2.\n\n• 1 author\n·\nFeb 29 7\n"
    dump = parse_dump(text, date(2025, 1, 10))
    assert dump.snapshot_date == date(2025, 1, 3)
    assert [(e.authors_count, e.published, e.upvotes) for e in dump.entries] == [
        (2, date(2024, 12, 30), None),
        (1, date(2024, 2, 29), 7),
    ]


def test_snapshot_dec_31_read_on_jan_1():
    dump = parse_dump("Dec 31\n\nT\n\nA.\n", date(2025, 1, 1))
    assert dump.snapshot_date == date(2024, 12, 31)


# --- known misreading (see report): a title that looks like "Word N" ------------------------------


def test_title_shaped_like_word_and_number_is_not_metadata():
    """A paper titled like "Qwen 3" follows an entry: it is a title, not a date line."""
    text = HEADER + "First Paper\n\nAbs one.\n\n  • 3 authors\n·\nMar 2\n\nQwen 3\n\nAbstract of qwen.\n\nThird\n\nAbs three.\n"
    dump = parse(text)
    assert [(e.title, e.abstract) for e in dump.entries] == [
        ("First Paper", "Abs one."), ("Qwen 3", "Abstract of qwen."), ("Third", "Abs three."),
    ]
    assert dump.warnings == []


# --- properties ---------------------------------------------------------------------------------

MONTH_ABBR = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
MONTH_FULL = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
              "October", "November", "December"]
# No digits (so no line can read as a date), none starting with a bullet, none a lone separator.
WORDS = [
    "Transformers", "Attention", "is", "All", "You", "Need:", "Scaling", "Laws", "for", "Neural", "Language",
    "Models", "Diffusion", "Vision", "a", "the", "of", "Efficient", "Self-Supervised", "Learning", "(ViT)",
    "Schrödinger", "naïve", "Bayes", "Über", "—", "large-scale", "Reasoning?", "Agents,", "and", "Tokens.",
    "Mixture-of-Experts", "LLM", "RLHF", "Graph", "Networks;", "über-fast", "日本語", "Ωmega", "new",
    "Subscribe", "Daily", "Papers", "authors", "May", "March", "Dec.", "Feb", "ﬁne-tuning",
]
words = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12)
# Metadata: (authors or None, published date or None, upvotes or None, published written with its year)
metadata = st.one_of(
    st.none(),
    st.tuples(
        st.one_of(st.none(), st.integers(1, 999_999)),
        st.one_of(st.none(), st.integers(0, 364)),  # days before the snapshot
        st.one_of(st.none(), st.integers(0, 9_999_999)),
        st.booleans(),
        st.one_of(st.none(), st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31))),
    ),
)
entry = st.tuples(words, st.lists(words, min_size=1, max_size=4), st.integers(1, 2), metadata)


def _month(d: date, full: bool) -> str:
    return (MONTH_FULL if full else MONTH_ABBR)[d.month - 1]


@st.composite
def dumps(draw):
    snapshot = draw(st.dates(min_value=date(1990, 1, 1), max_value=date(2090, 12, 31)))
    reference = snapshot + timedelta(days=draw(st.integers(0, 364)))
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    pad = st.sampled_from(["", " ", "  ", "\t", " \t "])
    lines: list[str] = []

    def emit(line: str) -> int:
        lines.append(draw(pad) + line + draw(pad))
        return len(lines)

    def gap() -> None:
        for _ in range(draw(st.integers(1, 3))):
            lines.append(draw(pad))

    chrome = ["new", "Get trending papers in your email inbox!", "Subscribe", "Daily Papers",
              "byAK and the research community"]
    for line in chrome:
        if draw(st.booleans()):
            emit(line)
            gap()
    emit(f"{_month(snapshot, draw(st.booleans()))} {snapshot.day}")
    gap()

    expected = []
    for title_words, abstract_lines, title_lines, meta in draw(st.lists(entry, min_size=1, max_size=8)):
        cut = len(title_words) // 2 if title_lines == 2 and len(title_words) > 1 else len(title_words)
        title_line = emit(" ".join(title_words[:cut]))  # a title may wrap onto a second line
        if cut < len(title_words):
            emit(" ".join(title_words[cut:]))
        gap()
        for abstract_words in abstract_lines:
            emit(" ".join(abstract_words))
        gap()
        authors = published = upvotes = None
        if meta is not None:
            authors, days_back, upvotes, full_month, dated = meta
            when = None
            if dated is not None:
                when, text = dated, f"{_month(dated, full_month)} {dated.day}, {dated.year}"
            elif days_back is not None:
                when = snapshot - timedelta(days=days_back)
                text = f"{_month(when, full_month)} {when.day}"
            if when is None:
                upvotes = None
            elif upvotes is not None:
                text += f" {upvotes}"
            if authors is not None:
                emit(f"• {authors} author{'' if authors == 1 else 's'}")
            emit("·")
            if when is not None:
                emit(text)
            published = when
            gap()
        expected.append((
            " ".join(title_words), " ".join(w for ws in abstract_lines for w in ws),
            authors, published, upvotes, title_line,
        ))
    truncated = draw(st.booleans())
    if truncated:
        emit(" ".join(draw(words)))
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    encoding = draw(st.sampled_from(["str", "utf-8", "utf-8-sig", "utf-16"]))
    data = text if encoding == "str" else text.encode(encoding)
    if encoding == "str" and draw(st.booleans()):
        data = "\ufeff" + data
    return data, reference, snapshot, expected, truncated


@given(dumps())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_generated_dumps_round_trip(case):
    data, reference, snapshot, expected, truncated = case
    dump = parse_dump(data, reference)
    assert dump.snapshot_date == snapshot
    got = [(e.title, e.abstract, e.authors_count, e.published, e.upvotes, e.line) for e in dump.entries]
    assert got == expected
    if truncated:
        assert len(dump.warnings) == 1 and "title without an abstract" in dump.warnings[0]
    else:
        assert dump.warnings == []


@given(st.binary(max_size=2000), st.dates())
@settings(max_examples=150, deadline=None)
def test_arbitrary_bytes_raise_only_dump_error(data, reference):
    try:
        dump = parse_dump(data, reference)
    except DumpError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert dump.entries


@given(st.text(max_size=2000), st.dates())
@settings(max_examples=150, deadline=None)
def test_arbitrary_text_raises_only_dump_error(text, reference):
    try:
        parse_dump(text, reference)
    except DumpError as exc:
        assert str(exc) and "\n" not in str(exc)


_dumpish_line = st.one_of(
    st.sampled_from(["new", "Subscribe", "Mar 13", "Feb 29", "Dec 31, 2024 3", "  • 7 authors", "·", "-", "•",
                     "• 0 authors", "Feb 30", "Jan 1, 0000", "Sep 9 9999999", "", " ", "\t", "\r"]),
    st.text(alphabet="JFMASONDaeuobcglpvytr •·-,0123456789\t", max_size=20),
)


@given(st.lists(_dumpish_line, max_size=60), st.dates(), st.sampled_from(["\n", "\r\n", "\r"]))
@settings(max_examples=150, deadline=None)
def test_dump_shaped_noise_raises_only_dump_error(lines, reference, newline):
    try:
        dump = parse_dump(newline.join(lines).encode(), reference)
    except DumpError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert all(e.title and e.abstract for e in dump.entries)
