"""Delivering the outbox through the real SDKs over real HTTP, against the fakes in tests/fakes.py.

Digests are built by the real DigestBuilder from the real samples; only the outside world
(SendGrid, Slack) is fake. Nothing of digestbot's own is mocked.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from conftest import SAMPLES
from digestbot.bootstrap import bootstrap
from digestbot.channels import channels_for
from digestbot.core.schedule import parse_schedule
from digestbot.errors import UsageError
from digestbot.services.delivery import OutboxSender, release_stale, retry
from digestbot.services.ingest import ingest_paths
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.subscriptions import subscribe
from digestbot.settings import Settings
from digestbot.store import OutboxMessage, Store, connect, migrate
from fakes import FakeSendGrid, FakeSlack, fake_sendgrid, fake_slack  # noqa: F401 - fixtures

NAMES = sorted(p.name for p in SAMPLES.iterdir())
T0 = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)
INGEST = T0 + timedelta(minutes=30)
DUE = datetime(2025, 12, 1, 8, 0, tzinfo=UTC)  # after the 08:00 UTC daily slot
MTIME = (T0 - timedelta(days=30)).timestamp()
SENDGRID_REASON = "The from address does not match a verified Sender Identity"


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDKs send through $HTTPS_PROXY: keep every request on 127.0.0.1."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """The first sample dump, copied and dated a month before the test's clock."""
    target = tmp_path / "dumps" / NAMES[0]
    target.parent.mkdir()
    shutil.copyfile(SAMPLES / NAMES[0], target)
    os.chmod(target, 0o644)
    os.utime(target, (MTIME, MTIME))
    return target


@pytest.fixture
def sqlite_engine(tmp_path: Path):
    engine = connect(f"sqlite:///{tmp_path / 'delivery.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


def make_settings(tmp_path: Path, sendgrid: FakeSendGrid | None = None, slack: FakeSlack | None = None,
                  **changes) -> Settings:
    values: dict = dict(
        outbox_dir=tmp_path / "outbox", secret_key="delivery-test-key", base_url="https://digest.example.com",
        from_email="digest@example.com", retry_base_seconds=0.05, send_timeout=5.0, send_workers=4,
        email_backend="file", slack_backend="file",
    )
    if sendgrid is not None:
        values |= dict(email_backend="sendgrid", sendgrid_api_key="SG.test", sendgrid_api_host=sendgrid.url)
    if slack is not None:
        values |= dict(slack_backend="slack", slack_bot_token="xoxb-test", slack_api_url=slack.api_url)
    return Settings(**(values | changes))


def queue(engine: Engine, sample: Path, settings: Settings, subscriptions: list[tuple[str, str]],
          max_papers: int = 25) -> list:
    """Subscribe (daily, 08:00 UTC), ingest the sample, build what is due at DUE: the built digests.

    Webhooks may point at loopback here, where the fake Slack listens (DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS)."""
    for recipient, query in subscriptions:
        subscribe(Store(engine), recipient, query, schedule=parse_schedule("daily"), now=T0,
                  private_webhooks=settings.allow_private_webhooks)
    report = ingest_paths(Store(engine), [sample], now=INGEST, settle_seconds=0, matcher=SubscriptionMatcher())
    assert report.files[0].status == "ingested"
    built = bootstrap(dataclasses.replace(settings, digest_max_papers=max_papers), engine=engine).digests.build_due(DUE)
    assert len(built) == len({r for r, _ in subscriptions})
    return built


def rows(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def sender(engine: Engine, settings: Settings) -> OutboxSender:
    return OutboxSender(Store(engine), channels_for(settings), settings)


# ====================================================================== SendGrid


def test_queued_emails_are_delivered_exactly_once_to_sendgrid(engine, sample, tmp_path, fake_sendgrid) -> None:
    settings = make_settings(tmp_path, fake_sendgrid)
    built = queue(engine, sample, settings, [("ada@example.org", "diffusion"), ("bob@example.org", "transformer"),
                                             ("cy@example.org", "quantiz*")])
    queued = rows(engine)
    assert len(queued) == 3 and {r.status for r in queued} == {"pending"}

    report = sender(engine, settings).send_all()
    assert (report.sent, report.failed, report.retrying) == (3, 0, 0)

    mails = fake_sendgrid.mails
    assert len(mails) == 3  # one request per email
    payloads = {json.loads(r.payload)["key"]: json.loads(r.payload) for r in queued}
    assert sorted(m["custom_args"]["digestbot_key"] for m in mails) == sorted(payloads)
    for request in fake_sendgrid.requests:
        assert request.headers["Authorization"] == "Bearer SG.test"
    for mail in mails:
        payload = payloads[mail["custom_args"]["digestbot_key"]]
        assert [c["type"] for c in mail["content"]] == ["text/plain", "text/html"]
        assert mail["content"][0]["value"] == payload["text"]
        assert mail["content"][1]["value"] == payload["html"]
        assert mail["personalizations"][0]["to"] == [{"email": payload["to"]}]
        assert mail["subject"] == payload["subject"]
        assert mail["headers"]["List-Unsubscribe"].startswith("<https://digest.example.com/unsubscribe/")
        assert mail["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert {m["subject"] for m in mails} == {b.subject for b in built}

    sent = rows(engine)
    assert {r.status for r in sent} == {"sent"}
    assert all(r.attempts == 1 and r.sent_at and r.claimed_by is None for r in sent)
    assert sorted(r.provider_id for r in sent) == ["fake-sg-1", "fake-sg-2", "fake-sg-3"]

    again = sender(engine, settings).send_all()  # nothing left: nothing sent twice
    assert again.sent == 0 and len(fake_sendgrid.mails) == 3


def test_rate_limited_email_is_sent_after_the_reset(sqlite_engine, sample, tmp_path, fake_sendgrid) -> None:
    settings = make_settings(tmp_path, fake_sendgrid)
    queue(sqlite_engine, sample, settings, [("ada@example.org", "diffusion")])
    reset = int(time.time()) + 2
    fake_sendgrid.script(429, {"errors": [{"message": "too many requests"}]}, {"X-RateLimit-Reset": str(reset)})

    report = sender(sqlite_engine, settings).send_all()
    assert (report.sent, report.failed) == (1, 0)
    first, second = fake_sendgrid.requests
    assert second.at - first.at >= 0.9  # waited for the reset, not just the 0.05 s base delay
    assert first.json == second.json
    [row] = rows(sqlite_engine)
    assert (row.status, row.attempts, row.last_error) == ("sent", 2, None)


def test_server_errors_twice_then_accepted(sqlite_engine, sample, tmp_path, fake_sendgrid) -> None:
    settings = make_settings(tmp_path, fake_sendgrid)
    queue(sqlite_engine, sample, settings, [("ada@example.org", "diffusion")])
    fake_sendgrid.script(500, "upstream trouble").script(500, "upstream trouble")
    report = sender(sqlite_engine, settings).send_all()
    assert (report.sent, report.failed, report.retrying) == (1, 0, 0)
    assert len(fake_sendgrid.requests) == 3
    [row] = rows(sqlite_engine)
    assert (row.status, row.attempts, row.provider_id) == ("sent", 3, "fake-sg-1")


def test_a_refused_email_fails_with_the_reason_and_retry_puts_it_back(sqlite_engine, sample, tmp_path,
                                                                      fake_sendgrid) -> None:
    settings = make_settings(tmp_path, fake_sendgrid)
    queue(sqlite_engine, sample, settings, [("ada@example.org", "diffusion")])
    fake_sendgrid.script(400, {"errors": [{"message": SENDGRID_REASON, "field": "from"}]})

    report = sender(sqlite_engine, settings).send_all()
    assert (report.sent, report.failed) == (0, 1)
    assert len(fake_sendgrid.requests) == 1  # a permanent error is not retried
    [row] = rows(sqlite_engine)
    assert row.status == "failed" and SENDGRID_REASON in row.last_error
    assert SENDGRID_REASON in report.errors[0]["error"] and report.errors[0]["id"] == row.id

    retry(Store(sqlite_engine), row.id, datetime.now(UTC))  # `digestbot outbox retry ID`
    [row] = rows(sqlite_engine)
    assert (row.status, row.attempts, row.last_error) == ("pending", 0, None)

    report = sender(sqlite_engine, settings).send_all()
    assert (report.sent, report.failed) == (1, 0)
    assert len(fake_sendgrid.requests) == 2
    [row] = rows(sqlite_engine)
    assert row.status == "sent"
    with pytest.raises(UsageError):
        retry(Store(sqlite_engine), row.id, datetime.now(UTC))  # a sent message is not sent again


def test_transient_errors_beyond_the_attempts_fail(sqlite_engine, sample, tmp_path, fake_sendgrid) -> None:
    settings = make_settings(tmp_path, fake_sendgrid, send_attempts=3)
    queue(sqlite_engine, sample, settings, [("ada@example.org", "diffusion")])
    for _ in range(5):
        fake_sendgrid.script(503, "unavailable")
    report = sender(sqlite_engine, settings).send_all()
    assert (report.sent, report.failed, report.retrying) == (0, 1, 0)
    assert len(fake_sendgrid.requests) == 3
    [row] = rows(sqlite_engine)
    assert (row.status, row.attempts) == ("failed", 3)
    assert "3 attempts" in row.last_error and "503" in row.last_error


def test_a_message_left_by_a_dead_worker_is_released_and_sent(engine, sample, tmp_path, fake_sendgrid) -> None:
    settings = make_settings(tmp_path, fake_sendgrid)
    queue(engine, sample, settings, [("ada@example.org", "diffusion"), ("bob@example.org", "transformer")])
    dead, busy = rows(engine)
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        session.execute(update(OutboxMessage).where(OutboxMessage.id == dead.id).values(
            status="sending", claimed_at=now - timedelta(minutes=30), claimed_by="w-dead", attempts=1))
        session.execute(update(OutboxMessage).where(OutboxMessage.id == busy.id).values(
            status="sending", claimed_at=now - timedelta(seconds=30), claimed_by="w-alive", attempts=1))

    assert release_stale(Store(engine), now) == 1  # only the one past its lease
    assert {r.id: r.status for r in rows(engine)} == {dead.id: "pending", busy.id: "sending"}

    report = sender(engine, settings).send_all()
    assert report.sent == 1
    assert [m["custom_args"]["digestbot_key"] for m in fake_sendgrid.mails] == [json.loads(dead.payload)["key"]]
    after = {r.id: r for r in rows(engine)}
    assert (after[dead.id].status, after[dead.id].attempts) == ("sent", 2)
    assert (after[busy.id].status, after[busy.id].claimed_by) == ("sending", "w-alive")  # left alone


def test_send_all_itself_releases_stale_claims(sqlite_engine, sample, tmp_path, fake_sendgrid) -> None:
    settings = make_settings(tmp_path, fake_sendgrid)
    queue(sqlite_engine, sample, settings, [("ada@example.org", "diffusion")])
    with Session(sqlite_engine) as session, session.begin():
        session.execute(update(OutboxMessage).values(
            status="sending", claimed_at=datetime.now(UTC) - timedelta(hours=2), claimed_by="w-dead"))
    assert sender(sqlite_engine, settings).send_all().sent == 1
    assert len(fake_sendgrid.mails) == 1 and rows(sqlite_engine)[0].status == "sent"


# ====================================================================== Slack


def test_queued_slack_digests_are_posted_in_part_order(engine, sample, tmp_path, fake_slack) -> None:
    settings = make_settings(tmp_path, slack=fake_slack)
    [built] = queue(engine, sample, settings, [("slack:#papers", "transformer")], max_papers=30)
    queued = rows(engine)
    assert built.messages == len(queued) >= 2

    report = sender(engine, settings).send_all()
    assert (report.sent, report.failed) == (len(queued), 0)
    posts = fake_slack.posts
    assert len(posts) == len(queued)  # exactly once per outbox row
    for request in posts:
        assert request.headers["Authorization"] == "Bearer xoxb-test"
    bodies = [p.json for p in posts]
    payloads = [json.loads(r.payload) for r in queued]  # in part order
    assert [b["blocks"] for b in bodies] == [p["blocks"] for p in payloads]  # posted in part order
    for body, payload in zip(bodies, payloads):
        assert body["channel"] == "#papers"
        assert body["unfurl_links"] is False and body["unfurl_media"] is False
        assert body["text"] == payload["text"]
        assert "link_names" not in body and "parse" not in body
    assert bodies[0]["blocks"][0]["type"] == "header"
    sent = rows(engine)
    assert {r.status for r in sent} == {"sent"}
    assert all(r.provider_id and "." in r.provider_id for r in sent)  # Slack's ts
    assert sender(engine, settings).send_all().sent == 0 and len(fake_slack.posts) == len(queued)


def test_a_slack_part_that_fails_for_a_moment_is_not_overtaken_by_the_next_part(sqlite_engine, sample, tmp_path,
                                                                               fake_slack) -> None:
    settings = make_settings(tmp_path, slack=fake_slack)
    [built] = queue(sqlite_engine, sample, settings, [("slack:#papers", "transformer")], max_papers=30)
    payloads = [json.loads(r.payload) for r in rows(sqlite_engine)]
    assert len(payloads) == built.messages >= 2
    # Slack has a hiccup on the first post (an error it says to retry; the SDK does not retry a 200).
    fake_slack.script(200, {"ok": False, "error": "internal_error"})

    report = sender(sqlite_engine, settings).send_all()
    assert (report.sent, report.failed) == (len(payloads), 0)
    accepted = [p.json["blocks"] for p in fake_slack.posts[1:]]  # the first answer was the error
    assert len(accepted) == len(payloads)
    # The channel must read part 1, then part 2, ...: a later part may not go out before an earlier one.
    assert accepted == [p["blocks"] for p in payloads], (
        "parts posted in the order " + str([[p["blocks"] for p in payloads].index(b) + 1 for b in accepted]))


def test_slack_webhook_recipients_are_posted_to_their_webhook(sqlite_engine, sample, tmp_path, fake_slack) -> None:
    settings = make_settings(tmp_path, slack=fake_slack, allow_private_webhooks=True)  # the fake is on loopback
    hook = fake_slack.webhook_url("T000/B000/XXXX")
    [built] = queue(sqlite_engine, sample, settings, [(f"slack-webhook:{hook}", "diffusion")])
    report = sender(sqlite_engine, settings).send_all()
    assert report.sent == built.messages == len(fake_slack.hook_posts) >= 1
    assert fake_slack.posts == []  # not through chat.postMessage
    for request in fake_slack.hook_posts:
        assert request.path == "/hooks/T000/B000/XXXX"
        body = request.json
        assert "channel" not in body and body["unfurl_links"] is False and body["blocks"]
    assert {r.status for r in rows(sqlite_engine)} == {"sent"}


# ====================================================================== concurrency


def fill_outbox(engine: Engine, count: int, payload: dict, spread: float) -> None:
    """``count`` pending emails (copies of one rendered payload), coming due over ``spread`` seconds."""
    now = datetime.now(UTC)
    with Session(engine) as session, session.begin():
        recipient_id = session.execute(select(OutboxMessage.recipient_id)).scalar()
        session.add_all(
            OutboxMessage(
                recipient_id=recipient_id, channel="email", kind="daily", digest_key=f"dconc-{i:03d}", part=1,
                subject=payload["subject"], payload=json.dumps(payload | {"key": f"dconc-{i:03d}-1"}),
                status="pending", attempts=0, next_attempt_at=now + timedelta(seconds=spread * i / count),
                created_at=now,
            )
            for i in range(count)
        )


def test_two_senders_at_once_deliver_each_message_exactly_once(engine, sample, tmp_path) -> None:
    with FakeSendGrid(latency=0.003) as fake:
        settings = make_settings(tmp_path, fake)
        queue(engine, sample, settings, [("ada@example.org", "diffusion")])
        [template] = rows(engine)
        with Session(engine) as session, session.begin():
            session.execute(update(OutboxMessage).values(status="sent"))  # only the 200 copies are to go
        # Coming due over a second, so that both senders keep claiming small batches side by side.
        fill_outbox(engine, 200, json.loads(template.payload), spread=1.0)

        senders = [sender(engine, settings), sender(engine, settings)]
        reports: list = [None, None]
        start = threading.Barrier(2)

        def work(index: int) -> None:
            start.wait()
            reports[index] = senders[index].send_all()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert all(r is not None for r in reports)

        keys = Counter(m["custom_args"]["digestbot_key"] for m in fake.mails)
    assert len(keys) == 200 and set(keys.values()) == {1}, [k for k, n in keys.items() if n > 1]
    assert sum(r.sent for r in reports) == 200 and sum(r.failed for r in reports) == 0
    assert all(r.sent > 0 for r in reports), [r.sent for r in reports]  # both really worked
    final = [r for r in rows(engine) if r.digest_key.startswith("dconc-")]
    assert len(final) == 200 and {r.status for r in final} == {"sent"}
    assert {r.attempts for r in final} == {1}


# ====================================================================== file backend


def test_file_backend_writes_one_file_per_message_and_resending_adds_none(sqlite_engine, sample, tmp_path) -> None:
    settings = make_settings(tmp_path)  # email and Slack to files
    built = queue(sqlite_engine, sample, settings, [("ada@example.org", "diffusion"), ("bob@example.org", "3d"),
                                                    ("slack:#papers", "transformer")], max_papers=30)
    queued = rows(sqlite_engine)
    emails = [r for r in queued if r.channel == "email"]
    slacks = [r for r in queued if r.channel == "slack"]
    assert len(emails) == 2 and len(slacks) == {b.recipient: b for b in built}["slack:#papers"].messages >= 2

    report = sender(sqlite_engine, settings).send_all()
    assert report.sent == len(queued)
    outbox = settings.outbox_dir
    eml = sorted(p.name for p in (outbox / "email").iterdir())
    js = sorted(p.name for p in (outbox / "slack").iterdir())
    assert eml == sorted(f"{json.loads(r.payload)['key']}.eml" for r in emails)
    assert js == sorted(f"{json.loads(r.payload)['key']}.json" for r in slacks)

    first = emails[0]
    message = email.message_from_bytes((outbox / "email" / eml[0]).read_bytes(), policy=email.policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["List-Unsubscribe"].startswith("<https://digest.example.com/unsubscribe/")
    assert message["To"] in ("ada@example.org", "bob@example.org")
    body = json.loads((outbox / "slack" / js[0]).read_text(encoding="utf-8"))
    assert body["channel"] == "#papers" and body["unfurl_links"] is False and body["blocks"]

    # The same rows again (as after a crash between writing and recording): same files, no new ones.
    with Session(sqlite_engine) as session, session.begin():
        session.execute(update(OutboxMessage).where(OutboxMessage.id.in_([first.id, slacks[0].id]))
                        .values(status="pending"))
    assert sender(sqlite_engine, settings).send_all().sent == 2
    assert sorted(p.name for p in (outbox / "email").iterdir()) == eml
    assert sorted(p.name for p in (outbox / "slack").iterdir()) == js
    assert not list(outbox.rglob("*.tmp"))


# ====================================================================== the command line


def test_cli_digest_then_send_through_sendgrid(sample, tmp_path, fake_sendgrid) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = connect(url)
    migrate(engine)
    for recipient in ("ada@example.org", "bob@example.org"):
        subscribe(Store(engine), recipient, "diffusion OR transformer", schedule=parse_schedule("daily"), now=T0)
    assert ingest_paths(Store(engine), [sample], now=INGEST, settle_seconds=0,
                        matcher=SubscriptionMatcher()).files[0].status == "ingested"
    engine.dispose()

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DIGESTBOT_", "SENDGRID_", "SLACK_")) and "proxy" not in k.lower()}
    env |= {"DIGESTBOT_DATABASE_URL": url, "DIGESTBOT_EMAIL_BACKEND": "sendgrid", "SENDGRID_API_KEY": "SG.x",
            "SENDGRID_API_HOST": fake_sendgrid.url, "DIGESTBOT_RETRY_BASE_SECONDS": "0.05",
            "DIGESTBOT_OUTBOX_DIR": str(tmp_path / "outbox")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "digestbot", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)

    built = run("digest", "--now", "2025-12-01T09:00:00+01:00", "--json")  # 08:00 UTC
    assert built.returncode == 0, built.stderr
    digests = json.loads(built.stdout)
    assert digests["dry_run"] is False
    assert sorted(d["recipient"] for d in digests["digests"]) == ["ada@example.org", "bob@example.org"]

    sent = run("send", "--json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout) == {"sent": 2, "retrying": 0, "failed": 0, "errors": []}
    assert sorted(m["personalizations"][0]["to"][0]["email"] for m in fake_sendgrid.mails) == [
        "ada@example.org", "bob@example.org"]
    assert {m["subject"] for m in fake_sendgrid.mails} == {d["subject"] for d in digests["digests"]}

    listed = run("outbox", "--json")
    assert listed.returncode == 0, listed.stderr
    messages = json.loads(listed.stdout)
    assert len(messages) == 2
    assert {m["status"] for m in messages} == {"sent"}
    assert all(m["channel"] == "email" and m["attempts"] == 1 and m["sent_at"] for m in messages)
    assert sorted(m["provider_id"] for m in messages) == ["fake-sg-1", "fake-sg-2"]

    again = run("digest", "--now", "2025-12-01T09:30:00+00:00", "--json")  # same window: nothing more
    assert again.returncode == 0 and json.loads(again.stdout)["digests"] == []
