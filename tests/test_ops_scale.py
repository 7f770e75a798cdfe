"""Issue 14, the store side: next_due_at kept on every change and read by the digest pass, the
outbox's payloads stored once, retention (`prune`), and `backup`. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session

from conftest import NAMES
from digestbot.bootstrap import bootstrap
from digestbot.core.schedule import CHECK_NOW, Schedule, latest_slot, next_slot, parse_schedule
from digestbot.errors import UsageError
from digestbot.services.backup import backup
from digestbot.services.ingest import ingest_paths
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.retention import prune
from digestbot.services.subscriptions import edit, set_paused, subscribe
from digestbot.settings import Settings
from digestbot.store import DigestItem, JobRun, OutboxMessage, OutboxPayload, Store, Subscription, WebhookEvent

T0 = datetime(2025, 11, 24, 7, 0, tzinfo=UTC)  # a Monday, before the papers of the samples were seen
INGEST = datetime(2025, 11, 30, 12, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def settings(tmp_path: Path, **changes) -> Settings:
    values = dict(outbox_dir=tmp_path / "outbox", secret_key="test-secret", base_url="https://digest.example.com",
                  from_email="digest@example.com")
    return Settings(**(values | changes))


def sub(engine: Engine, recipient: str, query: str, *, cadence: str = "daily", at: str = "08:00", day: str = "mon",
        tz: str = "UTC", now: datetime = T0, pending: bool = False) -> int:
    created, _ = subscribe(Store(engine), recipient, query, schedule=parse_schedule(cadence, at, day, tz),
                           now=now, pending=pending)
    return created.id


def row(engine: Engine, sub_id: int) -> Subscription:
    with Session(engine) as session:
        return session.get(Subscription, sub_id)


def ingest(engine: Engine, dumps: Path, *names: str, now: datetime = INGEST) -> None:
    report = ingest_paths(Store(engine), [dumps / n for n in names], now=now, settle_seconds=0,
                          matcher=SubscriptionMatcher())
    assert all(f.status == "ingested" for f in report.files), report.as_json()


# ============================================================================ next_due_at

def test_next_due_is_set_when_made_and_moved_by_every_change_that_matters(engine) -> None:
    store = Store(engine)
    daily = sub(engine, "ada@example.org", "diffusion", at="08:00", tz="Europe/Berlin")
    weekly = sub(engine, "ada@example.org", "robot*", cadence="weekly", day="wed", at="18:30", tz="America/New_York")
    instant = sub(engine, "bob@example.org", "video", cadence="instant")
    assert row(engine, daily).next_due_at == utc(2025, 11, 25, 7, 0)  # 08:00 in Berlin on the next day
    assert row(engine, weekly).next_due_at == utc(2025, 11, 26, 23, 30)
    assert row(engine, instant).next_due_at == CHECK_NOW  # a new instant one is looked at by the next pass

    recipient_id = row(engine, daily).recipient_id
    edit(store, recipient_id, daily, query="diffusion", schedule=parse_schedule("weekly", "09:15", "fri", "Asia/Tokyo"),
         now=T0 + timedelta(hours=1))
    assert row(engine, daily).next_due_at == utc(2025, 11, 28, 0, 15)  # Friday 09:15 in Tokyo
    set_paused(store, recipient_id, daily, True, T0 + timedelta(hours=2))
    assert row(engine, daily).next_due_at is None  # inactive: never read by the pass
    set_paused(store, recipient_id, daily, False, T0 + timedelta(hours=3))
    assert row(engine, daily).next_due_at == utc(2025, 11, 28, 0, 15)
    pending = sub(engine, "carol@example.org", "speech", pending=True)
    assert row(engine, pending).next_due_at is None  # waits for its confirmation


def test_the_pass_reads_only_due_subscriptions_and_moves_them_on(engine, dumps, tmp_path) -> None:
    daily = sub(engine, "ada@example.org", "diffusion")
    weekly = sub(engine, "bob@example.org", "diffusion", cadence="weekly", day="tue", now=utc(2025, 11, 26))
    ingest(engine, dumps, NAMES[0])
    builder = bootstrap(settings(tmp_path), engine=engine).digests
    now = utc(2025, 12, 1, 8, 5)  # Monday: the daily one is due, the weekly one (Tuesdays) is not
    assert builder.count_due(now) == 1
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    built = builder.build_due(now)
    assert [(b.recipient, b.cadence) for b in built] == [("ada@example.org", "daily")]
    # The pass asks for due rows by next_due_at; no statement reads every subscription.
    assert any("next_due_at <=" in s for s in statements)
    assert row(engine, daily).digested_until == utc(2025, 12, 1, 8, 0)
    assert row(engine, daily).next_due_at == utc(2025, 12, 2, 8, 0)
    assert row(engine, weekly).next_due_at == utc(2025, 12, 2, 8, 0)
    assert builder.build_due(now) == []  # taken: not due again until tomorrow
    assert builder.count_due(now) == 0


def test_instant_subscriptions_sleep_until_their_query_matches(engine, dumps, tmp_path) -> None:
    instant = sub(engine, "ada@example.org", "diffusion", cadence="instant")
    builder = bootstrap(settings(tmp_path), engine=engine).digests
    assert builder.build_due(T0 + timedelta(minutes=1)) == []  # nothing matched yet: looked at once
    assert row(engine, instant).next_due_at is None
    ingest(engine, dumps, NAMES[0])
    assert row(engine, instant).next_due_at == CHECK_NOW  # the matcher woke it
    [alert] = builder.build_due(INGEST + timedelta(minutes=1))
    assert alert.cadence == "instant" and alert.papers > 0
    assert row(engine, instant).next_due_at is None


def test_a_page_at_a_time_builds_every_digest_once_and_a_dry_run_changes_nothing(engine, dumps, tmp_path,
                                                                                monkeypatch) -> None:
    from digestbot.services import digests

    monkeypatch.setattr(digests, "PAGE", 3)  # seven recipients: three pages, one recipient across two
    for n in range(7):
        sub(engine, f"r{n}@example.org", "diffusion")
        if n == 2:
            sub(engine, f"r{n}@example.org", "robot*")  # two subscriptions, one digest
    ingest(engine, dumps, NAMES[0])
    builder = bootstrap(settings(tmp_path), engine=engine).digests
    now = utc(2025, 12, 1, 8, 5)
    seen: list[int] = []
    dry = list(builder.build_due_pages(now, dry_run=True, progress=seen.append))
    assert sorted(b.recipient for b in dry) == [f"r{n}@example.org" for n in range(7)]
    assert sum(seen) == 8 and builder.count_due(now) == 8  # dry: still all due
    built = builder.build_due(now)
    assert sorted(b.recipient for b in built) == [f"r{n}@example.org" for n in range(7)]
    with Session(engine) as session:
        assert session.scalar(select(OutboxMessage.id).where(OutboxMessage.status != "pending")) is None
        assert len(session.scalars(select(OutboxMessage)).all()) == 7
    assert builder.count_due(now) == 0


def test_the_migration_fills_next_due_and_moves_payloads(engine) -> None:
    from alembic import command

    from digestbot.store.db import _alembic_config

    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO recipients (id, address, kind, created_at) "
                                "VALUES (1, 'ada@example.org', 'email', '2025-11-24 07:00:00')"))
        connection.execute(text(
            "INSERT INTO subscriptions (id, recipient_id, query, cadence, send_at, weekday, timezone, active, pending, "
            "created_at, updated_at, match_since, version, digested_until) VALUES "
            "(1, 1, 'a', 'daily', '08:00', 'mon', 'UTC', true, false, '2025-11-24 07:00:00', '2025-11-24 07:00:00', "
            "'2025-11-24 07:00:00', 1, '2025-11-30 08:00:00'), "
            "(2, 1, 'b', 'weekly', '08:00', 'fri', 'Europe/Berlin', true, false, '2025-11-24 07:00:00', "
            "'2025-11-24 07:00:00', '2025-11-24 07:00:00', 2, NULL), "
            "(3, 1, 'c', 'daily', '08:00', 'mon', 'UTC', false, false, '2025-11-24 07:00:00', '2025-11-24 07:00:00', "
            "'2025-11-24 07:00:00', 3, NULL)"))
        connection.execute(text(
            "INSERT INTO outbox (id, recipient_id, channel, kind, digest_key, part, subject, payload, status, attempts, "
            "next_attempt_at, created_at) VALUES (1, 1, 'email', 'daily', 'k', 1, 's', '{\"to\": \"ada\"}', 'sent', "
            "1, '2025-11-24 07:00:00', '2025-11-24 07:00:00')"))
    Store(engine).migrate()
    assert row(engine, 1).next_due_at == utc(2025, 12, 1, 8, 0)
    assert row(engine, 2).next_due_at == utc(2025, 11, 28, 7, 0)  # 08:00 Berlin, Friday
    assert row(engine, 3).next_due_at is None
    with Session(engine) as session:
        assert session.get(OutboxMessage, 1).payload == '{"to": "ada"}'


# ============================================================================ payloads stored once

def test_status_updates_never_rewrite_the_payload(engine, dumps, tmp_path) -> None:
    sub(engine, "ada@example.org", "diffusion")
    ingest(engine, dumps, NAMES[0])
    parts = bootstrap(settings(tmp_path, email_backend="file"), engine=engine)
    parts.digests.build_due(utc(2025, 12, 1, 8, 5))
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    report = parts.outbox_sender().send_all(wait_for_retries=0)
    assert report.sent == 1
    assert any(s.lstrip().upper().startswith("UPDATE OUTBOX") for s in statements)
    assert not any("outbox_payloads" in s and not s.lstrip().upper().startswith("SELECT") for s in statements)
    with Session(engine) as session:
        message = session.scalars(select(OutboxMessage)).one()
        assert message.status == "sent" and json.loads(message.payload)["to"] == "ada@example.org"


# ============================================================================ retention

def test_prune_drops_what_is_old_and_keeps_what_stops_a_second_send(engine, dumps, tmp_path) -> None:
    store = Store(engine)
    sub(engine, "ada@example.org", "diffusion")
    unconfirmed = sub(engine, "bob@example.org", "robot*", pending=True)
    ingest(engine, dumps, NAMES[0])
    parts = bootstrap(settings(tmp_path, email_backend="file", retention_days=30), engine=engine)
    sent_at = utc(2025, 12, 1, 8, 5)
    parts.digests.build_due(sent_at)
    parts.outbox_sender().send_all(wait_for_retries=0)
    with Session(engine) as session, session.begin():
        for message in session.scalars(select(OutboxMessage)):
            message.sent_at = sent_at
        session.add(JobRun(job="gone", last_started_at=sent_at, last_finished_at=sent_at, last_status="ok"))
        session.add(WebhookEvent(source="sendgrid", event_id="e1", received_at=sent_at))
        items_before = len(session.scalars(select(DigestItem)).all())
    assert items_before > 0

    later = sent_at + timedelta(days=31)
    with Session(engine) as session, session.begin():  # a job that still runs keeps its record
        session.add(JobRun(job="watch", last_started_at=later, last_finished_at=later, last_status="ok"))
    dry = prune(store, parts.settings, later, dry_run=True)
    assert (dry.payloads, dry.job_runs, dry.webhook_events, dry.unconfirmed_subscriptions) == (1, 1, 1, 1)
    assert prune(store, parts.settings, later, dry_run=True) == dry  # a dry run changed nothing
    done = prune(store, parts.settings, later)
    assert (done.payloads, done.job_runs, done.webhook_events, done.unconfirmed_subscriptions) == (1, 1, 1, 1)
    with Session(engine) as session:
        assert session.scalars(select(OutboxPayload)).all() == []
        message = session.scalars(select(OutboxMessage)).one()
        assert message.status == "sent" and message.payload is None  # the row stays, its payload is gone
        assert [j.job for j in session.scalars(select(JobRun))] == ["watch"]
        assert session.scalars(select(WebhookEvent)).all() == []
        assert len(session.scalars(select(DigestItem)).all()) == items_before
        assert session.get(Subscription, unconfirmed).deleted_at == later
    # Never the same paper twice: the next daily digest has nothing to send again.
    assert parts.digests.build_due(sent_at + timedelta(days=1)) == []
    assert prune(store, parts.settings, later) .payloads == 0


# ============================================================================ backup

def test_backup_copies_a_sqlite_database_while_it_is_open(sqlite_url, tmp_path) -> None:
    from digestbot.store import connect

    engine = connect(sqlite_url)
    Store(engine).migrate()
    sub(engine, "ada@example.org", "diffusion")
    holder = engine.connect()  # the bot holds a connection meanwhile
    try:
        size = backup(Store(engine), tmp_path / "copy.db")
    finally:
        holder.close()
    assert size == (tmp_path / "copy.db").stat().st_size > 0
    with sqlite3.connect(tmp_path / "copy.db") as copy:
        assert copy.execute("SELECT query FROM subscriptions").fetchall() == [("diffusion",)]
    with pytest.raises(UsageError, match="exists already"):
        backup(Store(engine), tmp_path / "copy.db")
    engine.dispose()


@pytest.mark.postgres
def test_backup_on_postgresql_says_to_use_pg_dump(postgres_url, tmp_path) -> None:
    from digestbot.store import connect

    engine = connect(postgres_url)
    try:
        with pytest.raises(UsageError, match="pg_dump"):
            backup(Store(engine), tmp_path / "copy.db")
    finally:
        engine.dispose()
