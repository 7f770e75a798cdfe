"""Issue 14, what operators see: /metrics moving after an ingest and a send, logs one event a line
with no secret in them, and `digestbot doctor` saying what is wrong and how to fix it."""

from __future__ import annotations

import io
import json
import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import NAMES, SAMPLES
from digestbot.bootstrap import bootstrap
from digestbot.cli import logs
from digestbot.core.schedule import parse_schedule
from digestbot.runner import Bot
from digestbot.services.subscriptions import subscribe
from digestbot.settings import Settings
from digestbot.store import Store
from digestbot.web import create_app
from fakes import FakeSendGrid, FakeSlack, fake_sendgrid, fake_slack, free_port  # noqa: F401 - fixtures

T0 = datetime(2025, 11, 24, 7, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def scrape(client) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) → value, from the app's /metrics."""
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.get_data(as_text=True)) for s in family.samples}


def test_metrics_move_after_an_ingest_and_a_send(engine, tmp_path, fake_sendgrid) -> None:
    settings = Settings(outbox_dir=tmp_path / "outbox", watch_dir=tmp_path / "dumps", secret_key="metrics-key",
                        base_url="https://digest.example.com", from_email="digest@example.com", settle_seconds=0,
                        email_backend="sendgrid", sendgrid_api_key="SG.metrics", sendgrid_api_host=fake_sendgrid.url)
    clock = Clock(T0)
    parts = bootstrap(settings, engine=engine, clock=clock)
    client = create_app(parts).test_client()
    before = scrape(client)
    subscribe(parts.store, "ada@example.org", "diffusion", schedule=parse_schedule("daily"), now=T0)
    (tmp_path / "dumps").mkdir()
    shutil.copy(SAMPLES / NAMES[0], tmp_path / "dumps" / NAMES[0])
    clock.now = datetime(2025, 12, 1, 8, 5, tzinfo=UTC)
    bot = Bot(parts)
    bot.run_once()  # watch (ingest), digests, health, deliver
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("digestbot_dump_files_total", status="ingested") == 1
    assert moved("digestbot_papers_total", kind="new") > 0
    assert moved("digestbot_matches_total") > 0
    assert moved("digestbot_digests_built_total", cadence="daily") == 1
    assert moved("digestbot_messages_total", channel="email", outcome="sent") == 1 == len(fake_sendgrid.mails)
    assert moved("digestbot_provider_latency_seconds_count", channel="email") == 1
    assert moved("digestbot_job_runs_total", job="watch") == 1
    assert moved("digestbot_job_runs_total", job="deliver") == 1
    # Read from the database at scrape time.
    assert after[("digestbot_outbox_messages", (("status", "sent"),))] == 1
    assert after[("digestbot_outbox_messages", (("status", "pending"),))] == 0
    assert 0 <= after[("digestbot_seconds_since_last_ingest", ())] < 60
    assert ("digestbot_seconds_since_last_fetch", ()) not in after  # no fetch job has run here
    assert after[("digestbot_database_up", ())] == 1
    assert after[("digestbot_leader", ())] == 0  # run_once does not hold the lease as a leader gauge
    assert moved("digestbot_web_requests_total", route="/metrics", status="200") == 1  # the first scrape


def test_the_metrics_port_serves_and_is_closed_afterwards(tmp_path) -> None:
    from digestbot.cli.processes import _metrics_server

    port = free_port()
    with _metrics_server(Settings(metrics_port=port)):
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert answer.status_code == 200 and "digestbot_leader" in answer.text
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)


# ============================================================================ logs

SECRETS = {
    "SENDGRID_API_KEY": "SG.s3cr3tKeyAbCdEf.GhIjKlMnOpQrStUvWx",
    "SLACK_BOT_TOKEN": "xoxb-1111-2222-s3cr3tTokenValue",
    "SLACK_SIGNING_SECRET": "f00dfacecafebabe0123456789abcdef",
    "DIGESTBOT_SECRET_KEY": "the-link-signing-s3cret-0123456789",
    "DIGESTBOT_SENDGRID_WEBHOOK_SECRET": "webhook-s3cret-0123456789abcdef",
    "DIGESTBOT_SMTP_PASSWORD": "smtp-pa55word-s3cret",
}
HOOK_PATH = "T0SECRET1/B0SECRET2/XXXXs3cr3tHookXXXX"


def test_logs_are_one_json_event_a_line_and_never_carry_a_secret(engine, tmp_path, fake_sendgrid,
                                                                 fake_slack) -> None:
    hook = fake_slack.webhook_url(HOOK_PATH)
    env = {**SECRETS, "DIGESTBOT_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "DIGESTBOT_WATCH_DIR": str(tmp_path / "dumps"), "DIGESTBOT_OUTBOX_DIR": str(tmp_path / "outbox"),
           "DIGESTBOT_SETTLE_SECONDS": "0", "DIGESTBOT_EMAIL_BACKEND": "sendgrid",
           "SENDGRID_API_HOST": fake_sendgrid.url, "SLACK_API_URL": fake_slack.api_url,
           "DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS": "1", "DIGESTBOT_LOG_FORMAT": "json", "DIGESTBOT_LOG_LEVEL": "DEBUG",
           "DIGESTBOT_BASE_URL": "https://digest.example.com", "DIGESTBOT_SEND_ATTEMPTS": "1"}
    settings = Settings.load(env=env, dotenv_path=None)
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure(settings, stream=stream)
    try:
        clock = Clock(T0)
        parts = bootstrap(settings, engine=engine, clock=clock)
        for recipient in ("ada@example.org", f"slack-webhook:{hook}", "slack:#papers"):
            subscribe(parts.store, recipient, "diffusion", schedule=parse_schedule("daily"), now=T0,
                      private_webhooks=True)
        (tmp_path / "dumps").mkdir()
        shutil.copy(SAMPLES / NAMES[0], tmp_path / "dumps" / NAMES[0])
        (tmp_path / "dumps" / "broken.json").write_text("{not json")
        # Every provider refuses: the failures (with whatever the providers said) are logged.
        fake_sendgrid.script(401, {"errors": [{"message": f"bad key {SECRETS['SENDGRID_API_KEY']}"}]})
        fake_slack.script(404, "no_service")  # the webhook and chat.postMessage, whichever comes first
        fake_slack.script(404, "no_service")
        clock.now = datetime(2025, 12, 1, 8, 5, tzinfo=UTC)
        Bot(parts).run_once()
        client = create_app(parts).test_client()
        client.get(f"/manage/{'x' * 40}")  # a token in the path
        client.post(f"/sendgrid/events?secret={SECRETS['DIGESTBOT_SENDGRID_WEBHOOK_SECRET']}", json=[])
        logging.getLogger("digestbot").error("a library said %s", f"token={SECRETS['SLACK_BOT_TOKEN']} url={hook}")
        parts.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    text = stream.getvalue()
    events = [json.loads(line) for line in text.splitlines()]  # every line one JSON event
    assert len(events) > 5
    for secret in [*SECRETS.values(), HOOK_PATH, "s3cr3tHook"]:
        assert secret not in text, secret
    assert all({"ts", "level", "logger", "message"} <= set(e) for e in events)
    ingested = [e for e in events if e["message"].startswith("ingested")]
    assert ingested and ingested[0]["job"] == "watch" and ingested[0]["file"].endswith(NAMES[0])
    failed = [e for e in events if e.get("message_id") is not None]
    assert {e["channel"] for e in failed} == {"email", "slack", "slack-webhook"}
    queued = [e for e in events if e["message"].startswith("queued")]
    assert {e["cadence"] for e in queued} == {"daily"} and len(queued) == 3
    assert {e["recipient"] for e in queued} >= {"a…@example.org", "slack:#papers"}  # the webhook: shown masked
    assert "ada@example.org" not in text
    assert any(e.get("route") == "/manage/<token>" for e in events)


# ============================================================================ doctor

def test_doctor_says_everything_is_right_when_it_is(run, tmp_path, fake_sendgrid, fake_slack) -> None:
    (tmp_path / "dumps").mkdir()
    env = {"SENDGRID_API_KEY": SECRETS["SENDGRID_API_KEY"], "SENDGRID_API_HOST": fake_sendgrid.url,
           "SLACK_BOT_TOKEN": SECRETS["SLACK_BOT_TOKEN"], "SLACK_API_URL": fake_slack.api_url,
           "DIGESTBOT_BASE_URL": "https://digest.example.com"}
    assert run("init", **env).returncode == 0
    fake_sendgrid.script(200, {"scopes": ["mail.send", "alerts.read"]})
    fake_slack.script(200, {"ok": True, "team": "Lab", "user": "digestbot"})
    proc = run("doctor", **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "✗" not in proc.stdout and proc.stdout.count("✓") == 9
    assert "SendGrid accepts" in proc.stdout and "bot of Lab" in proc.stdout and "digestbot backup" in proc.stdout
    assert "agrees with the providers'" in proc.stdout
    [scopes] = [r for r in fake_sendgrid.requests if r.path == "/v3/scopes"]
    assert scopes.method == "GET" and scopes.headers["Authorization"] == f"Bearer {SECRETS['SENDGRID_API_KEY']}"
    [auth] = [r for r in fake_slack.requests if r.path == "/api/auth.test"]
    assert auth.headers["Authorization"] == f"Bearer {SECRETS['SLACK_BOT_TOKEN']}"


def test_doctor_names_each_problem_and_its_fix_and_exits_1(run, tmp_path, fake_sendgrid, fake_slack) -> None:
    env = {"SENDGRID_API_KEY": SECRETS["SENDGRID_API_KEY"], "SENDGRID_API_HOST": fake_sendgrid.url,
           "SLACK_BOT_TOKEN": SECRETS["SLACK_BOT_TOKEN"], "SLACK_API_URL": fake_slack.api_url,
           "DIGESTBOT_BASE_URL": "http://digest.example.com"}  # no init, no watch folder
    fake_sendgrid.script(401, {"errors": [{"message": "authorization required"}]})
    fake_slack.script(200, {"ok": False, "error": "invalid_auth"})
    proc = run("doctor", "--json", **env)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    failed = {c["name"]: c for c in report["checks"] if not c["ok"]}
    assert report["ok"] is False and set(failed) == {"database", "watch folder", "email", "slack", "base URL"}
    assert failed["database"]["fix"] == "run digestbot init"
    assert "SENDGRID_API_KEY" in failed["email"]["fix"] and "invalid_auth" in failed["slack"]["detail"]
    assert "https" in failed["base URL"]["fix"]
    for secret in (SECRETS["SENDGRID_API_KEY"], SECRETS["SLACK_BOT_TOKEN"]):
        assert secret not in proc.stdout + proc.stderr

    fake_sendgrid.script(200, {"scopes": ["alerts.read"]})  # accepted, but cannot send mail
    proc = run("doctor", **env)
    assert proc.returncode == 1 and "✗ email: SENDGRID_API_KEY lacks the Mail Send permission" in proc.stdout


def test_doctor_reports_settings_that_do_not_parse(run) -> None:
    proc = run("doctor", DIGESTBOT_RETENTION_DAYS="ninety")
    assert proc.returncode == 1
    assert "✗ settings: DIGESTBOT_RETENTION_DAYS must be a int, not 'ninety'" in proc.stdout


def test_doctor_logs_in_to_the_smtp_server_and_says_when_it_refuses(tmp_path) -> None:
    from digestbot.services.doctor import run_checks
    from fakes import FakeSmtp

    with FakeSmtp(users={"bot": "right-password"}) as smtp:
        common = dict(watch_dir=tmp_path, outbox_dir=tmp_path / "outbox", email_backend="smtp", slack_backend="file",
                      smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_username="bot", smtp_starttls="no",
                      database_url=f"sqlite:///{tmp_path / 'db.sqlite'}")
        good = {c.name: c for c in run_checks(Settings(**common, smtp_password="right-password"))}
        bad = {c.name: c for c in run_checks(Settings(**common, smtp_password="wrong-password"))}
    assert good["email"].ok and "accepts the login" in good["email"].detail
    assert not bad["email"].ok and "refused the login" in bad["email"].detail
    assert "DIGESTBOT_SMTP_PASSWORD" in bad["email"].fix and "wrong-password" not in bad["email"].detail
    assert not good["base URL"].ok  # real email with http:// links
