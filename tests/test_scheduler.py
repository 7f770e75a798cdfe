"""The scheduler's jobs in-process, on SQLite and PostgreSQL (the ``engine`` fixture), driven by an
injected clock: the watch folder (settling), instant alerts, daily digests across DST and after a
downtime, the ``job_runs`` record, leadership leases, and the admin's health alerts.

Nothing of digestbot is mocked. Time is a ``Clock`` object handed to ``Bot``/``DigestBuilder``;
file modification times are set with ``os.utime`` relative to it, because ingest compares a
file's real mtime with the injected ``now``. Deliveries use the file backend in ``tmp_path``.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import os
import re
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session

from conftest import SAMPLES
from digestbot.bootstrap import bootstrap
from digestbot.core.identity import title_key
from digestbot.core.schedule import Schedule, parse_schedule
from digestbot.runner import Bot
from digestbot.services import leases
from digestbot.services.health import next_digests, next_slot, pending_alerts, queue_admin_alerts
from digestbot.services.subscriptions import subscribe
from digestbot.settings import Settings
from digestbot.store import (
    AdminAlert, DigestItem, DumpFile, JobRun, Lease, Match, OutboxMessage, Paper, Recipient, Store, Subscription,
)
from fakes import free_port

NAMES = sorted(p.name for p in SAMPLES.iterdir())
NEW = [70, 61, 102, 42, 67]  # new papers of each sample when ingested in order


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


class Clock:
    """The injected clock: a callable whose ``now`` the test sets."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> Clock:
        self.now = now
        return self


# ------------------------------------------------------------------------------------ helpers


def make_settings(tmp_path: Path, **changes) -> Settings:
    values = dict(
        watch_dir=tmp_path / "watch", outbox_dir=tmp_path / "outbox", settle_seconds=5.0,
        email_backend="file", slack_backend="file", secret_key="test-secret",
        base_url="https://digest.example.com", from_email="digest@example.com",
        digest_max_papers=500,  # every paper shown, so the messages can be checked title by title
        fetch_minutes=0,  # no source fetched: tests never reach the network (test_sources_e2e.py fetches from fakes)
    )
    settings = Settings(**(values | changes))
    settings.watch_dir.mkdir(parents=True, exist_ok=True)
    return settings


def drop(folder: Path, name: str, mtime: datetime, data: bytes | None = None) -> Path:
    """Put a sample (or ``data``) into the watch folder, last modified at ``mtime``."""
    target = folder / name
    target.write_bytes((SAMPLES / name).read_bytes() if data is None else data)
    os.utime(target, (mtime.timestamp(), mtime.timestamp()))
    return target


def sub(engine: Engine, recipient: str, query: str, now: datetime, cadence: str = "instant", at: str = "08:00",
        tz: str = "UTC", day: str = "mon") -> int:
    created, _ = subscribe(Store(engine), recipient, query, schedule=parse_schedule(cadence, at, day, tz), now=now)
    return created.id


def job(engine: Engine, name: str) -> JobRun | None:
    with Session(engine) as session:
        return session.get(JobRun, name)


def dump_rows(engine: Engine) -> list[DumpFile]:
    with Session(engine) as session:
        return list(session.scalars(select(DumpFile).order_by(DumpFile.id)))


def matched_titles(engine: Engine, *sub_ids: int, at: datetime | None = None) -> set[str]:
    """Titles of the papers these subscriptions matched (at one ingest time, if given)."""
    statement = select(Paper.title).join(Match, Match.paper_id == Paper.id).where(Match.subscription_id.in_(sub_ids))
    if at is not None:
        statement = statement.where(Match.matched_at == at)
    with Session(engine) as session:
        return set(session.scalars(statement))


def matched_ids(engine: Engine, sub_id: int, at: datetime | None = None) -> set[int]:
    statement = select(Match.paper_id).where(Match.subscription_id == sub_id)
    if at is not None:
        statement = statement.where(Match.matched_at == at)
    with Session(engine) as session:
        return set(session.scalars(statement))


def outbox(engine: Engine, **where) -> list[OutboxMessage]:
    statement = select(OutboxMessage).order_by(OutboxMessage.id)
    for column, value in where.items():
        statement = statement.where(getattr(OutboxMessage, column) == value)
    with Session(engine) as session:
        return list(session.scalars(statement))


def eml_files(settings: Settings) -> list[Path]:
    folder = settings.outbox_dir / "email"
    return sorted(folder.glob("*.eml")) if folder.is_dir() else []


def slack_files(settings: Settings) -> list[Path]:
    folder = settings.outbox_dir / "slack"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def eml_message(path: Path):
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def eml_titles(path: Path) -> list[str]:
    body = eml_message(path).get_body(preferencelist=("plain",)).get_content()
    return re.findall(r"^\d+\. (.+)$", body, flags=re.MULTILINE)


def _slack_unescape(value: str) -> str:
    return value.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def slack_titles(body: dict) -> list[str]:
    """Paper titles of one posted Slack message: the ``*<url|title>*`` first line of each section."""
    titles = []
    for block in body.get("blocks", []):
        if block.get("type") != "section":
            continue
        first = block["text"]["text"].split("\n", 1)[0]
        found = re.fullmatch(r"\*<[^|]*\|(.*)>\*", first)
        if found:
            titles.append(_slack_unescape(found[1]))
    return titles


# Sample files are saved a month before the scenario starts, unless a test says otherwise.
T0 = utc(2026, 3, 2, 9, 0)
OLD = T0 - timedelta(days=30)


# ================================================================================== watch job


def test_watch_ingests_complete_files_and_defers_one_still_being_written(engine, tmp_path) -> None:
    settings = make_settings(tmp_path, settle_seconds=5.0)
    clock = Clock(T0)
    bot = Bot(bootstrap(settings, engine=engine, clock=clock))
    folder = settings.watch_dir
    full = (SAMPLES / NAMES[1]).read_bytes()

    drop(folder, NAMES[0], OLD)
    # Half of the next dump, written half a second "ago" by the injected clock.
    drop(folder, NAMES[1], T0 - timedelta(seconds=0.5), data=full[: len(full) // 2])
    bot.watch()
    rows = dump_rows(engine)
    assert [Path(r.path).name for r in rows] == [NAMES[0]]  # the half-written file is not touched
    assert (rows[0].status, rows[0].new) == ("ingested", NEW[0])
    run = job(engine, "watch")
    assert (run.last_status, run.last_error) == ("ok", None)
    assert run.summary.startswith(f"2 file(s), {NEW[0]} new paper(s), ")

    # The writer finishes one second before the next pass: still too fresh, deferred again.
    clock.set(T0 + timedelta(seconds=3))
    drop(folder, NAMES[1], T0 + timedelta(seconds=2), data=full)
    bot.watch()
    assert [Path(r.path).name for r in dump_rows(engine)] == [NAMES[0]]
    assert job(engine, "watch").summary == "1 file(s), 0 new paper(s), 0 match(es)"

    # Settled: taken whole, once.
    clock.set(T0 + timedelta(seconds=8))
    bot.watch()
    rows = dump_rows(engine)
    assert [Path(r.path).name for r in rows] == [NAMES[0], NAMES[1]]
    assert rows[1].sha256 == hashlib.sha256(full).hexdigest()  # the complete file, never the half
    assert (rows[1].status, rows[1].new) == ("ingested", NEW[1])
    assert job(engine, "watch").summary.startswith(f"1 file(s), {NEW[1]} new paper(s), ")
    assert job(engine, "watch").last_started_at == T0 + timedelta(seconds=8)

    # Nothing new: an unchanged folder costs nothing and records nothing new.
    clock.set(T0 + timedelta(minutes=1))
    bot.watch()
    assert job(engine, "watch").summary == "0 file(s), 0 new paper(s), 0 match(es)"
    assert len(dump_rows(engine)) == 2


def test_watch_defers_by_the_injected_clock_not_the_wall_clock(engine, tmp_path) -> None:
    # A file saved long ago by the wall clock but "just now" by the injected clock is deferred.
    settings = make_settings(tmp_path, settle_seconds=30.0)
    mtime = utc(2026, 1, 10, 12, 0)
    drop(settings.watch_dir, NAMES[0], mtime)
    clock = Clock(mtime + timedelta(seconds=29))
    bot = Bot(bootstrap(settings, engine=engine, clock=clock))
    bot.watch()
    assert dump_rows(engine) == []
    clock.set(mtime + timedelta(seconds=31))
    bot.watch()
    assert [(r.status, r.new) for r in dump_rows(engine)] == [("ingested", NEW[0])]


# ============================================================================= instant alerts


def test_instant_alert_right_after_the_watch_pass_that_brought_matches_and_only_once(engine, tmp_path) -> None:
    settings = make_settings(tmp_path, settle_seconds=1.0)
    clock = Clock(T0)
    alice = sub(engine, "alice@example.org", "diffusion", T0)
    channel = sub(engine, "slack:#ml-papers", "video", T0)
    weekly = sub(engine, "bob@example.org", "diffusion", T0, cadence="weekly")  # never an instant alert
    bot = Bot(bootstrap(settings, engine=engine, clock=clock))

    bot.watch()  # an empty folder: nothing to say
    assert eml_files(settings) == [] and slack_files(settings) == []

    first = clock.set(T0 + timedelta(hours=1)).now
    drop(settings.watch_dir, NAMES[0], first - timedelta(minutes=5))
    bot.watch()  # the alerts go out in the same pass: no deliver job needed
    expected_alice = matched_titles(engine, alice, at=first)
    expected_channel = matched_titles(engine, channel, at=first)
    assert expected_alice and expected_channel  # the sample has papers for both
    [mail] = eml_files(settings)
    assert eml_message(mail)["To"] == "alice@example.org"
    assert sorted(eml_titles(mail)) == sorted(expected_alice)
    posted = [json.loads(p.read_text()) for p in slack_files(settings)]
    assert posted and all(body["channel"] == "#ml-papers" for body in posted)
    assert sorted(t for body in posted for t in slack_titles(body)) == sorted(expected_channel)
    assert [r.status for r in outbox(engine)] == ["sent"] * (1 + len(posted))
    assert {r.kind for r in outbox(engine)} == {"instant"}

    # More passes, the other jobs, a later time: nothing is sent again.
    for minutes in (61, 62, 120):
        clock.set(T0 + timedelta(minutes=minutes))
        bot.run_once()
    assert len(eml_files(settings)) == 1 and len(slack_files(settings)) == len(posted)

    # The same content under another name is skipped: no alert for papers already told.
    clock.set(T0 + timedelta(hours=3))
    drop(settings.watch_dir, "copy-of-" + NAMES[0], first, data=(SAMPLES / NAMES[0]).read_bytes())
    bot.watch()
    assert len(eml_files(settings)) == 1

    # The next dump: one more alert each, with only that dump's matches.
    second = clock.set(T0 + timedelta(hours=4)).now
    drop(settings.watch_dir, NAMES[1], second - timedelta(minutes=5))
    bot.watch()
    mails = eml_files(settings)
    assert len(mails) == 2
    # Papers are compared by title key, as the store identifies them (a dump may correct a title).
    every_title = Counter(title_key(t) for m in mails for t in eml_titles(m))
    assert set(every_title) == {title_key(t) for t in matched_titles(engine, alice)}
    assert max(every_title.values()) == 1  # no paper twice
    posted = [json.loads(p.read_text()) for p in slack_files(settings)]
    channel_titles = Counter(title_key(t) for body in posted for t in slack_titles(body))
    assert set(channel_titles) == {title_key(t) for t in matched_titles(engine, channel)}
    assert max(channel_titles.values()) == 1
    # The weekly subscriber got nothing instantly.
    with Session(engine) as session:
        bob = session.scalar(select(Recipient.id).where(Recipient.address == "bob@example.org"))
    assert outbox(engine, recipient_id=bob) == []
    assert matched_ids(engine, weekly)  # though its matches are stored for the weekly digest


# ============================================================================== daily digests


def daily_digests(engine: Engine) -> list[tuple[str, str]]:
    """(digest_key, subject) of every daily digest queued, in order."""
    seen: dict[str, str] = {}
    for row in outbox(engine, kind="daily"):
        seen.setdefault(row.digest_key, row.subject)
    return list(seen.items())


def digest_papers(engine: Engine, digest_key: str) -> set[int]:
    with Session(engine) as session:
        return set(session.scalars(select(DigestItem.paper_id).where(DigestItem.digest_key == digest_key)))


def digested_until(engine: Engine, sub_id: int) -> datetime | None:
    with Session(engine) as session:
        return session.get(Subscription, sub_id).digested_until


def digests_at(bot: Bot, clock: Clock, engine: Engine, when: datetime) -> int:
    """Run the digests job at ``when``; how many digests it queued (checked against job_runs)."""
    before = len(daily_digests(engine))
    clock.set(when)
    bot.digests()
    queued = len(daily_digests(engine)) - before
    run = job(engine, "digests")
    assert (run.last_status, run.summary, run.last_started_at) == ("ok", f"{queued} digest(s) queued", when)
    return queued


def test_daily_digest_at_0800_berlin_across_the_autumn_dst_change_and_after_a_downtime(engine, tmp_path) -> None:
    # Europe/Berlin falls back on 2026-10-25: 08:00 is 06:00 UTC on Oct 24 and 07:00 UTC from Oct 25.
    settings = make_settings(tmp_path)
    created = utc(2026, 10, 23, 12, 0)
    clock = Clock(created)
    sid = sub(engine, "ada@example.org", "diffusion", created, cadence="daily", at="08:00", tz="Europe/Berlin")
    bot = Bot(bootstrap(settings, engine=engine, clock=clock))
    saved = utc(2026, 10, 1)  # mtime of the dropped files: long settled

    ingest_at = clock.set(utc(2026, 10, 23, 20, 0)).now
    drop(settings.watch_dir, NAMES[0], saved)
    bot.watch()
    first_batch = matched_ids(engine, sid, at=ingest_at)
    assert first_batch

    assert digests_at(bot, clock, engine, utc(2026, 10, 24, 5, 59)) == 0  # 07:59 CEST: not yet
    assert digests_at(bot, clock, engine, utc(2026, 10, 24, 6, 0)) == 1  # 08:00 CEST
    assert digests_at(bot, clock, engine, utc(2026, 10, 24, 6, 1)) == 0
    assert digests_at(bot, clock, engine, utc(2026, 10, 24, 18, 0)) == 0  # same window
    [(key, subject)] = daily_digests(engine)
    assert subject.endswith("· Oct 24")
    assert digest_papers(engine, key) == first_batch

    ingest_at = clock.set(utc(2026, 10, 24, 20, 0)).now
    drop(settings.watch_dir, NAMES[1], saved)
    bot.watch()
    second_batch = matched_ids(engine, sid, at=ingest_at)
    assert second_batch

    # The 25-hour day: 06:00 UTC is only 07:00 CET now.
    assert digests_at(bot, clock, engine, utc(2026, 10, 25, 6, 0)) == 0
    assert digests_at(bot, clock, engine, utc(2026, 10, 25, 6, 59)) == 0
    assert digests_at(bot, clock, engine, utc(2026, 10, 25, 7, 0)) == 1  # 08:00 CET
    assert digests_at(bot, clock, engine, utc(2026, 10, 25, 7, 30)) == 0
    key, subject = daily_digests(engine)[-1]
    assert subject.endswith("· Oct 25")
    assert digest_papers(engine, key) == second_batch
    assert digested_until(engine, sid) == utc(2026, 10, 25, 7, 0)

    # A dump arrives, then the bot is down for more than five days; another dump arrives meanwhile.
    ingest_at = clock.set(utc(2026, 10, 25, 20, 0)).now
    drop(settings.watch_dir, NAMES[2], saved)
    bot.watch()
    third_batch = matched_ids(engine, sid, at=ingest_at)
    drop(settings.watch_dir, NAMES[3], saved)

    restarted = utc(2026, 10, 31, 9, 30)
    clock.set(restarted)
    bot = Bot(bootstrap(settings, engine=engine, clock=clock))  # a new process
    bot.watch()
    fourth_batch = matched_ids(engine, sid, at=restarted)
    assert third_batch and fourth_batch
    assert digests_at(bot, clock, engine, restarted) == 1  # one catch-up digest, not six
    assert digests_at(bot, clock, engine, restarted + timedelta(minutes=1)) == 0
    key, subject = daily_digests(engine)[-1]
    assert subject.endswith("· Oct 31")
    assert digest_papers(engine, key) == third_batch | fourth_batch
    assert digested_until(engine, sid) == utc(2026, 10, 31, 7, 0)  # 08:00 CET that day
    assert digests_at(bot, clock, engine, utc(2026, 11, 1, 6, 59)) == 0
    assert len(daily_digests(engine)) == 3

    # Every matched paper went into exactly one daily digest.
    with Session(engine) as session:
        items = list(session.scalars(select(DigestItem.paper_id).where(DigestItem.cadence == "daily")))
    assert sorted(items) == sorted(first_batch | second_batch | third_batch | fourth_batch)
    assert len(items) == len(set(items))


def test_daily_digest_at_0800_berlin_across_the_spring_dst_change(engine, tmp_path) -> None:
    # Europe/Berlin springs forward on 2027-03-28: 08:00 is 07:00 UTC on Mar 27 and 06:00 UTC on Mar 28.
    settings = make_settings(tmp_path)
    created = utc(2027, 3, 26, 12, 0)
    clock = Clock(created)
    sid = sub(engine, "ada@example.org", "diffusion", created, cadence="daily", at="08:00", tz="Europe/Berlin")
    bot = Bot(bootstrap(settings, engine=engine, clock=clock))

    clock.set(utc(2027, 3, 26, 20, 0))
    drop(settings.watch_dir, NAMES[0], utc(2027, 3, 1))
    bot.watch()
    assert digests_at(bot, clock, engine, utc(2027, 3, 27, 6, 0)) == 0  # 07:00 CET
    assert digests_at(bot, clock, engine, utc(2027, 3, 27, 7, 0)) == 1  # 08:00 CET

    clock.set(utc(2027, 3, 27, 20, 0))
    drop(settings.watch_dir, NAMES[1], utc(2027, 3, 1))
    bot.watch()
    assert digests_at(bot, clock, engine, utc(2027, 3, 28, 5, 59)) == 0  # 07:59 CEST
    assert digests_at(bot, clock, engine, utc(2027, 3, 28, 6, 0)) == 1  # 08:00 CEST: the 23-hour day
    assert digests_at(bot, clock, engine, utc(2027, 3, 28, 7, 0)) == 0  # a fixed +1 offset would fire here
    assert [s.rsplit("· ", 1)[1] for _, s in daily_digests(engine)] == ["Mar 27", "Mar 28"]
    assert digested_until(engine, sid) == utc(2027, 3, 28, 6, 0)


# ================================================================================== job_runs


def test_job_runs_record_every_job_with_status_ok_and_a_summary(engine, tmp_path) -> None:
    settings = make_settings(tmp_path, admin="ops@example.org")
    clock = Clock(T0)
    alice = sub(engine, "alice@example.org", "diffusion", T0)
    drop(settings.watch_dir, NAMES[0], OLD)
    drop(settings.watch_dir, "zz-broken.txt", OLD, data=b"this is not a dump\n")
    clock.set(T0 + timedelta(minutes=1))
    Bot(bootstrap(settings, engine=engine, clock=clock)).run_once()

    matches = len(matched_ids(engine, alice))
    assert matches
    with Session(engine) as session:
        runs = {r.job: r for r in session.scalars(select(JobRun))}
    assert set(runs) == {"watch", "digests", "health", "deliver"}
    for run in runs.values():
        assert (run.last_status, run.last_error) == ("ok", None), run.job
        assert run.last_started_at == run.last_finished_at == T0 + timedelta(minutes=1)
    assert runs["watch"].summary == f"2 file(s), {NEW[0]} new paper(s), {matches} match(es)"
    assert runs["digests"].summary == "0 digest(s) queued"  # the instant alert went out with the watch pass
    assert runs["health"].summary == "1 alert(s)"  # the broken file
    assert runs["deliver"].summary == "1 sent, 0 failed, 0 waiting"  # the admin's alert
    assert len(eml_files(settings)) == 2  # alice's alert and the admin's


def test_a_failing_job_is_recorded_as_failed_and_the_other_jobs_still_run(engine, tmp_path) -> None:
    # An honest failure: the database loses the outbox table under the bot (then gets it back).
    settings = make_settings(tmp_path)
    clock = Clock(T0)
    bot = Bot(bootstrap(settings, engine=engine, clock=clock))
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE outbox RENAME TO outbox_away"))
    try:
        bot.run_once()
    finally:
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE outbox_away RENAME TO outbox"))
    failed = job(engine, "deliver")
    assert failed.last_status == "failed"
    assert failed.last_error.startswith("database: ")  # the database's own words, one line
    assert "outbox" in failed.last_error and "\n" not in failed.last_error
    assert failed.summary == ""
    for name in ("watch", "digests", "health"):
        assert job(engine, name).last_status == "ok", name

    clock.set(T0 + timedelta(seconds=10))
    bot.deliver()  # the database is whole again: the next run is ok and says so
    recovered = job(engine, "deliver")
    assert (recovered.last_status, recovered.last_error, recovered.summary) == (
        "ok", None, "0 sent, 0 failed, 0 waiting")
    assert recovered.last_started_at == T0 + timedelta(seconds=10)


def test_an_unreachable_sendgrid_is_a_transient_error_not_a_failed_job(engine, tmp_path) -> None:
    settings = make_settings(tmp_path, email_backend="sendgrid", sendgrid_api_key="SG.test",
                             sendgrid_api_host=f"http://127.0.0.1:{free_port()}", retry_base_seconds=60.0,
                             send_timeout=5.0)
    clock = Clock(T0)
    sub(engine, "alice@example.org", "diffusion", T0)
    bot = Bot(bootstrap(settings, engine=engine, clock=clock))
    clock.set(T0 + timedelta(minutes=1))
    drop(settings.watch_dir, NAMES[0], OLD)
    bot.watch()
    bot.deliver()
    for name in ("watch", "deliver"):
        assert job(engine, name).last_status == "ok", name
    assert job(engine, "deliver").summary == "0 sent, 0 failed, 1 waiting"
    [row] = outbox(engine)
    assert row.status == "pending" and row.attempts == 1
    assert "SendGrid unreachable" in row.last_error
    assert row.next_attempt_at > T0 + timedelta(minutes=1)  # retried later, with backoff


# ==================================================================================== leases

TTL = timedelta(seconds=20)


def test_lease_acquire_renew_expire_take_over_and_release(engine) -> None:
    t = utc(2026, 5, 1, 12, 0)
    s = timedelta(seconds=1)
    assert leases.holder_of(Store(engine), "scheduler", t) is None
    assert leases.acquire(Store(engine), "scheduler", "a", t, TTL)
    assert not leases.acquire(Store(engine), "scheduler", "b", t, TTL)  # two holders: only one wins
    assert not leases.acquire(Store(engine), "scheduler", "b", t + 19 * s, TTL)
    assert leases.holder_of(Store(engine), "scheduler", t + 19 * s) == "a"

    assert leases.acquire(Store(engine), "scheduler", "a", t + 10 * s, TTL)  # renewed: now until t+30
    assert not leases.acquire(Store(engine), "scheduler", "b", t + 25 * s, TTL)  # would have expired at t+20
    assert not leases.acquire(Store(engine), "scheduler", "b", t + 30 * s, TTL)  # at the expiry instant: still a's
    assert leases.holder_of(Store(engine), "scheduler", t + 30 * s) == "a"
    assert leases.holder_of(Store(engine), "scheduler", t + 31 * s) is None  # expired, nobody holds it

    assert leases.acquire(Store(engine), "scheduler", "b", t + 31 * s, TTL)  # after expiry the other wins
    assert leases.holder_of(Store(engine), "scheduler", t + 32 * s) == "b"
    assert not leases.acquire(Store(engine), "scheduler", "a", t + 32 * s, TTL)  # and the old holder lost it

    leases.release(Store(engine), "scheduler", "a")  # not a's to give up: nothing changes
    assert leases.holder_of(Store(engine), "scheduler", t + 33 * s) == "b"
    assert not leases.acquire(Store(engine), "scheduler", "a", t + 33 * s, TTL)

    leases.release(Store(engine), "scheduler", "b")  # a clean shutdown
    assert leases.holder_of(Store(engine), "scheduler", t + 33 * s) is None
    assert leases.acquire(Store(engine), "scheduler", "a", t + 33 * s, TTL)  # at once, no waiting for expiry
    assert leases.holder_of(Store(engine), "scheduler", t + 34 * s) == "a"

    # Another name is another lease.
    assert leases.acquire(Store(engine), "other", "b", t + 34 * s, TTL)
    with Session(engine) as session:
        assert {(row.name, row.holder) for row in session.scalars(select(Lease))} == {("scheduler", "a"), ("other", "b")}


@pytest.mark.parametrize("state", ["fresh", "expired"])
def test_lease_contenders_at_the_same_moment_only_one_wins(engine, state) -> None:
    t = utc(2026, 5, 1, 12, 0)
    if state == "expired":
        assert leases.acquire(Store(engine), "scheduler", "old", t - timedelta(minutes=5), TTL)
    contenders = [f"run-{i}" for i in range(6)]
    barrier = threading.Barrier(len(contenders))
    won: dict[str, bool] = {}
    errors: list[BaseException] = []

    def contend(holder: str) -> None:
        try:
            barrier.wait()
            won[holder] = leases.acquire(Store(engine), "scheduler", holder, t, TTL)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(h,)) for h in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    winners = [h for h, ok in won.items() if ok]
    assert len(won) == len(contenders) and len(winners) == 1, won
    assert leases.holder_of(Store(engine), "scheduler", t) == winners[0]


# ==================================================================================== health


@pytest.mark.parametrize(("schedule", "now", "expected"), [
    (Schedule("daily", "08:00", "mon", "UTC"), utc(2026, 6, 1, 7, 59), utc(2026, 6, 1, 8, 0)),
    (Schedule("daily", "08:00", "mon", "UTC"), utc(2026, 6, 1, 8, 0), utc(2026, 6, 2, 8, 0)),  # after, not at
    (Schedule("daily", "08:00", "mon", "Europe/Berlin"), utc(2026, 10, 24, 6, 0), utc(2026, 10, 25, 7, 0)),  # 25 h day
    (Schedule("daily", "08:00", "mon", "Europe/Berlin"), utc(2026, 10, 25, 6, 30), utc(2026, 10, 25, 7, 0)),
    (Schedule("daily", "08:00", "mon", "Europe/Berlin"), utc(2027, 3, 27, 7, 0), utc(2027, 3, 28, 6, 0)),  # 23 h day
    (Schedule("daily", "08:00", "mon", "Europe/Berlin"), utc(2027, 3, 28, 5, 30), utc(2027, 3, 28, 6, 0)),
    # 07:30 CET on the day before the spring change: today's 08:00 CET is next, half an hour away.
    (Schedule("daily", "08:00", "mon", "Europe/Berlin"), utc(2027, 3, 27, 6, 30), utc(2027, 3, 27, 7, 0)),
    (Schedule("weekly", "09:00", "mon", "Europe/Berlin"), utc(2026, 11, 18, 12, 0), utc(2026, 11, 23, 8, 0)),
    (Schedule("weekly", "09:00", "mon", "Europe/Berlin"), utc(2026, 11, 23, 8, 0), utc(2026, 11, 30, 8, 0)),
    # Monday 08:30 CET before the spring change: 09:00 CET the same morning is next.
    (Schedule("weekly", "09:00", "mon", "Europe/Berlin"), utc(2027, 3, 22, 7, 30), utc(2027, 3, 22, 8, 0)),
])
def test_next_slot_is_the_first_scheduled_time_after_now(schedule, now, expected) -> None:
    assert next_slot(schedule, now) == expected


def test_next_slot_agrees_with_a_minute_by_minute_walk_over_the_dst_changes() -> None:
    from digestbot.core.schedule import latest_slot

    schedule = Schedule("daily", "08:00", "mon", "Europe/Berlin")
    wrong = []
    for start in (utc(2026, 10, 23, 0, 0), utc(2027, 3, 26, 0, 0)):
        now = start
        while now < start + timedelta(days=3):
            # The first slot after now: the latest slot of a later moment that is no longer the same one.
            probe = now + timedelta(minutes=1)
            while latest_slot(schedule, probe) <= now:
                probe += timedelta(minutes=30)
            truth = latest_slot(schedule, probe)
            if next_slot(schedule, now) != truth:
                wrong.append((now.isoformat(), next_slot(schedule, now).isoformat(), truth.isoformat()))
            now += timedelta(minutes=15)
    assert wrong == []


def test_next_digests_lists_the_soonest_per_recipient_and_cadence(engine) -> None:
    created = utc(2026, 11, 16, 0, 0)
    sub(engine, "ada@example.org", "diffusion", created, cadence="daily", at="08:00", tz="Europe/Berlin")
    sub(engine, "ada@example.org", "video", created, cadence="daily", at="06:30", tz="UTC")  # sooner, same cadence
    sub(engine, "ada@example.org", "3d", created, cadence="weekly", at="09:00", day="mon", tz="Europe/Berlin")
    sub(engine, "slack:#ml", "agent*", created, cadence="daily", at="18:00", tz="America/New_York")
    sub(engine, "bob@example.org", "robot*", created, cadence="instant")  # no schedule: not listed
    gone = sub(engine, "carol@example.org", "mamba", created, cadence="daily")
    sub(engine, "dave@example.org", "speech", created, cadence="daily")
    with Session(engine) as session, session.begin():
        session.get(Subscription, gone).active = False
        session.execute(update(Recipient).where(Recipient.address == "dave@example.org")
                        .values(suspended_at=created))

    now = utc(2026, 11, 18, 12, 0)  # a Wednesday
    with Store(engine).reading() as tx:
        found = next_digests(tx, now)
        first_two = next_digests(tx, now, limit=2)
    assert found == [
        {"recipient": "slack:#ml", "cadence": "daily", "at": utc(2026, 11, 18, 23, 0).isoformat()},
        {"recipient": "ada@example.org", "cadence": "daily", "at": utc(2026, 11, 19, 6, 30).isoformat()},
        {"recipient": "ada@example.org", "cadence": "weekly", "at": utc(2026, 11, 23, 8, 0).isoformat()},
    ]
    assert first_two == found[:2]


def alert_rows(engine: Engine) -> list[OutboxMessage]:
    return outbox(engine, kind="alert")


@pytest.mark.parametrize("admin", ["ops@example.org", "slack:#ops"])
def test_a_stale_pipeline_alerts_the_admin_once(engine, tmp_path, admin) -> None:
    settings = make_settings(tmp_path, admin=admin, stale_hours=36.0)
    clock = Clock(T0)
    bot = Bot(bootstrap(settings, engine=engine, clock=clock))
    assert queue_admin_alerts(Store(engine), settings, T0) == 0  # nothing ingested yet: nothing to call stale

    drop(settings.watch_dir, NAMES[0], OLD)
    bot.watch()  # the last ingest is at T0
    assert queue_admin_alerts(Store(engine), settings, T0 + timedelta(hours=35)) == 0  # not stale yet
    assert queue_admin_alerts(Store(engine), settings, T0 + timedelta(hours=37)) == 1
    assert queue_admin_alerts(Store(engine), settings, T0 + timedelta(hours=37)) == 0  # once per problem
    assert queue_admin_alerts(Store(engine), settings, T0 + timedelta(hours=90)) == 0
    with Store(engine).reading() as tx:
        assert pending_alerts(tx, settings, T0 + timedelta(hours=90)) == []
    [row] = alert_rows(engine)
    assert row.channel == ("email" if "@" in admin else "slack")
    assert row.subject == "digestbot: no new dump for 37 hours"

    clock.set(T0 + timedelta(hours=91))
    bot.health()  # the health job: nothing new to say
    assert job(engine, "health").summary == "0 alert(s)"
    bot.deliver()
    if "@" in admin:
        [mail] = eml_files(settings)
        message = eml_message(mail)
        assert message["To"] == "ops@example.org" and message["Subject"] == row.subject
        assert str(settings.watch_dir) in message.get_body(preferencelist=("plain",)).get_content()
        assert slack_files(settings) == []
    else:
        [post] = slack_files(settings)
        body = json.loads(post.read_text())
        assert body["channel"] == "#ops" and "no new dump for 37 hours" in body["text"]
        assert eml_files(settings) == []

    # Dumps arrive again, then stop again: that is a new problem, told once more.
    clock.set(T0 + timedelta(hours=100))
    drop(settings.watch_dir, NAMES[1], OLD)
    bot.watch()
    assert queue_admin_alerts(Store(engine), settings, T0 + timedelta(hours=101)) == 0
    clock.set(T0 + timedelta(hours=140))
    bot.health()
    assert job(engine, "health").summary == "1 alert(s)"
    bot.health()
    assert job(engine, "health").summary == "0 alert(s)"
    assert len(alert_rows(engine)) == 2


@pytest.mark.parametrize("admin", ["ops@example.org", "slack:#ops"])
def test_a_failed_file_alerts_the_admin_once(engine, tmp_path, admin) -> None:
    settings = make_settings(tmp_path, admin=admin)
    clock = Clock(T0)
    bot = Bot(bootstrap(settings, engine=engine, clock=clock))
    drop(settings.watch_dir, NAMES[0], OLD)
    drop(settings.watch_dir, "broken.txt", OLD, data=b"\x00\x01 not a dump at all")
    bot.watch()
    assert [r.status for r in dump_rows(engine)] == ["ingested", "failed"]

    assert queue_admin_alerts(Store(engine), settings, T0) == 1
    assert queue_admin_alerts(Store(engine), settings, T0 + timedelta(minutes=5)) == 0  # called twice: queued once
    bot.health()
    assert job(engine, "health").summary == "0 alert(s)"
    [row] = alert_rows(engine)
    assert "broken.txt" in row.subject and row.subject.startswith("digestbot: a dump file failed")
    with Session(engine) as session:
        assert len(list(session.scalars(select(AdminAlert)))) == 1

    # The same broken file seen again by a new process: still one alert.
    bot = Bot(bootstrap(settings, engine=engine, clock=clock.set(T0 + timedelta(hours=1))))
    bot.run_once()
    assert len(alert_rows(engine)) == 1
    sent = eml_files(settings) if "@" in admin else slack_files(settings)
    assert len(sent) == 1
    assert "broken.txt" in (eml_message(sent[0])["Subject"] if "@" in admin else json.loads(sent[0].read_text())["text"])


def test_no_admin_means_no_alerts_queued(engine, tmp_path) -> None:
    settings = make_settings(tmp_path, admin="")
    drop(settings.watch_dir, "broken.txt", OLD, data=b"\x00 nope")
    bot = Bot(bootstrap(settings, engine=engine, clock=Clock(T0)))
    bot.watch()
    assert queue_admin_alerts(Store(engine), settings, T0 + timedelta(days=30)) == 0
    assert alert_rows(engine) == []
    with Store(engine).reading() as tx:
        assert pending_alerts(tx, settings, T0)  # the problem is there, just nobody to tell
