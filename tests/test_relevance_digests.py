"""Relevance in digests (issue 13): "more like these" subscriptions, ranking by a reader's votes,
down votes dropped; on SQLite and PostgreSQL, through the real digest builder and templates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from digestbot.bootstrap import bootstrap
from digestbot.core.digest import PaperRef, SubscriptionRef, compose
from digestbot.core.query import parse_query
from digestbot.core.schedule import parse_schedule
from digestbot.errors import UsageError
from digestbot.services import votes
from digestbot.services.ingest import ingest_paths  # noqa: F401 - the same package the CLI uses
from digestbot.services.subscriptions import import_subscriptions, list_subscriptions, subscribe
from digestbot.settings import Settings
from digestbot.store import OutboxMessage, Store
from test_relevance import add_papers, topical_papers

T0 = datetime(2026, 12, 1, 7, tzinfo=UTC)
ARRIVED = T0 + timedelta(minutes=10)
DUE = datetime(2026, 12, 2, 8, tzinfo=UTC)
DAILY = parse_schedule("daily", "08:00", "mon", "UTC")


def others() -> list[tuple[str, str]]:
    """The topical papers but the example, which was stored a month earlier."""
    return [p for p in topical_papers() if p[0] != "speech paper 0"]


def parts(engine, tmp_path: Path):
    settings = Settings(outbox_dir=tmp_path / "outbox", secret_key="test-secret", base_url="https://digest.example.com",
                        from_email="digest@example.com")
    return bootstrap(settings, engine=engine)


def sent_text(store: Store) -> str:
    with store.reading() as tx:
        [row] = tx.session.query(OutboxMessage).all()
        return json.loads(row.payload)["text"]


def listed_titles(text: str) -> list[str]:
    import re
    return re.findall(r"^\d+\. (.+)$", text, flags=re.MULTILINE)


def test_a_like_subscription_sends_the_top_of_its_window_and_says_why(engine, tmp_path) -> None:
    store = Store(engine)
    add_papers(store, [("speech paper 0", "We study speech recognition with acoustic models.")], now=T0 - timedelta(days=30))
    sub, _ = subscribe(store, "ada@example.org", "", schedule=DAILY, now=T0, likes=("Speech Paper 0",), like_top=2,
                       like_threshold=1.0)
    assert sub.query == "" and sub.name == "papers like \u201cspeech paper 0\u201d" and sub.like_top == 2
    add_papers(store, others(), now=ARRIVED)
    [built] = parts(engine, tmp_path).digests.build_due(DUE)
    text = sent_text(store)
    titles = listed_titles(text)
    assert built.papers == 2 and len(titles) == 2 and all(t.startswith("speech paper") for t in titles)
    assert "speech paper 0" not in titles  # the example itself is not news
    assert text.count("Matched like \u201cspeech paper 0\u201d") == 2
    assert parts(engine, tmp_path).digests.build_due(DUE + timedelta(days=1)) == []  # nothing new: nothing sent


def test_a_like_subscription_with_a_query_chooses_among_its_matches_only(engine, tmp_path) -> None:
    store = Store(engine)
    add_papers(store, [("speech paper 0", "We study speech recognition with acoustic models.")], now=T0 - timedelta(days=30))
    subscribe(store, "ada@example.org", "robot", schedule=DAILY, now=T0, likes=("speech paper 0",), like_top=1,
              like_threshold=1.0)
    add_papers(store, others(), now=ARRIVED)
    p = parts(engine, tmp_path)
    with store.transaction() as tx:
        p.matcher.sync(tx)
        from digestbot.services.matching import papers_since
        p.matcher.match_and_store(tx, papers_since(tx, ARRIVED))
    [built] = p.digests.build_due(DUE)
    [title] = listed_titles(sent_text(store))
    assert built.papers == 1 and title.startswith("robots paper")


def test_votes_order_a_keyword_digest_and_a_down_vote_drops_a_paper(engine, tmp_path) -> None:
    store = Store(engine)
    subscribe(store, "ada@example.org", "paper", schedule=DAILY, now=T0)
    add_papers(store, topical_papers(), now=ARRIVED)
    votes.vote(store, "ada@example.org", "robots paper 0", "up", T0)
    votes.vote(store, "ada@example.org", "diffusion paper 1", "down", T0)
    p = parts(engine, tmp_path)
    with store.transaction() as tx:
        p.matcher.sync(tx)
        from digestbot.services.matching import papers_since
        p.matcher.match_and_store(tx, papers_since(tx, ARRIVED))
    [built] = p.digests.build_due(DUE)
    titles = listed_titles(sent_text(store))
    assert "diffusion paper 1" not in titles and built.papers == 11
    assert titles[0] == "robots paper 0" and {t for t in titles[:4]} == {f"robots paper {n}" for n in range(4)}


def test_without_votes_the_order_is_todays() -> None:
    when = datetime(2026, 12, 1, tzinfo=UTC)
    papers = {i: (PaperRef(i, f"p{i}", "a", None, up, None, when), [SubscriptionRef(1, "q", parse_query("q"))])
              for i, up in ((1, 5), (2, 50), (3, 1))}
    plain = compose(recipient="a@x.org", cadence="daily", matched=papers, slot_local=when, max_papers=10,
                    paper_url="https://x/{title}")
    assert [p.id for p in plain.papers] == [2, 1, 3]
    scored = compose(recipient="a@x.org", cadence="daily", matched=papers, slot_local=when, max_papers=10,
                     paper_url="https://x/{title}", scores={3: 0.9, 1: 0.2, 2: 0.1})
    assert [p.id for p in scored.papers] == [3, 1, 2]


def test_like_options_are_checked_and_the_csv_takes_a_like_column(store) -> None:
    add_papers(store, topical_papers())
    with pytest.raises(UsageError):
        subscribe(store, "ada@example.org", "", schedule=DAILY, now=T0)  # neither a query nor examples
    with pytest.raises(UsageError):
        subscribe(store, "ada@example.org", "", schedule=DAILY, now=T0, likes=("no such paper",))
    with pytest.raises(UsageError):
        subscribe(store, "ada@example.org", "x", schedule=DAILY, now=T0, like_top=3)  # --top without --like
    csv = ("recipient,query,cadence,like\n"
           "ada@example.org,,weekly,speech paper 0|speech paper 1\n"
           "bob@example.org,robot,daily,\n"
           "eve@example.org,,daily,no such paper\n")
    report = import_subscriptions(store, csv, T0, like_top_per_week=10, like_threshold=0.3)
    assert report.imported == 2 and [line for line, _ in report.errors] == [4]
    [ada] = list_subscriptions(store, "ada@example.org")
    assert (ada.like_top, ada.like_threshold, ada.query) == (10, 0.3, "")
    [bob] = list_subscriptions(store, "bob@example.org")
    assert bob.like_top is None
