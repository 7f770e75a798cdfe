"""Trending: '*' with --top N keeps each digest to the N most upvoted papers of its window."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from conftest import ROOT
from digestbot.core.digest import PaperRef, SubscriptionRef, keep_top
from digestbot.core.query import parse_query
from digestbot.errors import UsageError
from digestbot.services.subscriptions import check_top, import_subscriptions
from digestbot.store import Store

HF = ROOT / "examples" / "sources" / "hf-daily_2025-12-03.json"
T = datetime(2025, 12, 3, tzinfo=UTC)


def ref(pid: int, upvotes: int | None) -> PaperRef:
    return PaperRef(pid, f"P{pid}", "A.", None, upvotes, None, T + timedelta(minutes=pid))


def test_keep_top_per_subscription() -> None:
    star, other = SubscriptionRef(1, "*", parse_query("*")), SubscriptionRef(2, "x", parse_query("x"))
    matched = {1: (ref(1, 5), [star]), 2: (ref(2, 50), [star]), 3: (ref(3, None), [star, other]),
               4: (ref(4, 7), [star])}
    kept, passed = keep_top(matched, {1: 2})
    assert sorted(kept) == [2, 3, 4]  # 50 and 7 for '*'; 3 stays for the other subscription
    assert kept[3][1] == [other] and passed == [1]
    assert keep_top(matched, {}) == (matched, [])


def test_check_top() -> None:
    assert check_top(None) is None and check_top("") is None and check_top("10") == 10
    for bad in ("0", "-1", "ten", 1001):
        with pytest.raises(UsageError, match="top must be"):
            check_top(bad)


def test_top_in_the_csv(store: Store) -> None:
    report = import_subscriptions(store, "recipient,query,cadence,top\na@example.org,*,weekly,10\n"
                                         "b@example.org,diffusion,daily,\nc@example.org,x,daily,zero\n", T)
    assert report.imported == 2 and report.errors == [(4, "top must be a number of papers from 1 to 1000, not 'zero'")]


def test_weekly_top_digest_of_the_most_upvoted(run, tmp_path) -> None:
    assert run("init").returncode == 0
    made = run("subscribe", "team@example.org", "*", "--top", "2", "--cadence", "instant", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["top"] == 2
    assert run("subscribe", "ann@example.org", "diffusion", "--top", "0").returncode == 2
    assert run("ingest", str(HF)).returncode == 0
    built = run("digest", "--json")
    assert built.returncode == 0, built.stderr
    [digest] = json.loads(built.stdout)["digests"]
    assert digest["papers"] == 2 and digest["subject"].startswith("2 new papers")
    assert run("send").returncode == 0
    [eml] = (tmp_path / "outbox" / "email").glob("*.eml")
    text = eml.read_text(errors="replace")
    # 57 and 41 upvotes are kept; 35 and 12 are not shown, and not sent later either.
    assert "Latent Consistency Diffusion" in text and "Informer" in text
    assert "Quantization-Aware" not in text and "Lumina-mGPT" not in text
    assert json.loads(run("digest", "--json").stdout)["digests"] == []
