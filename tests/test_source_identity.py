"""One paper across sources: a text dump (no id), the HF answer and an arXiv feed, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import NAMES, SAMPLES, ROOT, write_dated
from digestbot.core.schedule import Schedule
from digestbot.services.ingest import ingest_paths
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.subscriptions import subscribe
from digestbot.store import DumpFile, Paper, Store

NOW = datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
MTIME = datetime(2025, 12, 3, 8, 0, tzinfo=UTC).timestamp()
HF = ROOT / "examples" / "sources" / "hf-daily_2025-12-03.json"
RSS = ROOT / "examples" / "sources" / "arxiv_cs.CL_2025-12-03.xml"
INFORMER = "Informer: Beyond Efficient Transformer for Long Sequence Time-Series Forecasting"
SPEECH = "Latent Consistency Diffusion for One-Step Speech Enhancement"


def place(folder: Path, source: Path, name: str | None = None, content: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_dated(folder / (name or source.name), content if content is not None else source.read_bytes(), MTIME)


def ingest(store: Store, path: Path, now: datetime = NOW, matcher: SubscriptionMatcher | None = None):
    report = ingest_paths(store, [path], now=now, settle_seconds=0, matcher=matcher or SubscriptionMatcher())
    [result] = report.files
    assert result.status == "ingested", result.note
    return result


def papers(engine) -> dict[str, Paper]:
    with Session(engine) as session:
        return {p.title: p for p in session.scalars(select(Paper))}


def test_text_then_hf_then_arxiv_is_one_paper_each(engine, tmp_path: Path) -> None:
    store = Store(engine)
    text = ingest(store, place(tmp_path, SAMPLES / NAMES[0]))
    assert text.new == 70
    before = papers(engine)[INFORMER]
    assert before.arxiv_id is None and before.authors is None

    hf = ingest(store, place(tmp_path, HF))
    # Informer and Lumina-mGPT were known from the text dump: they gain ids, authors and upvotes.
    assert (hf.new, hf.updated, hf.unchanged) == (2, 2, 0)
    after = papers(engine)
    informer = after[INFORMER]
    assert informer.id == before.id and informer.first_seen == before.first_seen
    assert informer.arxiv_id == "2012.07436" and informer.upvotes == 41
    assert informer.authors[:2] == ["Haoyi Zhou", "Shanghang Zhang"] and informer.authors_count == 7
    assert informer.id not in hf.new_paper_ids  # never sent again as new

    rss = ingest(store, place(tmp_path, RSS))
    # The speech paper is in both answers: one paper, listed as stored.
    assert (rss.new, rss.updated, rss.unchanged) == (2, 0, 1)
    speech = papers(engine)[SPEECH]
    assert speech.arxiv_id == "2512.01873" and speech.upvotes == 57  # the feed has no upvotes: kept
    assert len(papers(engine)) == 74


def test_later_fetch_updates_upvotes_and_a_revised_abstract(engine, tmp_path: Path) -> None:
    store = Store(engine)
    ingest(store, place(tmp_path, HF))
    items = json.loads(HF.read_text())
    items[2]["paper"]["upvotes"] = 99
    items[3]["paper"]["summary"] = items[3]["paper"]["summary"] + " Code is released."
    items[3]["paper"]["title"] = "A Retitled Paper With Its Id"  # found by its id: keeps its stored title
    later = ingest(store, place(tmp_path, HF, "hf-daily_2025-12-03_later.json", json.dumps(items).encode()),
                   NOW + timedelta(hours=1))
    assert (later.new, later.updated, later.unchanged) == (0, 2, 2)
    stored = {p.arxiv_id: p for p in papers(engine).values()}
    assert stored["2512.01873"].upvotes == 99
    assert stored["2512.02210"].abstract.endswith("Code is released.")
    assert stored["2512.02210"].title.startswith("Quantization-Aware Distillation")
    assert stored["2512.02210"].updated_at == NOW + timedelta(hours=1)


def test_versions_are_one_paper(engine, tmp_path: Path) -> None:
    store = Store(engine)
    feed = RSS.read_text()
    ingest(store, place(tmp_path, RSS))
    revised = feed.replace("oai:arXiv.org:2512.02601v1", "oai:arXiv.org:2512.02601v3").replace(
        "How Tokenizers Shape Cross-Lingual Transfer", "How Tokenizers Shape Cross-Lingual Transfer (Revised)")
    again = ingest(store, place(tmp_path, RSS, "later.xml", revised.encode()))
    assert again.new == 0
    assert sum(1 for p in papers(engine).values() if p.arxiv_id == "2512.02601") == 1


def test_new_papers_from_sources_are_matched_once(engine, tmp_path: Path) -> None:
    store = Store(engine)
    subscribe(store, "ada@example.org", "diffusion", schedule=Schedule("instant"), now=NOW - timedelta(days=1))
    matcher = SubscriptionMatcher()
    hf = ingest(store, place(tmp_path, HF), matcher=matcher)
    assert hf.matches == 2  # the speech paper, and Lumina-mGPT (which compares "diffusion-based" methods)
    rss = ingest(store, place(tmp_path, RSS), NOW + timedelta(hours=1), matcher=matcher)
    assert rss.new == 2 and rss.matches == 0  # the speech paper again is no new match


def test_a_broken_source_file_fails_alone_naming_the_file(engine, tmp_path: Path) -> None:
    store = Store(engine)
    broken = place(tmp_path / "in", HF, "cut.json", HF.read_bytes()[:500])
    place(tmp_path / "in", RSS)
    report = ingest_paths(store, [tmp_path / "in"], now=NOW, settle_seconds=0, matcher=SubscriptionMatcher())
    by_name = {Path(f.path).name: f for f in report.files}
    assert by_name["arxiv_cs.CL_2025-12-03.xml"].status == "ingested"
    cut = by_name["cut.json"]
    assert cut.status == "failed" and "truncated JSON" in cut.note and "\n" not in cut.note
    with Session(engine) as session:
        failed = session.scalar(select(DumpFile).where(DumpFile.status == "failed"))
    assert failed.path == str(broken)
