"""The web pages and endpoints through Flask's test client, on SQLite and PostgreSQL.

Nothing of digestbot's is faked: real templates, real tokens, the real store. Slack and SendGrid
requests are signed the way those providers sign them (HMAC, ECDSA).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import copy_samples
from digestbot.bootstrap import bootstrap
from digestbot.core.schedule import parse_schedule
from digestbot.core.tokens import LinkSigner
from digestbot.services.digests import signing_key
from digestbot.services.ingest import ingest_paths
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.subscriptions import subscribe
from digestbot.settings import Settings
from digestbot.store import OutboxMessage, Recipient, Store, Subscription, connect, migrate
from digestbot.web import create_app
from digestbot.web.app import site_of

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
WEBHOOK_SECRET = "sendgrid-events-secret-0123456789"
EVENTS = f"/sendgrid/events?secret={WEBHOOK_SECRET}"
FORM = {"email": "ada@example.org", "query": "diffusion", "cadence": "weekly", "at": "07:30", "day": "fri",
        "tz": "Europe/Paris"}


def settings_for(engine, tmp_path: Path, **env: str) -> Settings:
    return Settings.load(env={
        "DIGESTBOT_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "DIGESTBOT_OUTBOX_DIR": str(tmp_path / "outbox"), "DIGESTBOT_BASE_URL": "https://digest.example.org",
        "SLACK_SIGNING_SECRET": SLACK_SECRET, "DIGESTBOT_SENDGRID_WEBHOOK_SECRET": WEBHOOK_SECRET, **env,
    }, dotenv_path=None)


@pytest.fixture
def make_client(engine, tmp_path):
    def make(**env: str):
        app = create_app(bootstrap(settings_for(engine, tmp_path, **env), engine=engine))
        return app.test_client()
    return make


@pytest.fixture
def client(make_client):
    return make_client()


@pytest.fixture
def signer(engine, tmp_path) -> LinkSigner:
    settings = settings_for(engine, tmp_path)
    return LinkSigner(signing_key(Store(engine), settings), settings.base_url)


def csrf_of(client) -> str:
    page = client.get("/")
    return re.search(r'name="csrf" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def outbox(engine, kind: str | None = None) -> list[OutboxMessage]:
    with Session(engine) as session:
        statement = select(OutboxMessage).order_by(OutboxMessage.id)
        if kind:
            statement = statement.where(OutboxMessage.kind == kind)
        return list(session.scalars(statement))


def subs_of(engine, address: str) -> list[Subscription]:
    with Session(engine) as session:
        return list(session.scalars(
            select(Subscription).join(Subscription.recipient).where(Recipient.address == address).order_by(Subscription.id)
        ))


def link_in(message: OutboxMessage, path: str) -> str:
    text = json.loads(message.payload)["text"]
    return re.search(rf"https://digest\.example\.org(/{path}/\S+)", text).group(1)


def ingest_samples(engine, tmp_path: Path, now: datetime) -> None:
    """The sample dumps, ingested as if at ``now`` (their copies saved a day before it)."""
    folder = copy_samples(tmp_path / "dumps", (now - timedelta(days=1)).timestamp())
    report = ingest_paths(Store(engine), sorted(folder.iterdir()), now=now, settle_seconds=0,
                          matcher=SubscriptionMatcher())
    assert report.new > 300


def subscribe_via_form(client, **changes) -> None:
    response = client.post("/", data={"csrf": csrf_of(client), **FORM, **changes})
    assert response.status_code == 303, response.get_data(as_text=True)


def confirmed(client, engine, **changes) -> str:
    """Subscribe and confirm through the pages; returns the manage page's path."""
    subscribe_via_form(client, **changes)
    confirm = link_in(outbox(engine, "confirm")[-1], "confirm")
    response = client.post(confirm, data={"csrf": csrf_of(client)})
    assert response.status_code == 303
    return response.headers["Location"]


def cli_subscription(engine, address: str, query: str = "diffusion") -> int:
    sub, _ = subscribe(Store(engine), address, query, schedule=parse_schedule(), now=datetime.now(UTC))
    return sub.id


# ---- subscribe with double opt-in ----

def test_the_form_carries_a_csrf_token_and_the_time_zones(client) -> None:
    page = client.get("/").get_data(as_text=True)
    assert re.search(r'name="csrf" value="[\w-]{20,}"', page)
    assert "<option>Europe/Paris</option>" in page and "<option selected>UTC</option>" in page


def test_subscribing_queues_one_confirmation_and_nothing_else(client, engine) -> None:
    subscribe_via_form(client)
    [sub] = subs_of(engine, "ada@example.org")
    assert (sub.pending, sub.active) == (True, False)
    assert (sub.cadence, sub.send_at, sub.weekday, sub.timezone) == ("weekly", "07:30", "fri", "Europe/Paris")
    [message] = outbox(engine)
    payload = json.loads(message.payload)
    assert (message.kind, payload["to"]) == ("confirm", "ada@example.org")
    assert "/confirm/" in payload["text"] and "/confirm/" in payload["html"]
    assert "List-Unsubscribe" not in payload["headers"]  # asked for, not a list message


def test_an_unconfirmed_subscription_gets_no_digest(client, engine, tmp_path) -> None:
    subscribe_via_form(client)
    ingest_samples(engine, tmp_path, datetime.now(UTC) + timedelta(minutes=1))
    builder = bootstrap(settings_for(engine, tmp_path), engine=engine).digests
    assert builder.build_due(datetime.now(UTC) + timedelta(days=8)) == []
    assert [m.kind for m in outbox(engine)] == ["confirm"]


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(client, engine) -> None:
    response = client.post("/", data=FORM)
    assert response.status_code == 400
    assert subs_of(engine, "ada@example.org") == [] and outbox(engine) == []


def test_a_bad_query_is_shown_at_its_column_and_nothing_is_created(client, engine) -> None:
    response = client.post("/", data={"csrf": csrf_of(client), **FORM, "query": 'diffusion "video'})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "(column 11)" in page
    assert re.search(r"<pre>diffusion &#34;video\n {10}\^</pre>", page)
    assert subs_of(engine, "ada@example.org") == []


def test_bad_email_and_bad_time_are_refused_with_their_reason(client, engine) -> None:
    response = client.post("/", data={"csrf": csrf_of(client), **FORM, "email": "slack:#general", "at": "25:00"})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Enter an email address." in page and "Bad time &#39;25:00&#39;" in page
    assert outbox(engine) == []


def test_the_honeypot_field_creates_nothing(client, engine) -> None:
    response = client.post("/", data={"csrf": csrf_of(client), **FORM, "website": "http://spam.example"})
    assert response.status_code == 303
    assert subs_of(engine, "ada@example.org") == [] and outbox(engine) == []


def test_untrusted_text_is_escaped_in_the_page(client) -> None:
    response = client.post("/", data={"csrf": csrf_of(client), **FORM, "query": '<script>alert(1)</script> "'})
    page = response.get_data(as_text=True)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_client_limit_answers_429(make_client, engine) -> None:
    client = make_client(DIGESTBOT_WEB_CLIENT_LIMIT="2")
    subscribe_via_form(client, email="a@example.org")
    subscribe_via_form(client, email="b@example.org")
    response = client.post("/", data={"csrf": csrf_of(client), **FORM, "email": "c@example.org"})
    assert response.status_code == 429
    assert subs_of(engine, "c@example.org") == []


def test_the_address_limit_holds_across_clients(make_client, engine) -> None:
    for _ in range(2):
        subscribe_via_form(make_client(DIGESTBOT_WEB_ADDRESS_LIMIT="2"))
    response = make_client(DIGESTBOT_WEB_ADDRESS_LIMIT="2").post(
        "/", data={"csrf": csrf_of(client := make_client(DIGESTBOT_WEB_ADDRESS_LIMIT="2")), **FORM})
    assert client is not None and response.status_code in (400, 429)  # a new client has a new session
    response = client.post("/", data={"csrf": csrf_of(client), **FORM})
    assert response.status_code == 429
    assert len(outbox(engine, "confirm")) == 2 and len(subs_of(engine, "ada@example.org")) == 2


def test_the_query_check_gives_the_column_or_a_preview(client, engine, tmp_path) -> None:
    ingest_samples(engine, tmp_path, datetime.now(UTC) - timedelta(days=1))
    bad = client.get("/api/query?q=" + "diffusion%20(").get_json()
    assert bad == {"ok": False, "error": {"message": "unclosed '('", "column": 11}}
    good = client.get("/api/query?q=diffusion").get_json()
    assert good["ok"] and good["days"] == 14 and good["count"] >= 5
    assert all("diffusion" in p["title"].lower() or p["id"] for p in good["papers"]) and len(good["papers"]) <= 10


def test_the_preview_leaves_out_papers_older_than_two_weeks(client, engine, tmp_path) -> None:
    ingest_samples(engine, tmp_path, datetime.now(UTC) - timedelta(days=20))
    assert client.get("/api/query?q=diffusion").get_json()["count"] == 0


# ---- confirm ----

def test_opening_the_confirmation_link_does_not_confirm_the_button_does(client, engine) -> None:
    subscribe_via_form(client)
    confirm = link_in(outbox(engine, "confirm")[0], "confirm")
    page = client.get(confirm)
    assert page.status_code == 200 and 'id="confirm"' in page.get_data(as_text=True)
    assert subs_of(engine, "ada@example.org")[0].pending  # a mail scanner's GET changes nothing

    response = client.post(confirm, data={"csrf": csrf_of(client)})
    assert response.status_code == 303 and response.headers["Location"].startswith("/manage/")
    [sub] = subs_of(engine, "ada@example.org")
    assert (sub.pending, sub.active) == (False, True)
    manage = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Your subscription is confirmed" in manage and "state-active" in manage
    assert client.post(confirm, data={"csrf": csrf_of(client)}).status_code == 303  # again: harmless


def test_a_confirmed_subscription_gets_its_digest(client, engine, tmp_path) -> None:
    confirmed(client, engine)
    ingest_samples(engine, tmp_path, datetime.now(UTC) + timedelta(minutes=1))
    built = bootstrap(settings_for(engine, tmp_path), engine=engine).digests.build_due(datetime.now(UTC) + timedelta(days=8))
    assert [(b.recipient, b.cadence) for b in built] == [("ada@example.org", "weekly")]


@pytest.mark.parametrize("tamper", ["flip", "manage-token", "other-key"])
def test_a_forged_confirmation_link_gets_404_and_confirms_nothing(client, engine, signer, tamper) -> None:
    subscribe_via_form(client)
    confirm = link_in(outbox(engine, "confirm")[0], "confirm")
    token = confirm.removeprefix("/confirm/")
    [sub] = subs_of(engine, "ada@example.org")
    forged = {
        "flip": token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1],
        "manage-token": signer.manage_url(sub.recipient_id).rpartition("/")[2],
        "other-key": LinkSigner("not-the-key", "https://x").confirm_url(sub.recipient_id, [sub.id]).rpartition("/")[2],
    }[tamper]
    assert client.get(f"/confirm/{forged}").status_code == 404
    assert client.post(f"/confirm/{forged}", data={"csrf": csrf_of(client)}).status_code == 404
    assert subs_of(engine, "ada@example.org")[0].pending


def test_confirming_lifts_a_suspension(client, engine) -> None:
    subscribe_via_form(client)
    with Session(engine) as session, session.begin():
        recipient = session.scalar(select(Recipient).where(Recipient.address == "ada@example.org"))
        recipient.suspended_at, recipient.suspended_reason = datetime.now(UTC), "bounce: 550"
    confirm = link_in(outbox(engine, "confirm")[0], "confirm")
    client.post(confirm, data={"csrf": csrf_of(client)})
    with Session(engine) as session:
        recipient = session.scalar(select(Recipient).where(Recipient.address == "ada@example.org"))
        assert recipient.suspended_at is None and recipient.suspended_reason is None


# ---- manage ----

def test_pause_resume_edit_and_delete(client, engine) -> None:
    manage = confirmed(client, engine)
    [sub] = subs_of(engine, "ada@example.org")
    csrf = csrf_of(client)
    assert client.post(f"{manage}/{sub.id}/pause", data={"csrf": csrf}).status_code == 303
    assert not subs_of(engine, "ada@example.org")[0].active
    assert "state-paused" in client.get(manage).get_data(as_text=True)
    client.post(f"{manage}/{sub.id}/resume", data={"csrf": csrf})
    assert subs_of(engine, "ada@example.org")[0].active

    edit = {"csrf": csrf, "query": '"language model" -survey', "cadence": "daily", "at": "06:00", "day": "mon",
            "tz": "Asia/Tokyo"}
    assert client.post(f"{manage}/{sub.id}/edit", data=edit).status_code == 303
    [edited] = subs_of(engine, "ada@example.org")
    assert (edited.query, edited.cadence, edited.send_at, edited.timezone) == (
        '"language model" -survey', "daily", "06:00", "Asia/Tokyo")
    assert edited.match_since > sub.match_since  # a new query matches from now on
    assert edited.version > sub.version  # the matchers see the change

    assert client.post(f"{manage}/{sub.id}/delete", data={"csrf": csrf}).status_code == 303
    page = client.get(manage).get_data(as_text=True)
    assert "You have no subscriptions" in page and 'class="query"' not in page and "is deleted." in page
    [deleted] = subs_of(engine, "ada@example.org")
    assert deleted.deleted_at is not None and not deleted.active


def test_a_bad_edit_shows_the_error_and_changes_nothing(client, engine) -> None:
    manage = confirmed(client, engine)
    [sub] = subs_of(engine, "ada@example.org")
    response = client.post(f"{manage}/{sub.id}/edit", data={"csrf": csrf_of(client), **FORM, "query": "-survey"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "only exclusions" in page.lower() or "exclu" in page.lower()
    assert 'value="-survey"' in page  # what was typed stays in the box
    assert subs_of(engine, "ada@example.org")[0].query == "diffusion"


def test_manage_actions_need_the_csrf_token(client, engine) -> None:
    manage = confirmed(client, engine)
    [sub] = subs_of(engine, "ada@example.org")
    assert client.post(f"{manage}/{sub.id}/delete", data={}).status_code == 400
    assert subs_of(engine, "ada@example.org")[0].deleted_at is None


def test_a_token_cannot_touch_another_recipients_subscription(client, engine, signer) -> None:
    manage = confirmed(client, engine)
    other = cli_subscription(engine, "bob@example.org")
    for action in ("pause", "delete", "edit"):
        response = client.post(f"{manage}/{other}/{action}", data={"csrf": csrf_of(client), **FORM})
        assert response.status_code == 404
    [bob] = subs_of(engine, "bob@example.org")
    assert bob.active and bob.deleted_at is None and bob.query == "diffusion"
    assert "bob@example.org" not in client.get(manage).get_data(as_text=True)


def test_forged_manage_tokens_get_404(client, engine, signer) -> None:
    other = cli_subscription(engine, "bob@example.org")
    forged = LinkSigner("guessed-key", "https://x").manage_url(1).rpartition("/")[2]
    unsubscribe_as_manage = signer.unsubscribe_url(1, [other]).rpartition("/")[2]
    for token in (forged, unsubscribe_as_manage, "garbage"):
        assert client.get(f"/manage/{token}").status_code == 404
        assert client.post(f"/manage/{token}/{other}/delete", data={"csrf": csrf_of(client)}).status_code == 404
    assert subs_of(engine, "bob@example.org")[0].deleted_at is None


def test_the_manage_link_is_emailed_again_without_telling_who_is_known(client, engine) -> None:
    cli_subscription(engine, "bob@example.org")
    known = client.post("/manage", data={"csrf": csrf_of(client), "email": "bob@example.org"})
    unknown = client.post("/manage", data={"csrf": csrf_of(client), "email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 200
    strip = lambda r: re.sub(r'value="[^"]+"', "", r.get_data(as_text=True))  # noqa: E731
    assert strip(known) == strip(unknown)
    [message] = outbox(engine, "manage")
    assert json.loads(message.payload)["to"] == "bob@example.org"
    manage = link_in(message, "manage")
    assert "bob@example.org" in client.get(manage).get_data(as_text=True)


# ---- unsubscribe ----

def test_get_shows_one_button_and_changes_nothing(client, engine, signer) -> None:
    sub_id = cli_subscription(engine, "bob@example.org")
    url = signer.unsubscribe_url(subs_of(engine, "bob@example.org")[0].recipient_id, [sub_id])
    page = client.get(url.removeprefix(signer.base_url))
    assert page.status_code == 200
    assert page.get_data(as_text=True).count("<button") == 1
    assert subs_of(engine, "bob@example.org")[0].active


def test_one_click_unsubscribe_without_cookies_or_csrf(engine, make_client, signer) -> None:
    sub_id = cli_subscription(engine, "bob@example.org")
    keep = cli_subscription(engine, "bob@example.org", "quantiz*")
    url = signer.unsubscribe_url(subs_of(engine, "bob@example.org")[0].recipient_id, [sub_id])
    client = make_client()  # a fresh client: no session cookie, as a mail provider posts
    response = client.post(url.removeprefix(signer.base_url), data="List-Unsubscribe=One-Click",
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    state = {s.id: s.active for s in subs_of(engine, "bob@example.org")}
    assert state == {sub_id: False, keep: True}  # only the subscriptions of that message


def test_the_button_unsubscribes_and_links_to_manage(client, engine, signer) -> None:
    sub_id = cli_subscription(engine, "bob@example.org")
    url = signer.unsubscribe_url(subs_of(engine, "bob@example.org")[0].recipient_id, [sub_id])
    page = client.post(url.removeprefix(signer.base_url)).get_data(as_text=True)
    assert "You are unsubscribed" in page and "/manage/" in page
    assert not subs_of(engine, "bob@example.org")[0].active


def test_an_unsubscribe_token_cannot_stop_someone_elses_subscription(client, engine, signer) -> None:
    mine = cli_subscription(engine, "ada@example.org")
    theirs = cli_subscription(engine, "bob@example.org")
    ada = subs_of(engine, "ada@example.org")[0].recipient_id
    # A correctly signed token for Ada that also names Bob's subscription: only Ada's stops.
    client.post(signer.unsubscribe_url(ada, [mine, theirs]).removeprefix(signer.base_url),
                data={"List-Unsubscribe": "One-Click"})
    assert not subs_of(engine, "ada@example.org")[0].active
    assert subs_of(engine, "bob@example.org")[0].active and theirs


# ---- a digest in full ----

def test_the_see_all_link_lists_the_digests_papers(client, engine, signer, tmp_path) -> None:
    confirmed(client, engine)
    ingest_samples(engine, tmp_path, datetime.now(UTC) + timedelta(minutes=1))
    [built] = bootstrap(settings_for(engine, tmp_path, DIGESTBOT_DIGEST_MAX_PAPERS="1")
                            , engine=engine).digests.build_due(datetime.now(UTC) + timedelta(days=8))
    recipient_id = subs_of(engine, "ada@example.org")[0].recipient_id
    page = client.get(signer.digest_url(recipient_id, built.digest_key).removeprefix(signer.base_url))
    assert page.status_code == 200
    assert page.get_data(as_text=True).count("<li><a href=") == built.papers > 1
    assert client.get(signer.digest_url(recipient_id + 1, built.digest_key).removeprefix(signer.base_url)
                      ).status_code == 404


# ---- Slack slash command ----

def slack_request(client, text: str, *, channel: str = "C0123ABCD", timestamp: int | None = None,
                  secret: str = SLACK_SECRET, body: str | None = None):
    body = body or urlencode({"command": "/digest", "text": text, "channel_id": channel, "user_id": "U42",
                              "team_id": "T1"})
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}
    return client.post("/slack/commands", data=body, headers=headers,
                       content_type="application/x-www-form-urlencoded"), body, headers


def test_slack_subscribe_list_and_unsubscribe(client, engine) -> None:
    response, _, _ = slack_request(client, 'subscribe "<!channel>" diffusion weekly')
    answer = response.get_json()
    assert response.status_code == 200 and answer["response_type"] == "in_channel"
    assert "<!channel>" not in answer["text"] and "&lt;!channel&gt;" in answer["text"]
    [sub] = subs_of(engine, "slack:C0123ABCD")
    assert (sub.query, sub.cadence, sub.active, sub.pending) == ('"<!channel>" diffusion', "weekly", True, False)

    listed = slack_request(client, "list")[0].get_json()
    assert listed["response_type"] == "ephemeral" and f"`{sub.id}`" in listed["text"]

    other = cli_subscription(engine, "slack:C0999ZZZZ")
    refused = slack_request(client, f"unsubscribe {other}")[0].get_json()
    assert refused["text"].startswith(":warning:") and subs_of(engine, "slack:C0999ZZZZ")[0].active

    slack_request(client, f"unsubscribe {sub.id}")
    assert not subs_of(engine, "slack:C0123ABCD")[0].active


def test_slack_bad_query_is_answered_with_its_column(client, engine) -> None:
    answer = slack_request(client, "subscribe diffusion (")[0].get_json()
    assert answer["response_type"] == "ephemeral" and "column 11" in answer["text"]
    assert subs_of(engine, "slack:C0123ABCD") == []


def test_slack_requests_must_be_signed_fresh_and_new(client, engine) -> None:
    response, body, headers = slack_request(client, "subscribe diffusion")
    assert response.status_code == 200
    replay = client.post("/slack/commands", data=body, headers=headers, content_type="application/x-www-form-urlencoded")
    assert replay.status_code == 401
    assert slack_request(client, "subscribe pruning", secret="not-the-secret")[0].status_code == 401
    assert slack_request(client, "subscribe pruning", timestamp=int(time.time()) - 600)[0].status_code == 401
    tampered = client.post("/slack/commands", data=body.replace("diffusion", "pruning"), headers=headers,
                           content_type="application/x-www-form-urlencoded")
    assert tampered.status_code == 401
    assert [s.query for s in subs_of(engine, "slack:C0123ABCD")] == ["diffusion"]


def test_slack_commands_are_refused_without_a_signing_secret(make_client) -> None:
    response, _, _ = slack_request(make_client(SLACK_SIGNING_SECRET=""), "list")
    assert response.status_code == 503


# ---- SendGrid event webhook ----

def test_bounces_drops_and_spam_reports_suspend_and_fail_what_is_queued(client, engine) -> None:
    for address in ("ada@example.org", "bob@example.org", "cy@example.org", "dee@example.org"):
        cli_subscription(engine, address)
    confirmed(client, engine, email="eve@example.org")  # leaves a sent-or-pending confirmation for eve
    with Session(engine) as session, session.begin():
        ada = session.scalar(select(Recipient).where(Recipient.address == "ada@example.org"))
        session.add(OutboxMessage(recipient_id=ada.id, channel="email", kind="daily", digest_key="k1", part=1,
                                  subject="s", payload="{}", status="pending", attempts=0,
                                  next_attempt_at=datetime.now(UTC), created_at=datetime.now(UTC)))
    events = [
        {"email": "ADA@example.org", "event": "bounce", "type": "bounce", "reason": "550 5.1.1 user unknown",
         "sg_event_id": "e1"},
        {"email": "bob@example.org", "event": "dropped", "reason": "Bounced Address", "sg_event_id": "e2"},
        {"email": "cy@example.org", "event": "spamreport", "sg_event_id": "e3"},
        {"email": "dee@example.org", "event": "bounce", "type": "blocked", "sg_event_id": "e4"},
        {"email": "dee@example.org", "event": "delivered", "sg_event_id": "e5"},
        {"email": "eve@example.org", "event": "unsubscribe", "sg_event_id": "e6"},
        {"email": "stranger@example.org", "event": "bounce", "sg_event_id": "e7"},
    ]
    report = client.post(EVENTS, json=events).get_json()
    assert report == {"suspended": ["ada@example.org", "bob@example.org", "cy@example.org"],
                      "unsubscribed": ["eve@example.org"], "duplicates": 0, "ignored": 3}
    with Session(engine) as session:
        state = {r.address: (r.suspended_at is not None, r.suspended_reason) for r in session.scalars(select(Recipient))}
    assert state["ada@example.org"] == (True, "bounce: 550 5.1.1 user unknown")
    assert state["bob@example.org"] == (True, "dropped: Bounced Address")
    assert state["cy@example.org"] == (True, "spamreport")
    assert state["dee@example.org"] == (False, None)
    assert not subs_of(engine, "eve@example.org")[0].active
    [queued] = outbox(engine, "daily")
    assert queued.status == "failed" and queued.last_error == "recipient suspended: bounce: 550 5.1.1 user unknown"

    again = client.post(EVENTS, json=events[:3]).get_json()
    assert again["duplicates"] == 3 and again["suspended"] == []


def test_suspended_recipients_get_no_digest(client, engine, tmp_path) -> None:
    confirmed(client, engine)
    client.post(EVENTS, json=[{"email": "ada@example.org", "event": "spamreport", "sg_event_id": "x"}])
    ingest_samples(engine, tmp_path, datetime.now(UTC) + timedelta(minutes=1))
    assert bootstrap(settings_for(engine, tmp_path), engine=engine).digests.build_due(datetime.now(UTC) + timedelta(days=8)) == []


def test_signed_events_are_checked_when_a_key_is_configured(engine, make_client) -> None:
    cli_subscription(engine, "ada@example.org")
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    client = make_client(SENDGRID_WEBHOOK_PUBLIC_KEY=base64.b64encode(public).decode(), DIGESTBOT_SENDGRID_WEBHOOK_SECRET="")
    body = json.dumps([{"email": "ada@example.org", "event": "bounce", "sg_event_id": "s1"}])
    timestamp = str(int(time.time()))
    signature = base64.b64encode(private.sign((timestamp + body).encode(), ec.ECDSA(hashes.SHA256()))).decode()
    headers = {"X-Twilio-Email-Event-Webhook-Signature": signature, "X-Twilio-Email-Event-Webhook-Timestamp": timestamp}

    tampered = client.post("/sendgrid/events", data=body.replace("s1", "s2"), headers=headers,
                           content_type="application/json")
    unsigned = client.post("/sendgrid/events", data=body, content_type="application/json")
    assert tampered.status_code == unsigned.status_code == 403
    with Session(engine) as session:
        assert session.scalar(select(Recipient.suspended_at)) is None

    good = client.post("/sendgrid/events", data=body, headers=headers, content_type="application/json")
    assert good.status_code == 200 and good.get_json()["suspended"] == ["ada@example.org"]


def test_a_body_that_is_not_an_event_list_is_400(client) -> None:
    assert client.post(EVENTS, data="not json", content_type="application/json").status_code == 400
    assert client.post(EVENTS, json={"event": "bounce"}).status_code == 400


# ---- health, headers, logs ----

def test_healthz_and_the_security_headers(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json()["status"] == "ok"
    page = client.get("/")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert "HttpOnly" in page.headers["Set-Cookie"] and "Secure" in page.headers["Set-Cookie"]


def test_healthz_says_when_the_database_cannot_be_reached(tmp_path) -> None:
    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite:///{folder / 'digestbot.db'}"
    engine = connect(url)
    migrate(engine)
    settings = Settings.load(env={"DIGESTBOT_DATABASE_URL": url, "DIGESTBOT_OUTBOX_DIR": str(tmp_path / "outbox")},
                             dotenv_path=None)
    client = create_app(bootstrap(settings, engine=engine)).test_client()
    assert client.get("/healthz").get_json()["status"] == "ok"
    engine.dispose()
    shutil.rmtree(folder)  # SQLite cannot open a file in a folder that is gone
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "error": "database unreachable"}


def test_no_token_or_secret_reaches_the_log(client, engine, caplog) -> None:
    caplog.set_level(logging.INFO, logger="digestbot.web")
    manage = confirmed(client, engine)
    client.get(manage)
    slack_request(client, "list")
    token = manage.rpartition("/")[2]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "GET /manage/<token> 200" in logged
    assert token not in logged and SLACK_SECRET not in logged
    page = client.get(manage).get_data(as_text=True)
    assert SLACK_SECRET not in page and signing_key(Store(engine), Settings.load(env={}, dotenv_path=None)) not in page


def test_the_courier_writes_the_confirmation_to_the_outbox_at_once(engine, tmp_path) -> None:
    settings = settings_for(engine, tmp_path, DIGESTBOT_EMAIL_BACKEND="file")
    app = create_app(bootstrap(settings, engine=engine))
    site_of(app).start()
    try:
        subscribe_via_form(app.test_client())
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not list((tmp_path / "outbox").rglob("*.eml")):
            time.sleep(0.05)
    finally:
        site_of(app).stop()
    [eml] = list((tmp_path / "outbox").rglob("*.eml"))
    assert "/confirm/" in eml.read_text() and "ada@example.org" in eml.read_text()
    assert outbox(engine)[0].status == "sent"


PREVIEW_QUERIES = ["diffusion", '"language model" -survey', "quantiz* OR pruning", "title:agent", "abstract:(video OR audio)",
                   "vision-language", "pre-trained transformer", "reinforcement NOT robot", "timeseries OR time-series"]


@pytest.mark.parametrize("query", PREVIEW_QUERIES)
def test_the_preview_finds_what_search_finds_in_the_same_order(engine, tmp_path, query) -> None:
    from digestbot.core.query import parse_query
    from digestbot.services.search import RecentPapers, search

    ingest_samples(engine, tmp_path, datetime.now(UTC) - timedelta(days=1))
    node = parse_query(query)
    store = Store(engine)
    engine_hits = [(h.paper.id, h.score) for h in search(store, node, limit=1000)]
    preview_hits = [(h.paper.id, h.score) for h in RecentPapers(days=14).search(store, node, datetime.now(UTC))[0]]
    assert preview_hits == engine_hits


def test_the_preview_sees_papers_that_arrive_later(client, engine, tmp_path) -> None:
    assert client.get("/api/query?q=diffusion").get_json()["count"] == 0
    ingest_samples(engine, tmp_path, datetime.now(UTC) - timedelta(days=1))
    assert client.get("/api/query?q=diffusion").get_json()["count"] > 0


def test_the_manage_page_confirms_a_pending_subscription(client, engine) -> None:
    manage = confirmed(client, engine)
    subscribe_via_form(client, query="quantiz*")  # a second one, waiting for its own email
    pending = subs_of(engine, "ada@example.org")[1]
    assert pending.pending and "awaiting confirmation" in client.get(manage).get_data(as_text=True)
    assert client.post(f"{manage}/{pending.id}/confirm", data={"csrf": csrf_of(client)}).status_code == 303
    after = subs_of(engine, "ada@example.org")[1]
    assert (after.pending, after.active) == (False, True)


def test_a_slash_command_kept_waiting_is_acknowledged_in_time_and_answered_later(client, engine) -> None:
    from fakes import FakeSlack
    from sqlalchemy import text

    cli_subscription(engine, "bob@example.org")  # makes the counter row that subscribing updates
    with FakeSlack() as slack, engine.connect() as blocker:
        blocker.begin()  # holds the counter row (PostgreSQL) or the write lock (SQLite)
        blocker.execute(text("UPDATE counters SET value = value WHERE name = 'subscriptions'"))
        body = urlencode({"text": "subscribe diffusion", "channel_id": "C0123ABCD", "user_id": "U42",
                          "response_url": slack.webhook_url("commands/T1/1/x")})
        started = time.monotonic()
        response, _, _ = slack_request(client, "", body=body)
        assert time.monotonic() - started < 3.0
        assert response.get_json() == {"response_type": "ephemeral", "text": "Working on it…"}
        assert slack.hook_posts == []
        blocker.rollback()
        deadline = time.monotonic() + 20
        while not slack.hook_posts and time.monotonic() < deadline:
            time.sleep(0.05)
        [late] = slack.hook_posts
    assert late.json["response_type"] == "in_channel" and "subscribed this channel" in late.json["text"]
    assert [s.query for s in subs_of(engine, "slack:C0123ABCD")] == ["diffusion"]


def test_the_signing_key_is_made_once_and_kept(engine, tmp_path) -> None:
    settings = Settings.load(env={"DIGESTBOT_DATABASE_URL": "sqlite://"}, dotenv_path=None)  # no secret key set
    store = Store(engine)
    first = signing_key(store, settings)
    assert len(first) >= 40 and signing_key(store, settings) == first
    with store.transaction() as tx:  # another process that made one too late keeps the first
        assert tx.secrets.kept("signing_key", lambda: "made-meanwhile") == first
    assert signing_key(store, settings_for(engine, tmp_path, DIGESTBOT_SECRET_KEY="configured")) == "configured"


# ---- the most upvoted: --top on the form (issue 12) ----

def test_the_form_takes_a_top(client, engine) -> None:
    subscribe_via_form(client, query="*", top="10")
    [sub] = subs_of(engine, FORM["email"])
    assert (sub.query, sub.top, sub.pending) == ("*", 10, True)


def test_a_bad_top_is_shown_beside_the_form(client, engine) -> None:
    response = client.post("/", data={"csrf": csrf_of(client), **FORM, "top": "0"})
    assert response.status_code == 400
    assert "op must be a number of papers from 1 to 1000" in response.get_data(as_text=True)  # as a sentence
    assert subs_of(engine, FORM["email"]) == []
