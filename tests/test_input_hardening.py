"""Every bad input is one line: queries and names are one printable line, numbers and times are
bounded, forms need their fields, webhooks stay out of the private network, the query preview is
limited, and no token reaches a log line.

Each class of problem is tried at every entry point that can bring it in: the parser, the CLI
(run as a user runs it), the web pages and the Slack command (through Flask's test client), and
the CSV import, on SQLite and PostgreSQL where the store is involved.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from conftest import copy_samples, one_line_error, write_dated
from digestbot.bootstrap import bootstrap
from digestbot.channels import channels_for
from digestbot.core.query import QueryError, parse_query, parse_stored_query
from digestbot.core.recipients import parse_recipient
from digestbot.core.schedule import parse_schedule
from digestbot.core.slash import parse_command
from digestbot.core.tokens import LinkSigner
from digestbot.errors import ConfigError, NotFound, UsageError
from digestbot.services.delivery import OutboxSender
from digestbot.services.digests import signing_key
from digestbot.services.health import queue_admin_alerts
from digestbot.services.ingest import ingest_paths
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.search import PREVIEW_PAPERS, RecentPapers
from digestbot.services.subscriptions import (
    import_subscriptions, owned_subscription, subscribe, unsubscribe, unsubscribe_recipient,
)
from digestbot.settings import Settings
from digestbot.store import OutboxMessage, Paper, Store, Subscription
from digestbot.web import create_app

NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)
SLACK_SECRET = "hardening-signing-secret"
FORM = {"email": "ada@example.org", "query": "diffusion", "cadence": "weekly", "at": "07:30", "day": "fri",
        "tz": "Europe/Paris"}

# What has no place in one line of text, and the column (1-based) where each one sits.
NOT_ONE_LINE = [
    ("diffusion\nBcc: eve@example.org", 10, "line break"),
    ("diffusion\r\nmodel", 10, "line break"),
    ("a\u2028b", 2, "line break"),
    ("a\u2029b", 2, "line break"),
    ("a\x85b", 2, "line break"),
    ("a\x0bb", 2, "line break"),
    ("diffusion\tmodel", 10, "tab"),
    ("abc\x00", 4, "U+0000"),
    ("abc\x1b[31m", 4, "U+001B"),
    ("zero\u200bwidth", 5, "U+200B"),
    ("soft\xadhyphen", 5, "U+00AD"),
    ("evil\u202etxt", 5, "U+202E"),
    ("private\ue000use", 8, "U+E000"),
    ("foo\udcff", 4, "not UTF-8"),  # what a command-line byte that is not UTF-8 becomes
]


def quiet_settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.load(env={"DIGESTBOT_OUTBOX_DIR": str(tmp_path / "outbox"), **env}, dotenv_path=None)


def count(engine, model) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(model))


# ==================================================================== 1. a query is one line


@pytest.mark.parametrize(("query", "column", "what"), NOT_ONE_LINE)
def test_the_parser_refuses_what_is_not_one_printable_line_at_its_column(query, column, what) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(query)
    assert caught.value.column == column
    assert what in caught.value.problem and "one line" in caught.value.problem
    assert str(caught.value).isprintable()  # the message itself is one printable line


@pytest.mark.parametrize("query", ["language\xa0model", "language\u3000model", "  diffusion\n", "\tdiffusion "])
def test_spaces_of_every_kind_and_whitespace_around_the_query_are_fine(query) -> None:
    assert parse_query(query) == parse_query(" ".join(query.split()))


def test_the_column_counts_from_the_query_as_written() -> None:
    with pytest.raises(QueryError) as caught:
        parse_query("  a\nb")
    assert caught.value.column == 4


def test_a_query_stored_before_the_rule_keeps_its_meaning() -> None:
    assert parse_stored_query("diffusion\nmodel") == parse_query("diffusion model")


@pytest.mark.parametrize(("name", "column", "what"), [
    ("My\nfeed", 3, "line break"), ("My\tfeed", 3, "tab"), ("  x\u200by", 4, "U+200B"), ("feed\udcff", 5, "not UTF-8"),
])
def test_a_name_is_one_line_too(engine, name, column, what) -> None:
    with pytest.raises(UsageError) as caught:
        subscribe(Store(engine), "ada@example.org", "diffusion", schedule=parse_schedule(), name=name, now=NOW)
    message = str(caught.value)
    assert what in message and f"column {column}" in message and message.isprintable()
    assert count(engine, Subscription) == 0


def test_the_cli_refuses_a_line_break_in_a_query_or_a_name(run) -> None:
    assert run("init").returncode == 0
    for args in (["subscribe", "ada@example.org", "diffusion\nBcc: eve@example.org"],
                 ["search", "diffusion\nmodel"],
                 ["subscribe", "ada@example.org", "diffusion", "--name", "a\nb"]):
        proc = run(*args)
        assert proc.returncode == 2 and proc.stdout == ""
        line = one_line_error(proc)
        assert "line break" in line and "column" in line
    assert json.loads(run("subscriptions", "--json").stdout) == []


def test_the_csv_import_reports_a_line_break_in_a_quoted_query(engine) -> None:
    csv_text = 'recipient,query\nada@example.org,"diffusion\nBcc: eve@example.org"\nbob@example.org,llm\n'
    report = import_subscriptions(Store(engine), csv_text, NOW)
    assert report.imported == 1
    [(line, reason)] = report.errors
    assert line == 2 and "line break" in reason and "column 10" in reason
    with Session(engine) as session:
        assert list(session.scalars(select(Subscription.query))) == ["llm"]


def test_the_slack_command_refuses_a_line_break_in_a_query(engine, tmp_path) -> None:
    command = parse_command("subscribe diffusion\nBcc: eve weekly")
    assert command.query == "diffusion\nBcc: eve"  # the command splits words; the parser refuses
    client = web_client(engine, tmp_path)
    answer = slack_request(client, "subscribe diffusion\nBcc: eve weekly").get_json()
    assert answer["response_type"] == "ephemeral" and "line break" in answer["text"] and "column 10" in answer["text"]
    assert count(engine, Subscription) == 0


def test_the_web_form_and_the_manage_page_refuse_a_line_break(engine, tmp_path) -> None:
    client = web_client(engine, tmp_path)
    page = client.post("/", data={"csrf": csrf_of(client), **FORM, "query": "diffusion\nBcc: eve@example.org"})
    assert page.status_code == 400 and "line break" in page.get_data(as_text=True)
    assert count(engine, Subscription) == 0 and count(engine, OutboxMessage) == 0  # no confirmation email

    sub_id, token = stored_subscription(engine, tmp_path)
    edit = client.post(f"/manage/{token}/{sub_id}/edit",
                       data={"csrf": csrf_of(client), **FORM, "query": "diffusion\r\nmodel"})
    assert edit.status_code == 400 and "line break" in edit.get_data(as_text=True)
    with Session(engine) as session:
        assert session.get(Subscription, sub_id).query == "diffusion"


def test_an_old_query_with_a_line_break_still_gets_its_digest_with_a_one_line_subject(engine, tmp_path) -> None:
    """A query stored before the rule: it matches as before, and its digest is sent (the subject, a
    header, would make every message to the recipient fail with a line break in it)."""
    sub, _ = subscribe(Store(engine), "ada@example.org", "diffusion", schedule=parse_schedule(), now=NOW)
    with Session(engine) as session, session.begin():
        session.get(Subscription, sub.id).query = "diffusion\r\nmodel"  # as an older digestbot let it be saved
    dumps = sorted(copy_samples(tmp_path / "dumps", (NOW - timedelta(days=30)).timestamp()).iterdir())
    ingest_paths(Store(engine), dumps, now=NOW + timedelta(minutes=30), settle_seconds=0, matcher=SubscriptionMatcher())
    settings = quiet_settings(tmp_path, DIGESTBOT_EMAIL_BACKEND="file")
    [built] = bootstrap(settings, engine=engine).digests.build_due(NOW + timedelta(hours=2))
    assert built.papers > 0 and '"diffusion model"' in built.subject and built.subject.isprintable()
    report = OutboxSender(Store(engine), channels_for(settings), settings).send_all()
    assert (report.sent, report.failed) == (1, 0), report.errors
    [eml] = (tmp_path / "outbox" / "email").glob("*.eml")
    [subject] = [line for line in eml.read_text().splitlines() if line.startswith("Subject:")]
    assert '"diffusion model"' in subject


def test_a_dump_file_name_with_a_line_break_still_reaches_the_admin(engine, tmp_path) -> None:
    """The admin's alert about a failed file names the file in its subject."""
    bad = write_dated(tmp_path / "dumps" / "broken\nBcc: eve@example.org.json", "not json",
                      (NOW - timedelta(days=1)).timestamp())
    report = ingest_paths(Store(engine), [bad], now=NOW, settle_seconds=0, matcher=SubscriptionMatcher())
    assert report.files[0].status == "failed"
    settings = quiet_settings(tmp_path, DIGESTBOT_EMAIL_BACKEND="file", DIGESTBOT_ADMIN="admin@example.org")
    assert queue_admin_alerts(Store(engine), settings, NOW) == 1
    report = OutboxSender(Store(engine), channels_for(settings), settings).send_all()
    assert (report.sent, report.failed) == (1, 0), report.errors
    [eml] = (tmp_path / "outbox" / "email").glob("*.eml")
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    # The path is shown escaped, as every report of a file shows it: on one line, no header of its own.
    assert message["Subject"].endswith("/dumps/broken\\nBcc: eve@example.org.json") and message["Bcc"] is None


# ================================================================ 2. one line, not a traceback


def test_a_query_argument_that_is_not_utf8_is_one_line(run) -> None:
    assert run("init").returncode == 0
    for args in (["subscribe", "ada@example.org", "foo\udcff"], ["search", "foo\udcff"]):
        proc = run(*args)  # subprocess passes the surrogate on as the byte 0xFF
        assert proc.returncode == 2
        line = one_line_error(proc)
        assert "not UTF-8" in line and "column 4" in line


def test_numbers_and_times_out_of_range_are_one_line(run) -> None:
    assert run("init").returncode == 0
    assert run("subscribe", "ada@example.org", "diffusion", "--cadence", "weekly", "--tz", "Pacific/Kiritimati"
               ).returncode == 0
    for args, words in [
        (["subscribe", "bob@example.org", "llm", "--backfill", "1000000000"], "36500"),
        (["digest", "--now", "9999-12-31T23:59:59+00:00"], "1970 to 9998"),
        (["digest", "--dry-run", "--now", "0001-01-01T00:00:00+01:00"], "1970 to 9998"),
        (["preview", "ada@example.org", "--now", "9999-12-31T23:59:59+00:00"], "1970 to 9998"),
        (["subscribe", "bob@example.org", "llm", "--at", "99:99"], "99:99"),
        (["subscribe", "bob@example.org", "llm", "--tz", "Europe/Paris\x01"], "time zone"),
    ]:
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert words in one_line_error(proc)
    assert len(json.loads(run("subscriptions", "--json").stdout)) == 1


def test_huge_limits_and_ids_are_no_traceback(run) -> None:
    assert run("init").returncode == 0
    huge = str(10**22)
    for args in (["papers", "--limit", huge], ["outbox", "--limit", huge], ["search", "diffusion", "--limit", huge]):
        proc = run(*args, "--json")
        assert proc.returncode == 0 and json.loads(proc.stdout) == [], proc.stderr
    for args in (["unsubscribe", huge], ["outbox", "retry", huge]):
        proc = run(*args)
        assert proc.returncode == 1 and huge in one_line_error(proc)


def test_ids_no_column_can_hold_name_nothing(engine) -> None:
    for subscription_id in (2**63, 10**22):
        with pytest.raises(NotFound):
            unsubscribe(Store(engine), subscription_id, NOW)
        with pytest.raises(NotFound):
            owned_subscription(Store(engine), 1, subscription_id)


@pytest.mark.parametrize("text", ["unsubscribe ²", "unsubscribe ١٢", "unsubscribe 1.5"])
def test_the_slack_command_takes_an_id_in_ascii_digits(text) -> None:
    with pytest.raises(UsageError, match="subscription's id"):
        parse_command(text)


@pytest.mark.parametrize("missing", ["query", "cadence", "at", "day", "tz"])
def test_an_edit_missing_a_field_is_400_and_changes_nothing(engine, tmp_path, missing) -> None:
    client = web_client(engine, tmp_path)
    sub_id, token = stored_subscription(engine, tmp_path, cadence="weekly")
    data = {"csrf": csrf_of(client), **FORM}
    del data[missing]
    response = client.post(f"/manage/{token}/{sub_id}/edit", data=data)
    assert response.status_code == 400
    shown = re.search(r'class="query-error"[^>]*>\s*<p>(.*?)</p>', response.get_data(as_text=True), re.S)
    assert shown and repr(missing) in shown.group(1).replace("&#39;", "'") and "\n" not in shown.group(1)
    with Session(engine) as session:
        sub = session.get(Subscription, sub_id)
        assert (sub.query, sub.cadence, sub.send_at, sub.timezone) == ("diffusion", "weekly", "08:00", "UTC")


def test_hostile_form_fields_are_400_or_404_never_500(engine, tmp_path) -> None:
    client = web_client(engine, tmp_path)
    for field, value in [("tz", "UTC\x00"), ("tz", "x" * 5000), ("at", "99:99"), ("at", "\x00"), ("day", "\x00"),
                         ("cadence", "\x00"), ("email", "a\x00@example.org"), ("query", "q\x00")]:
        response = client.post("/", data={"csrf": csrf_of(client), **FORM, field: value})
        assert response.status_code == 400, (field, value)
    sub_id, token = stored_subscription(engine, tmp_path)
    assert client.post(f"/manage/{token}/{10**22}/pause", data={"csrf": csrf_of(client)}).status_code == 404
    assert client.get("/api/query", query_string={"q": "a" * 10_000_000}).get_json() == {
        "ok": False, "error": {"message": "longer than 500 characters", "column": 501}}
    assert count(engine, Subscription) == 1


def test_no_token_in_any_log_record(engine, tmp_path) -> None:
    """Every record of every logger, at every level, while links are followed and fail."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    handler, level = Keep(logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        client = web_client(engine, tmp_path)
        client.post("/", data={"csrf": csrf_of(client), **FORM})
        with Session(engine) as session:
            [message] = session.scalars(select(OutboxMessage))
            confirm = re.search(r"https://digest\.example\.org(/confirm/\S+)", json.loads(message.payload)["text"])[1]
        tokens = [confirm.rpartition("/")[2]]
        client.get(confirm)
        manage = client.post(confirm, data={"csrf": csrf_of(client)}).headers["Location"]
        signer = LinkSigner(signing_key(Store(engine), quiet_settings(tmp_path)), "https://digest.example.org")
        with Session(engine) as session:
            sub = session.scalar(select(Subscription))
        unsubscribe_path = signer.unsubscribe_url(sub.recipient_id, [sub.id]).removeprefix(signer.base_url)
        digest_path = signer.digest_url(sub.recipient_id, "no-such-digest").removeprefix(signer.base_url)
        tokens += [path.rpartition("/")[2] for path in (manage, unsubscribe_path, digest_path)]

        assert client.get(manage).status_code == 200
        assert client.post(f"{manage}/{sub.id}/edit", data={"csrf": csrf_of(client)}).status_code == 400
        assert client.post(f"{manage}/{sub.id}/pause", data={"csrf": csrf_of(client)}).status_code == 303
        assert client.get(unsubscribe_path).status_code == 200
        assert client.post(unsubscribe_path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
        assert client.get(digest_path).status_code == 404
        assert client.get(manage + "x").status_code == 404  # a forged token
        # The database loses a table: an unexpected error, logged with its traceback.
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE digest_items"))
        assert client.get(digest_path).status_code == 500
        # waitress writes paths into its own messages, as when a client goes away mid-answer.
        logging.getLogger("waitress").info("Client disconnected while serving %s" % manage)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    logged = [formatter.format(record) for record in records]
    assert any("GET /manage/<token> 200" in line for line in logged)
    assert any("exception on GET /digests/<token>" in line and "digest_items" in line for line in logged)
    assert any("Client disconnected while serving /manage/<token>" in line for line in logged)
    for token in tokens:
        assert len(token) > 20
        leaks = [line[:200] for line in logged if token in line]
        assert not leaks, leaks


# ============================================================== 3. CSV header, webhooks, preview


def test_a_csv_header_naming_a_column_twice_is_refused(engine) -> None:
    with pytest.raises(UsageError) as caught:
        import_subscriptions(Store(engine), "recipient,query,Query\nada@example.org,diffusion,llm\n", NOW)
    assert str(caught.value) == "the CSV header names query more than once"
    assert count(engine, Subscription) == 0


def test_an_unknown_column_with_a_line_break_is_named_on_one_line(engine) -> None:
    with pytest.raises(UsageError) as caught:
        import_subscriptions(Store(engine), 'recipient,query,"a\nb"\nada@example.org,diffusion,x\n', NOW)
    assert str(caught.value) == "unknown CSV column(s): 'a\\nb'"


PRIVATE_WEBHOOKS = [
    "https://127.0.0.1/hooks/x", "https://127.1/hooks/x", "https://2130706433/hooks/x", "https://0x7f.0.0.1/x",
    "https://[::1]/x", "https://[::ffff:127.0.0.1]/x", "https://[::ffff:10.0.0.1]/x", "https://10.1.2.3/x",
    "https://172.16.0.1/x", "https://192.168.1.1/x", "https://169.254.169.254/latest/meta-data",
    "https://[fe80::1]/x", "https://[fc00::1]/x", "https://100.64.0.1/x", "https://0.0.0.0/x", "https://240.0.0.1/x",
    "https://224.0.0.1/x", "https://localhost/x", "https://LOCALHOST./x", "https://api.localhost/x",
    "https://printer.local/x", "https://metadata.google.internal/x", "https://intranet/x",
    "http://127.0.0.1:8080/hooks/x", "https://hooks.slack.com:8443/services/T/B/X",
]


@pytest.mark.parametrize("url", PRIVATE_WEBHOOKS)
def test_webhooks_into_the_private_network_are_refused_unless_allowed(url) -> None:
    with pytest.raises(UsageError) as caught:
        parse_recipient(f"slack-webhook:{url}")
    assert str(caught.value).startswith("bad recipient") and str(caught.value).isprintable()
    assert parse_recipient(f"slack-webhook:{url}", private_webhooks=True).target == url


@pytest.mark.parametrize("url", [
    "https://user:pass@hooks.slack.com/services/T/B/X", "https://user@hooks.slack.com/services/T/B/X",
    "https://:pass@hooks.slack.com/services/T/B/X", "http://hooks.slack.com/services/T/B/X",
    "http://10.0.0.1/hooks/x", "https://hooks.slack.com:99999/x",
])
def test_credentials_plain_http_and_bad_ports_are_refused_even_when_private_is_allowed(url) -> None:
    for private in (False, True):
        with pytest.raises(UsageError, match="bad recipient"):
            parse_recipient(f"slack-webhook:{url}", private_webhooks=private)


@pytest.mark.parametrize("url", [
    "https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com:443/services/T/B/X",
    "https://8.8.8.8/x", "https://[2001:4860:4860::8888]/x",
])
def test_public_webhooks_are_accepted(url) -> None:
    assert parse_recipient(f"slack-webhook:{url}").target == url


def test_the_setting_allows_private_webhooks_in_the_cli_and_the_import(run, tmp_path) -> None:
    assert run("init").returncode == 0
    hook = "slack-webhook:http://127.0.0.1:9/hooks/T/B/X"
    refused = run("subscribe", hook, "diffusion")
    assert refused.returncode == 2 and "DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS" in one_line_error(refused)
    (tmp_path / "hooks.csv").write_text(f"recipient,query\n{hook},llm\n")
    assert run("import-subscriptions", "hooks.csv").returncode == 1
    assert run("subscribe", hook, "diffusion", DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS="1").returncode == 0
    assert run("import-subscriptions", "hooks.csv", DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS="yes").returncode == 0
    # Once stored, the address is found and ended whatever the setting says now.
    listed = json.loads(run("subscriptions", "--recipient", hook, "--json").stdout)
    assert [s["query"] for s in listed] == ["diffusion", "llm"]
    assert run("unsubscribe", "--recipient", hook).returncode == 0


def test_a_stored_private_webhook_is_found_without_the_setting(engine) -> None:
    hook = "slack-webhook:http://127.0.0.1:9/hooks/T/B/X"
    subscribe(Store(engine), hook, "diffusion", schedule=parse_schedule(), private_webhooks=True, now=NOW)
    [ended] = unsubscribe_recipient(Store(engine), hook, NOW)
    assert not ended.active


@pytest.mark.parametrize(("written", "value"), [
    ("1", True), ("true", True), ("Yes", True), ("ON", True), ("0", False), ("false", False), ("no", False),
    ("Off", False), ("", False),
])
def test_booleans_in_settings(written, value) -> None:
    settings = Settings.load(env={"DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS": written}, dotenv_path=None)
    assert settings.allow_private_webhooks is value


def test_a_bad_boolean_and_a_private_admin_webhook_are_one_line_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load(env={"DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS": "maybe"}, dotenv_path=None)
    assert str(caught.value) == "DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS must be 1 or 0 (true/false, yes/no, on/off), not 'maybe'"
    admin = {"DIGESTBOT_ADMIN": "slack-webhook:https://10.0.0.1/hooks/x"}
    with pytest.raises(ConfigError, match="DIGESTBOT_ADMIN"):
        Settings.load(env=admin, dotenv_path=None)
    assert Settings.load(env=admin | {"DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS": "1"}, dotenv_path=None).admin


def test_the_query_preview_has_its_own_rate_limit(engine, tmp_path) -> None:
    client = web_client(engine, tmp_path, DIGESTBOT_WEB_CLIENT_LIMIT="2")
    for _ in range(60):
        assert client.get("/api/query?q=diffusion").status_code == 200
    refused = client.get("/api/query?q=diffusion")
    assert refused.status_code == 429
    body = refused.get_json()
    assert list(body) == ["error"] and "\n" not in body["error"]
    # Another client still may; and subscribing keeps its own count.
    other = web_client(engine, tmp_path)
    assert other.get("/api/query?q=diffusion", environ_base={"REMOTE_ADDR": "192.0.2.7"}).status_code == 200
    assert client.post("/", data={"csrf": csrf_of(client), **FORM}).status_code == 303


def test_the_preview_looks_at_the_newest_papers_of_its_window_only(engine, tmp_path) -> None:
    now = datetime.now(UTC)
    dumps = sorted(copy_samples(tmp_path / "dumps", (now - timedelta(days=2)).timestamp()).iterdir())
    ingest_paths(Store(engine), dumps, now=now - timedelta(days=1), settle_seconds=0, matcher=SubscriptionMatcher())
    node = parse_query("model")
    with Session(engine) as session:
        everything, seen = RecentPapers(days=14).search(Store(engine), node, now)
        window = session.scalar(select(func.count()).select_from(Paper))
        newest = session.scalars(select(Paper.id).order_by(Paper.first_seen.desc(), Paper.id.desc()).limit(40)).all()
        bounded, searched = RecentPapers(days=14, most=40).search(Store(engine), node, now)
    assert seen == window > 40 and searched == 40
    assert {hit.paper.id for hit in bounded} == {hit.paper.id for hit in everything} & set(newest)
    answer = web_client(engine, tmp_path).get("/api/query?q=model").get_json()
    assert (answer["ok"], answer["searched"], answer["most"], answer["count"]) == (True, window, PREVIEW_PAPERS, len(everything))


# ---- helpers -----------------------------------------------------------------------------------

def web_client(engine, tmp_path: Path, **env: str):
    settings = Settings.load(env={
        "DIGESTBOT_OUTBOX_DIR": str(tmp_path / "outbox"), "DIGESTBOT_BASE_URL": "https://digest.example.org",
        "SLACK_SIGNING_SECRET": SLACK_SECRET, **env}, dotenv_path=None)
    return create_app(bootstrap(settings, engine=engine)).test_client()


def csrf_of(client) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/").get_data(as_text=True)).group(1)


def stored_subscription(engine, tmp_path: Path, cadence: str = "daily") -> tuple[int, str]:
    """A subscription of ada@example.org (diffusion, 08:00 UTC) and its manage token."""
    sub, _ = subscribe(Store(engine), "ada@example.org", "diffusion", schedule=parse_schedule(cadence), now=NOW)
    sub_id, recipient_id = sub.id, sub.recipient_id
    signer = LinkSigner(signing_key(Store(engine), quiet_settings(tmp_path)), "https://digest.example.org")
    return sub_id, signer.token("manage", {"r": recipient_id})


def slack_request(client, text: str):
    body = urlencode({"command": "/digest", "text": text, "channel_id": "C0123ABCD", "user_id": "U42"})
    timestamp = str(int(time.time()))
    signature = "v0=" + hmac.new(SLACK_SECRET.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return client.post("/slack/commands", data=body, content_type="application/x-www-form-urlencoded",
                       headers={"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature})
