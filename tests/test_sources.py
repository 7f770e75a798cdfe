"""The source readers: the Hugging Face daily-papers JSON and arXiv Atom (RSS feed and API), chosen by content."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from conftest import ROOT
from digestbot.core.arxiv_atom import AtomReader
from digestbot.core.dumps import DumpLimits, DumpReader
from digestbot.core.hf_daily import HFDailyReader
from digestbot.core.sources import arxiv_id, parse_source, reader_for, sniff
from digestbot.errors import DumpError

SOURCES = ROOT / "examples" / "sources"
HF_SAMPLE = SOURCES / "hf-daily_2025-12-03.json"
RSS_SAMPLE = SOURCES / "arxiv_cs.CL_2025-12-03.xml"
REFERENCE = date(2025, 12, 31)

API_FEED = """<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">
  <title type="html">ArXiv Query: search_query=cat:cs.LG</title>
  <id>http://arxiv.org/api/abc</id>
  <updated>2025-12-02T00:00:00-05:00</updated>
  <entry>
    <id>http://arxiv.org/abs/1512.08756v2</id>
    <updated>2016-01-05T10:00:00Z</updated>
    <published>2015-12-29T18:00:00Z</published>
    <title>Attention
      Is Everything</title>
    <summary>  We study attention.
    It works.  </summary>
    <author><name>Ada Lovelace</name><arxiv:affiliation>Analytical Engines</arxiv:affiliation></author>
    <author><name>Alan Turing</name></author>
    <link href="http://arxiv.org/abs/1512.08756v2" rel="alternate" type="text/html"/>
    <link title="pdf" href="http://arxiv.org/pdf/1512.08756v2" rel="related" type="application/pdf"/>
    <arxiv:primary_category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/>
  </entry>
  <entry>
    <id>http://arxiv.org/abs/hep-th/9901001v1</id>
    <published>1999-01-01T00:00:00Z</published>
    <title>An Old-Style Identifier</title>
    <summary>Strings.</summary>
    <author><name>Ed Witten</name></author>
  </entry>
</feed>
"""


def hf_item(pid: str = "2412.01234", title: str = "A Title", summary: str = "An abstract.", **paper) -> dict:
    return {"paper": {"id": pid, "title": title, "summary": summary, "authors": [{"_id": "1", "name": "Ann Lee"}],
                      "upvotes": 3, "publishedAt": "2024-12-02T10:00:00.000Z", **paper},
            "publishedAt": "2024-12-03T00:10:00.000Z", "title": title, "summary": summary, "numComments": 0}


def parse(data: bytes | str) -> list:
    return parse_source(data.encode() if isinstance(data, str) else data, REFERENCE).entries


def fed_in_blocks(reader, data: bytes, size: int) -> list:
    out = []
    for start in range(0, len(data), size):
        out += reader.feed(data[start:start + size])
    return out + reader.close()


# ---- choosing the reader ----

@pytest.mark.parametrize("head, kind", [
    (b"[{", "json"), (b"\xef\xbb\xbf \n[", "json"), (b"{\"error\": 1}", "json"), (b"  <?xml", "atom"),
    (b"<feed", "atom"), (b"new\n\nSubscribe", "text"), (b"Mar 13\n\nT", "text"),
])
def test_sniff_by_content(head: bytes, kind: str) -> None:
    assert sniff(head) == kind


def test_reader_for_each_format() -> None:
    assert isinstance(reader_for(HF_SAMPLE.read_bytes()[:100], REFERENCE), HFDailyReader)
    assert isinstance(reader_for(RSS_SAMPLE.read_bytes()[:100], REFERENCE), AtomReader)
    assert isinstance(reader_for(b"new\n\nMar 13\n", REFERENCE), DumpReader)


@pytest.mark.parametrize("text, expected", [
    ("2412.01234v2", "2412.01234"), ("2412.01234", "2412.01234"), ("oai:arXiv.org:2508.13426v1", "2508.13426"),
    ("http://arxiv.org/abs/1512.08756v2", "1512.08756"), ("hep-th/9901001v3", "hep-th/9901001"),
    ("math.GT/0309136", "math.GT/0309136"), ("not an id", None), ("", None), ("2412.01234v2 junk", None),
])
def test_arxiv_ids_lose_their_version(text: str, expected: str | None) -> None:
    assert arxiv_id(text) == expected


# ---- Hugging Face daily papers ----

def test_hf_sample() -> None:
    dump = parse_source(HF_SAMPLE.read_bytes(), REFERENCE)
    assert dump.snapshot_date == date(2025, 12, 3)
    assert [e.arxiv_id for e in dump.entries] == ["2012.07436", "2408.02657", "2512.01873", "2512.02210"]
    informer = dump.entries[0]
    assert informer.title.startswith("Informer: Beyond Efficient Transformer")
    assert informer.authors[:3] == ("Haoyi Zhou", "Shanghang Zhang", "Jieqi Peng")
    assert informer.authors_count == 7 and informer.upvotes == 41 and informer.published == date(2020, 12, 14)
    speech = dump.entries[2]
    assert speech.authors[0] == "Zoë Ångström"
    assert "\n" not in speech.abstract and "  " not in speech.abstract  # one line, as the text reader gives


def test_hf_in_tiny_blocks_equals_whole() -> None:
    data = HF_SAMPLE.read_bytes()
    whole = parse(data)
    for size in (1, 7, 100, 4096):
        assert fed_in_blocks(HFDailyReader(REFERENCE), data, size) == whole


def test_hf_upvotes_from_the_paper_and_bad_values_ignored() -> None:
    entries = parse(json.dumps([hf_item(upvotes=9), hf_item("2412.00002", "B", "b", upvotes="lots"),
                                hf_item("2412.00003", "C", "c", upvotes=True)]))
    assert [e.upvotes for e in entries] == [9, None, None]


@pytest.mark.parametrize("data, message", [
    ('[{"paper": {"id": "1", "title": "T", "summ', "truncated JSON"),
    ('[{"paper": {"id": "2412.01234", "title": "T", "summary": "S"}}', "truncated JSON"),
    ('{"error": "Invalid date"}', "a JSON object, not the daily-papers array"),
    ('[1, 2]', "not a daily-papers item"),
    ('[{"title": "T"}]', "not a daily-papers item"),
    ('[{"paper": {}}] x', "more after the array"),
    ("[]", "empty daily-papers answer"),
    ('[{"paper": {"id": "1", "title": "T", "summary": "S"}} {}]', "broken JSON after item 1"),
])
def test_hf_broken_answers_fail_in_one_line(data: str, message: str) -> None:
    with pytest.raises(DumpError, match=message) as caught:
        parse(data)
    assert "\n" not in str(caught.value)


def test_hf_oversized_item_refused_while_streaming() -> None:
    reader = HFDailyReader(REFERENCE, DumpLimits(title_chars=20, abstract_chars=20))  # paragraph_bytes ~ 65 KB
    with pytest.raises(DumpError, match="larger than"):
        reader.feed(b'[{"paper": {"id": "1", "title": "' + b"x" * 200_000)


def test_hf_item_without_text_is_skipped_with_a_warning() -> None:
    dump = parse_source(json.dumps([hf_item(), {"paper": {"id": "2412.9", "title": None}}]).encode(), REFERENCE)
    assert len(dump.entries) == 1 and any("item 2" in w for w in dump.warnings)


def test_hf_long_title_cut() -> None:
    dump = parse_source(json.dumps([hf_item(title="word " * 100)]).encode(), REFERENCE, DumpLimits(title_chars=50))
    assert len(dump.entries[0].title) <= 50 and "cut" in dump.warnings[0]


# ---- arXiv Atom ----

def test_rss_sample() -> None:
    dump = parse_source(RSS_SAMPLE.read_bytes(), REFERENCE)
    assert dump.snapshot_date == date(2025, 12, 3)
    assert [e.arxiv_id for e in dump.entries] == ["2512.01873", "2512.02544", "2512.02601"]
    first = dump.entries[0]
    assert first.abstract.startswith("We present a latent diffusion model")  # "arXiv:... Announce Type" dropped
    assert first.authors == ("Zoë Ångström", "Ravi Patel", "Mei Lin", "Tomás Herrera") and first.authors_count == 4
    assert dump.entries[1].authors[1] == "Daniel O'Connor"


def test_api_feed() -> None:
    dump = parse_source(API_FEED.encode(), REFERENCE)
    attention, old = dump.entries
    assert attention.arxiv_id == "1512.08756" and attention.title == "Attention Is Everything"
    assert attention.abstract == "We study attention. It works."
    assert attention.authors == ("Ada Lovelace", "Alan Turing") and attention.published == date(2015, 12, 29)
    assert old.arxiv_id == "hep-th/9901001"


def test_atom_in_tiny_blocks_equals_whole() -> None:
    for data in (RSS_SAMPLE.read_bytes(), API_FEED.encode()):
        whole = parse(data)
        for size in (1, 9, 333):
            assert fed_in_blocks(AtomReader(REFERENCE), data, size) == whole


def test_creators_with_and() -> None:
    feed = RSS_SAMPLE.read_text().replace("Priya Raman, Daniel O'Connor, Yuki Tanaka",
                                          "Priya Raman, Daniel O'Connor and Yuki Tanaka")
    assert parse(feed)[1].authors == ("Priya Raman", "Daniel O'Connor", "Yuki Tanaka")


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>&lol2;</title></entry></feed>"""
EXTERNAL = """<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<feed xmlns="http://www.w3.org/2005/Atom"><title>&x;</title></feed>"""


@pytest.mark.parametrize("data, message", [
    (BILLION_LAUGHS, "document type declaration"),
    (EXTERNAL, "document type declaration"),
    (RSS_SAMPLE.read_text()[:-200], "broken XML"),
    ("<html><body>Service unavailable</body></html>", "not an Atom feed"),
    ('<rss version="2.0"><channel/></rss>', "not an Atom feed"),
    ("<feed xmlns='http://www.w3.org/2005/Atom'><title>x</title></feed>", "without entries"),
    ("<feed xmlns='http://www.w3.org/2005/Atom'><title>x</title><entry>&undefined;</entry></feed>", "broken XML"),
    ("<feed xmlns='http://www.w3.org/2005/Atom'><title>Feed error for query: cs.XX</title>"
     "<entry><id>http://arxiv.org/api/errors#x</id><title>Error</title><summary>bad</summary></entry></feed>",
     "error feed"),
])
def test_atom_broken_or_hostile_fail_in_one_line(data: str, message: str) -> None:
    with pytest.raises(DumpError, match=message) as caught:
        parse(data)
    assert "\n" not in str(caught.value)


def test_doctype_split_across_blocks_still_refused() -> None:
    data = BILLION_LAUGHS.encode()
    at = data.index(b"<!DOCTYPE") + 4
    reader = AtomReader(REFERENCE)
    with pytest.raises(DumpError, match="document type"):
        reader.feed(data[:at])
        reader.feed(data[at:])


def test_hostile_text_is_kept_as_data() -> None:
    hostile = "<script>alert(1)</script> <!channel> {{ config }}"
    entries = parse(json.dumps([hf_item(title=hostile, authors=[{"name": hostile}])]))
    assert entries[0].title == hostile and entries[0].authors == (hostile,)


def test_atom_memory_is_bounded_by_entry(tmp_path: Path) -> None:
    """100,000 entries fed in 1 MB blocks: each block's entries come out as it is fed, none held."""
    entry = ("<entry><id>oai:arXiv.org:2501.{:05d}v1</id><title>Paper {}</title><summary>Words about it.</summary>"
             "<dc:creator>A B, C D</dc:creator></entry>\n")
    body = "".join(entry.format(i, i) for i in range(100_000)).encode()
    data = (b'<feed xmlns="http://www.w3.org/2005/Atom" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            b"<updated>2025-01-02T00:00:00Z</updated>" + body + b"</feed>")
    reader = AtomReader(REFERENCE)
    most = count = 0
    for start in range(0, len(data), 1 << 20):
        got = reader.feed(data[start:start + (1 << 20)])
        count += len(got)
        most = max(most, len(got))
        assert not reader._target.done  # nothing waits in the reader between blocks
    count += len(reader.close())
    assert count == 100_000 and most < 20_000
