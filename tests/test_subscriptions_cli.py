"""The subscription commands, search and ingest's matches, run as a user runs them: `python -m digestbot`."""

from __future__ import annotations

import json
import subprocess

import pytest
from sqlalchemy import create_engine, func, select

from conftest import one_line_error
from digestbot.core.query import parse_query
from digestbot.core.reference import Document, evaluate
from digestbot.store import Match

SUB_KEYS = {"id", "recipient", "query", "cadence", "at", "day", "tz", "active"}


def ok_json(proc: subprocess.CompletedProcess, code: int = 0):
    assert proc.returncode == code, proc.stderr
    return json.loads(proc.stdout)


def match_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(Match.__table__)).scalar_one()
    finally:
        engine.dispose()


def test_subscribe_list_import_and_unsubscribe(run, tmp_path):
    assert run("init").returncode == 0

    created = ok_json(run("subscribe", "Alice@Example.ORG", '"diffusion transformer" -survey', "--cadence", "weekly",
                          "--at", "9:30", "--day", "fri", "--tz", "Europe/Berlin", "--name", "DiT", "--json"))
    assert SUB_KEYS <= set(created)
    assert {k: created[k] for k in SUB_KEYS - {"id"}} == {
        "recipient": "alice@example.org", "query": '"diffusion transformer" -survey', "cadence": "weekly",
        "at": "09:30", "day": "fri", "tz": "Europe/Berlin", "active": True}
    assert isinstance(created["id"], int)

    bad_recipient = run("subscribe", "slack:#ML-Papers", "diffusion", "--json")
    assert bad_recipient.returncode == 2 and bad_recipient.stdout == ""
    assert "slack:#ML-Papers" in one_line_error(bad_recipient)
    bad_query = run("subscribe", "bob@example.org", "diffusion (transformer", "--json")
    assert bad_query.returncode == 2 and bad_query.stdout == ""
    line = one_line_error(bad_query)
    assert "bad query" in line and "column 11" in line
    bad_tz = run("subscribe", "bob@example.org", "diffusion", "--tz", "Mars/Olympus_Mons", "--json")
    assert bad_tz.returncode == 2 and bad_tz.stdout == ""
    assert "Mars/Olympus_Mons" in one_line_error(bad_tz)

    (tmp_path / "subs.csv").write_text("\n".join([
        "recipient,query,cadence,at,day,tz",
        "Alice@example.org,transformer,daily,07:00,,",          # 2
        "slack:#ml-papers,quantiz* OR pruning,instant,,,",      # 3
        "bob@,diffusion,,,,",                                   # 4 bad recipient
        'bob@example.org,"""time series",,,,',                  # 5 bad query
        "bob@example.org,llm,weekly,18:45,sun,Asia/Tokyo",      # 6
        "bob@example.org,llm,fortnightly,,,",                   # 7 bad cadence
    ]) + "\n", encoding="utf-8")
    report = ok_json(run("import-subscriptions", "subs.csv", "--json"), code=1)
    assert (report["imported"], report["failed"]) == (3, 3)
    assert [e["line"] for e in report["errors"]] == [4, 5, 7]
    assert "bob@" in report["errors"][0]["error"] and "column" in report["errors"][1]["error"]
    assert "fortnightly" in report["errors"][2]["error"]

    listed = ok_json(run("subscriptions", "--json"))
    assert all(SUB_KEYS <= set(s) for s in listed)
    assert [(s["recipient"], s["query"], s["cadence"], s["at"], s["day"], s["tz"], s["active"]) for s in listed] == [
        ("alice@example.org", '"diffusion transformer" -survey', "weekly", "09:30", "fri", "Europe/Berlin", True),
        ("alice@example.org", "transformer", "daily", "07:00", "mon", "UTC", True),
        ("slack:#ml-papers", "quantiz* OR pruning", "instant", "08:00", "mon", "UTC", True),
        ("bob@example.org", "llm", "weekly", "18:45", "sun", "Asia/Tokyo", True),
    ]
    ids = [s["id"] for s in listed]
    assert ids[0] == created["id"] and len(set(ids)) == 4

    alices = ok_json(run("subscriptions", "--recipient", " Alice@EXAMPLE.org ", "--json"))
    assert [s["id"] for s in alices] == ids[:2]

    assert ok_json(run("unsubscribe", str(ids[2]), "--json")) == {"unsubscribed": [ids[2]]}
    ended = ok_json(run("unsubscribe", "--recipient", "Alice@example.org", "--json"))
    assert sorted(ended["unsubscribed"]) == ids[:2]
    assert [s["id"] for s in ok_json(run("subscriptions", "--json"))] == [ids[3]]


def test_user_text_is_not_read_as_rich_markup(run):
    """Queries and recipients are data: square brackets must be printed, never interpreted."""
    assert run("init").returncode == 0
    made = run("subscribe", "alice@example.org", "diffusion[/]")  # a valid query: the word diffusion
    assert made.returncode == 0, made.stderr
    assert "diffusion[/]" in made.stdout
    listed = run("subscriptions")
    assert listed.returncode == 0, listed.stderr
    assert "diffusion[/]" in listed.stdout
    bad = run("subscribe", "[/]x", "diffusion")
    assert bad.returncode == 2
    assert "[/]x" in one_line_error(bad)


def test_ingest_counts_matches_and_search_best_first(run, dumps, tmp_path):
    assert run("init").returncode == 0
    alice = ok_json(run("subscribe", "alice@example.org", "diffusion", "--cadence", "instant", "--json"))

    report = ok_json(run("ingest", "dumps", "--json"))
    assert report["new"] == 342
    rows = match_rows(f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert report["matches"] == rows > 40
    assert sum(f["matches"] for f in report["files"]) == rows

    found = ok_json(run("search", "diffusion", "--limit", "1000", "--json"))
    assert found and all({"id", "title"} <= set(p) for p in found)
    assert len({p["id"] for p in found}) == len(found)
    node, in_title = parse_query("diffusion"), parse_query("title:diffusion")
    assert all(evaluate(node, Document.of(p["title"], p["abstract"])) for p in found)
    titled = [evaluate(in_title, Document.of(p["title"], "")) for p in found]
    assert any(titled) and not all(titled)
    assert titled == sorted(titled, reverse=True)  # every title hit before every abstract-only hit
    # alice subscribed to "diffusion" before the ingest: she matched exactly the papers search finds.
    engine = create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.connect() as connection:
        matched = set(connection.execute(
            select(Match.paper_id).where(Match.subscription_id == alice["id"])).scalars())
    engine.dispose()
    assert matched == {p["id"] for p in found}

    top = ok_json(run("search", "diffusion", "--limit", "3", "--json"))
    assert [p["id"] for p in top] == [p["id"] for p in found[:3]]
    assert ok_json(run("search", "zzzyzzx qqqxqqq", "--json")) == []


@pytest.mark.postgres
def test_subscribe_and_ingest_on_postgres(run, dumps, postgres_url):
    assert run("init", url=postgres_url).returncode == 0
    created = ok_json(run("subscribe", "slack:C0123ABCD", "autoregressive OR diffusion", "--backfill", "7",
                          "--json", url=postgres_url))
    assert SUB_KEYS <= set(created) and created["recipient"] == "slack:C0123ABCD"
    report = ok_json(run("ingest", "dumps", "--json", url=postgres_url))
    assert report["new"] == 342
    assert report["matches"] == match_rows(postgres_url) > 20
