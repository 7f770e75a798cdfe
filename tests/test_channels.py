"""Each delivery channel through its real SDK, over real HTTP/SMTP, against fakes on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from digestbot.channels import (
    FileChannel,
    PermanentDeliveryError,
    SendGridChannel,
    SlackChannel,
    SlackWebhookChannel,
    SmtpChannel,
    TransientDeliveryError,
    channels_for,
)
from digestbot.channels.slack import Pacer
from digestbot.errors import ConfigError
from digestbot.settings import Settings
from fakes import (  # noqa: F401 - fake_* are pytest fixtures
    FakeSlack,
    FakeSmtp,
    fake_sendgrid,
    fake_slack,
    fake_smtp,
    free_port,
)

UNSUBSCRIBE = "<https://digest.example.com/unsubscribe/tok3n>"
BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*3 new papers* for `diffusion` ✨"}}]


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """slack_sdk sends through $HTTPS_PROXY ignoring $NO_PROXY: keep every request on 127.0.0.1."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def email_payload(**changes: Any) -> dict[str, Any]:
    payload = {
        "key": "d-3f2a9c-1",
        "message_id": "<d-3f2a9c-1@digestbot>",
        "to": "ada@example.org",
        "from_email": "digest@example.com",
        "from_name": "Paper Digest — Zoë",
        "subject": "3 new papers on Über-Diffusion ✨",
        "text": "Hello Ada,\n\n1. Diffusion für alle — https://example.org/p/1\n",
        "html": "<p>Hello Ada,</p><ol><li>Diffusion für alle ✨</li></ol>",
        "headers": {"List-Unsubscribe": UNSUBSCRIBE, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    }
    return payload | changes


def slack_payload(channel: str = "#papers", **changes: Any) -> dict[str, Any]:
    payload = {"key": "d-77b1-2", "channel": channel, "text": "3 new papers for diffusion", "blocks": BLOCKS,
               "unfurl_links": False, "unfurl_media": False}
    return payload | changes


def sendgrid(fake: Any, timeout: float = 5.0) -> SendGridChannel:
    return SendGridChannel("SG.test-key", fake.url, timeout)


def slack(fake: FakeSlack, timeout: float = 5.0) -> SlackChannel:
    return SlackChannel("xoxb-test-token", fake.api_url, timeout, pacer=Pacer(0.0))


# ---------------------------------------------------------------- SendGrid


def test_sendgrid_posts_the_mail_and_returns_the_message_id(fake_sendgrid) -> None:
    assert sendgrid(fake_sendgrid).send(email_payload()) == "fake-sg-1"

    [request] = fake_sendgrid.requests
    assert request.headers["Authorization"] == "Bearer SG.test-key"
    mail = request.json
    assert [c["type"] for c in mail["content"]] == ["text/plain", "text/html"]
    assert mail["content"][0]["value"] == email_payload()["text"]
    assert mail["from"] == {"email": "digest@example.com", "name": "Paper Digest — Zoë"}
    assert mail["personalizations"][0]["to"] == [{"email": "ada@example.org"}]
    assert mail["subject"] == "3 new papers on Über-Diffusion ✨"
    # The Message-ID too, so every channel gives a digest the same id (threads, dedupe).
    assert mail["headers"] == email_payload()["headers"] | {"Message-ID": "<d-3f2a9c-1@digestbot>"}
    assert mail["custom_args"] == {"digestbot_key": "d-3f2a9c-1"}


def test_sendgrid_429_is_transient_until_the_rate_limit_resets(fake_sendgrid) -> None:
    reset = int(time.time()) + 30
    fake_sendgrid.script(429, {"errors": [{"message": "too many requests"}]}, {"X-RateLimit-Reset": str(reset)})
    fake_sendgrid.script(429)
    channel = sendgrid(fake_sendgrid)

    with pytest.raises(TransientDeliveryError) as caught:
        channel.send(email_payload())
    assert caught.value.retry_after == pytest.approx(reset - time.time(), abs=1.5)
    with pytest.raises(TransientDeliveryError) as caught:
        channel.send(email_payload())
    assert caught.value.retry_after is None
    assert channel.send(email_payload()) == "fake-sg-1"  # the script is used up: accepted again


@pytest.mark.parametrize("status", [500, 502, 503])
def test_sendgrid_server_errors_are_transient(fake_sendgrid, status: int) -> None:
    fake_sendgrid.script(status, "upstream trouble")
    with pytest.raises(TransientDeliveryError, match=str(status)):
        sendgrid(fake_sendgrid).send(email_payload())


@pytest.mark.parametrize("status", [400, 401, 403, 413, 422])
def test_sendgrid_client_errors_are_permanent_and_keep_the_reason(fake_sendgrid, status: int) -> None:
    reason = "The from address does not match a verified Sender Identity"
    fake_sendgrid.script(status, {"errors": [{"message": reason, "field": "from"}]})
    with pytest.raises(PermanentDeliveryError, match=reason):
        sendgrid(fake_sendgrid).send(email_payload())


def test_sendgrid_slow_answer_is_a_transient_timeout(fake_sendgrid) -> None:
    fake_sendgrid.script_delay(3)
    started = time.monotonic()
    with pytest.raises(TransientDeliveryError):
        sendgrid(fake_sendgrid, timeout=0.3).send(email_payload())
    assert time.monotonic() - started < 2


def test_sendgrid_refused_connection_is_transient() -> None:
    channel = SendGridChannel("SG.test-key", f"http://127.0.0.1:{free_port()}", 2)
    with pytest.raises(TransientDeliveryError, match="unreachable"):
        channel.send(email_payload())


def test_sendgrid_repr_hides_the_key() -> None:
    assert "SG.test-key" not in repr(SendGridChannel("SG.test-key"))


# ---------------------------------------------------------------- Slack (bot token)


def test_slack_posts_the_message_and_returns_its_ts(fake_slack) -> None:
    ts = slack(fake_slack).send(slack_payload())

    [request] = fake_slack.posts
    assert request.headers["Authorization"] == "Bearer xoxb-test-token"
    assert request.json == {"channel": "#papers", "text": "3 new papers for diffusion", "blocks": BLOCKS,
                            "unfurl_links": False, "unfurl_media": False}  # no link_names, no parse
    assert ts and ts.endswith(".000001")


def test_slack_sdk_retries_a_rate_limit_itself(fake_slack) -> None:
    fake_slack.script(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "0"})
    assert slack(fake_slack).send(slack_payload())
    assert len(fake_slack.posts) == 2


def test_slack_rate_limit_beyond_the_sdk_retries_is_transient_with_retry_after(fake_slack) -> None:
    for retry_after in ("0", "0", "7"):  # the SDK retries twice, sleeping Retry-After (+ up to 1 s)
        fake_slack.script(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": retry_after})
    with pytest.raises(TransientDeliveryError) as caught:
        slack(fake_slack).send(slack_payload())
    assert caught.value.retry_after == 7
    assert len(fake_slack.posts) == 3


def test_slack_server_errors_are_retried_then_transient(fake_slack) -> None:
    for _ in range(3):
        fake_slack.script(500, "<html>oops</html>")
    with pytest.raises(TransientDeliveryError, match="500"):
        slack(fake_slack).send(slack_payload())
    assert len(fake_slack.posts) == 3


@pytest.mark.parametrize("error", ["channel_not_found", "not_in_channel", "invalid_auth", "msg_too_long",
                                   "invalid_blocks"])
def test_slack_errors_about_the_message_are_permanent(fake_slack, error: str) -> None:
    fake_slack.script(200, {"ok": False, "error": error})
    with pytest.raises(PermanentDeliveryError, match=error):
        slack(fake_slack).send(slack_payload())
    assert len(fake_slack.posts) == 1


def test_slack_slow_answer_is_a_transient_timeout(fake_slack) -> None:
    fake_slack.script_delay(3)
    started = time.monotonic()
    with pytest.raises(TransientDeliveryError):
        slack(fake_slack, timeout=0.3).send(slack_payload())
    assert time.monotonic() - started < 2


def test_slack_pace_is_one_message_per_second_per_channel_across_threads(fake_slack) -> None:
    # Two channel objects on the default, process-wide pacer: the pace holds across both.
    first = SlackChannel("xoxb-test-token", fake_slack.api_url, 5)
    second = SlackChannel("xoxb-test-token", fake_slack.api_url, 5)

    def run_all(sends: list[tuple[SlackChannel, str]]) -> float:
        started = time.monotonic()
        threads = [threading.Thread(target=c.send, args=(slack_payload(name),)) for c, name in sends]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - started

    assert run_all([(first, "#a"), (second, "#b"), (first, "#c")]) < 0.8  # different channels: no wait
    fake_slack.requests.clear()
    assert run_all([(first, "#same"), (second, "#same"), (first, "#same")]) >= 1.9
    arrivals = sorted(r.at for r in fake_slack.posts)
    assert [b - a for a, b in zip(arrivals, arrivals[1:])] >= [0.9, 0.9]


# ---------------------------------------------------------------- Slack (incoming webhook)


def test_webhook_posts_the_message(fake_slack) -> None:
    channel = SlackWebhookChannel(5, pacer=Pacer(0.0))
    assert channel.send(slack_payload(fake_slack.webhook_url())) is None
    [request] = fake_slack.hook_posts
    assert request.path == "/hooks/T000/B000/XXXX"
    assert request.json == {"text": "3 new papers for diffusion", "blocks": BLOCKS,
                            "unfurl_links": False, "unfurl_media": False}


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (429, "rate_limited", TransientDeliveryError),
        (500, "internal_error", TransientDeliveryError),
        (400, "invalid_payload", PermanentDeliveryError),
        (403, "action_prohibited", PermanentDeliveryError),
        (404, "channel_not_found", PermanentDeliveryError),
        (410, "channel_is_archived", PermanentDeliveryError),
    ],
)
def test_webhook_errors(fake_slack, status: int, body: str, error: type[Exception]) -> None:
    fake_slack.script(status, body, {"Retry-After": "5"} if status == 429 else {})
    with pytest.raises(error) as caught:
        SlackWebhookChannel(5, pacer=Pacer(0.0)).send(slack_payload(fake_slack.webhook_url()))
    if status == 429:
        assert caught.value.retry_after == 5
    else:
        assert body in str(caught.value)
    assert "XXXX" not in str(caught.value)  # the URL is a credential


def test_webhook_refused_connection_is_transient_and_hides_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/T000/B000/SECRET"
    with pytest.raises(TransientDeliveryError) as caught:
        SlackWebhookChannel(2, pacer=Pacer(0.0)).send(slack_payload(url))
    assert "SECRET" not in str(caught.value)


# ---------------------------------------------------------------- SMTP


def parsed(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def assert_is_the_digest_email(message: email.message.EmailMessage) -> None:
    payload = email_payload()
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert text.get_content() == payload["text"]
    assert html.get_content().rstrip("\n") == payload["html"]
    assert message["Subject"] == payload["subject"]
    assert message["From"].addresses[0].display_name == payload["from_name"]
    assert message["From"].addresses[0].addr_spec == payload["from_email"]
    assert message["To"] == payload["to"]
    assert message["Message-ID"] == payload["message_id"]
    assert message["Date"]
    assert message["List-Unsubscribe"] == UNSUBSCRIBE
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_smtp_delivers_the_mime_message(fake_smtp: FakeSmtp) -> None:
    channel = SmtpChannel("127.0.0.1", fake_smtp.port, starttls="auto", timeout=5)
    assert channel.send(email_payload()) == "<d-3f2a9c-1@digestbot>"
    [delivered] = fake_smtp.delivered
    assert (delivered.mail_from, delivered.rcpt_tos) == ("digest@example.com", ["ada@example.org"])
    assert delivered.content.isascii()  # 7-bit clean: no 8BITMIME or SMTPUTF8 needed
    assert_is_the_digest_email(parsed(delivered.content.replace(b"\r\n", b"\n")))  # as it was on the wire


def test_smtp_logs_in_and_a_wrong_password_is_permanent() -> None:
    with FakeSmtp(users={"bot": "s3cret"}) as server:
        SmtpChannel("127.0.0.1", server.port, "bot", "s3cret", "auto", 5).send(email_payload())
        assert len(server.delivered) == 1
        with pytest.raises(PermanentDeliveryError, match="535"):
            SmtpChannel("127.0.0.1", server.port, "bot", "wrong", "auto", 5).send(email_payload())


@pytest.mark.parametrize(
    ("command", "reply", "error"),
    [
        ("rcpt", "550 5.1.1 no such user", PermanentDeliveryError),
        ("rcpt", "450 4.2.0 greylisted, try again later", TransientDeliveryError),
        ("data", "554 5.7.1 message rejected as spam", PermanentDeliveryError),
        ("data", "451 4.3.0 queue full", TransientDeliveryError),
    ],
)
def test_smtp_replies_map_to_errors(fake_smtp: FakeSmtp, command: str, reply: str, error: type[Exception]) -> None:
    getattr(fake_smtp, f"{command}_replies").append(reply)
    with pytest.raises(error, match=reply.split()[0]):
        SmtpChannel("127.0.0.1", fake_smtp.port, timeout=5).send(email_payload())
    assert fake_smtp.delivered == []


def test_smtp_starttls_yes_refuses_a_server_without_it(fake_smtp: FakeSmtp) -> None:
    with pytest.raises(PermanentDeliveryError, match="STARTTLS"):
        SmtpChannel("127.0.0.1", fake_smtp.port, starttls="yes", timeout=5).send(email_payload())
    assert fake_smtp.delivered == []


def test_smtp_refused_connection_is_transient() -> None:
    with pytest.raises(TransientDeliveryError, match="unreachable"):
        SmtpChannel("127.0.0.1", free_port(), timeout=2).send(email_payload())


def test_smtp_rejects_an_unknown_starttls_mode() -> None:
    with pytest.raises(ConfigError):
        SmtpChannel("127.0.0.1", 25, starttls="maybe")


# ---------------------------------------------------------------- file


def test_file_channel_writes_a_parseable_eml(tmp_path: Path) -> None:
    path = FileChannel(tmp_path, "email").send(email_payload())
    assert path == str(tmp_path / "email" / "d-3f2a9c-1.eml")
    assert_is_the_digest_email(parsed(Path(path).read_bytes()))


def test_file_channel_writes_the_exact_slack_json(tmp_path: Path) -> None:
    path = Path(FileChannel(tmp_path, "slack").send(slack_payload()) or "")
    assert path == tmp_path / "slack" / "d-77b1-2.json"
    assert json.loads(path.read_text("utf-8")) == {
        "channel": "#papers", "text": "3 new papers for diffusion", "blocks": BLOCKS,
        "unfurl_links": False, "unfurl_media": False,
    }
    assert "✨" in path.read_text("utf-8")  # readable UTF-8, not \u escapes


def test_file_channel_webhook_json_leaves_out_the_url(tmp_path: Path) -> None:
    path = Path(FileChannel(tmp_path, "slack-webhook").send(slack_payload("https://hooks.slack.com/x/SECRET")) or "")
    assert "SECRET" not in path.read_text("utf-8")
    assert json.loads(path.read_text("utf-8"))["blocks"] == BLOCKS


def test_file_channel_retry_of_a_key_replaces_the_same_file(tmp_path: Path) -> None:
    channel = FileChannel(tmp_path, "email")
    first = channel.send(email_payload())
    second = channel.send(email_payload(subject="edited"))
    assert first == second
    assert [p.name for p in (tmp_path / "email").iterdir()] == ["d-3f2a9c-1.eml"]  # no temp files left
    assert parsed(Path(second or "").read_bytes())["Subject"] == "edited"


def test_file_channel_errors(tmp_path: Path) -> None:
    with pytest.raises(PermanentDeliveryError):
        FileChannel(tmp_path, "email").send(email_payload(key="../escape"))
    with pytest.raises(PermanentDeliveryError, match="malformed"):  # header injection
        FileChannel(tmp_path, "email").send(email_payload(subject="Hi\r\nBcc: everyone@example.org"))
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    with pytest.raises(TransientDeliveryError):
        FileChannel(blocked, "slack").send(slack_payload())


# ---------------------------------------------------------------- wiring


def settings(**env: str) -> Settings:
    return Settings.load(env=env, dotenv_path=None)


def test_channels_default_to_files_without_credentials(tmp_path: Path) -> None:
    channels = channels_for(settings(DIGESTBOT_OUTBOX_DIR=str(tmp_path)))
    assert {kind: type(c) for kind, c in channels.items()} == {
        "email": FileChannel, "slack": FileChannel, "slack-webhook": FileChannel,
    }
    assert channels["email"].send(email_payload()) == str(tmp_path / "email" / "d-3f2a9c-1.eml")


def test_channels_use_the_providers_with_credentials(fake_sendgrid, fake_slack) -> None:
    channels = channels_for(settings(
        SENDGRID_API_KEY="SG.wired", SENDGRID_API_HOST=fake_sendgrid.url,
        SLACK_BOT_TOKEN="xoxb-wired", SLACK_API_URL=fake_slack.api_url,
    ))
    assert {kind: type(c) for kind, c in channels.items()} == {
        "email": SendGridChannel, "slack": SlackChannel, "slack-webhook": SlackWebhookChannel,
    }
    channels["email"].send(email_payload())
    channels["slack"].send(slack_payload("#wired"))
    assert fake_sendgrid.requests[0].headers["Authorization"] == "Bearer SG.wired"
    assert fake_slack.posts[0].headers["Authorization"] == "Bearer xoxb-wired"


def test_channels_smtp_backend() -> None:
    assert isinstance(channels_for(settings(DIGESTBOT_EMAIL_BACKEND="smtp"))["email"], SmtpChannel)


@pytest.mark.parametrize(
    ("env", "missing"),
    [({"DIGESTBOT_EMAIL_BACKEND": "sendgrid"}, "SENDGRID_API_KEY"),
     ({"DIGESTBOT_SLACK_BACKEND": "slack"}, "SLACK_BOT_TOKEN")],
)
def test_a_chosen_provider_without_credentials_is_a_config_error(env: dict[str, str], missing: str) -> None:
    with pytest.raises(ConfigError) as caught:
        channels_for(settings(**env))
    assert missing in str(caught.value) and caught.value.hint
