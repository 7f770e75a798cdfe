"""`/sendgrid/events` closed until configured, and cheap whatever is posted to it (issue 10).

Through Flask's test client and a real waitress server on loopback, on SQLite and PostgreSQL;
signatures are real ECDSA, as SendGrid makes them.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
import waitress.server
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from digestbot.bootstrap import bootstrap
from digestbot.core.schedule import parse_schedule
from digestbot.errors import ConfigError
from digestbot.services.feedback import SEEN_FOR, first_time, first_times, forget_seen_events
from digestbot.services.subscriptions import subscribe
from digestbot.settings import Settings
from digestbot.store import Store
from digestbot.store.models import Recipient, Subscription, WebhookEvent
from digestbot.web import create_app
from digestbot.web.sendgrid_events import MAX_EVENTS

SECRET = "Xq3-webhook_secret-0123456789"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def settings_for(engine, tmp_path: Path, **env: str) -> Settings:
    return Settings.load(env={
        "DIGESTBOT_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "DIGESTBOT_OUTBOX_DIR": str(tmp_path / "outbox"), "DIGESTBOT_BASE_URL": "https://digest.example.org",
        **env,
    }, dotenv_path=None)


@pytest.fixture
def make_client(engine, tmp_path):
    def make(clock=None, **env: str):
        extra = {"clock": clock} if clock else {}
        return create_app(bootstrap(settings_for(engine, tmp_path, **env), engine=engine, **extra)).test_client()
    return make


@pytest.fixture
def client(make_client):
    return make_client(DIGESTBOT_SENDGRID_WEBHOOK_SECRET=SECRET)


def known(engine, *addresses: str) -> None:
    for address in addresses:
        subscribe(Store(engine), address, "diffusion", schedule=parse_schedule(), now=datetime.now(UTC))


def suspended(engine) -> set[str]:
    with Session(engine) as session:
        return set(session.scalars(select(Recipient.address).where(Recipient.suspended_at.is_not(None))))


def seen_ids(engine) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(WebhookEvent))


def bounce(address: str, event_id: str, **more) -> dict:
    return {"email": address, "event": "bounce", "sg_event_id": event_id, **more}


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def one_line_error(response) -> str:
    error = response.get_json()["error"]
    assert error and "\n" not in error and "Traceback" not in error
    return error


# ---- configured or refused ----

def test_an_unconfigured_webhook_is_refused_and_suspends_nobody(make_client, engine) -> None:
    known(engine, "alice@example.org")
    client = make_client()
    response = client.post("/sendgrid/events", json=[bounce("alice@example.org", "e1")])
    assert response.status_code == 503
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in one_line_error(response)
    assert client.post(f"/sendgrid/events?secret={SECRET}", json=[bounce("alice@example.org", "e1")]).status_code == 503
    assert suspended(engine) == set() and seen_ids(engine) == 0


def test_a_missing_or_wrong_secret_is_refused_and_changes_nothing(client, engine) -> None:
    known(engine, "alice@example.org")
    events = [bounce("alice@example.org", "e1")]
    for response in (
        client.post("/sendgrid/events", json=events),
        client.post("/sendgrid/events?secret=wrong", json=events),
        client.post(f"/sendgrid/events?secret={SECRET}x", json=events),
        client.post(f"/sendgrid/events?secret={SECRET[:-1]}", json=events),
        client.post("/sendgrid/events", json=events, headers=basic("sendgrid", "wrong")),
        client.post("/sendgrid/events", json=events, headers=basic(SECRET, "")),  # the user name is no proof
        client.post("/sendgrid/events", json=events, headers={"Authorization": f"Bearer {SECRET}"}),
    ):
        assert response.status_code == 403
        assert one_line_error(response) == "missing or wrong event webhook secret"
    assert suspended(engine) == set() and seen_ids(engine) == 0


def test_the_secret_in_the_url_or_as_basic_auth_password_is_accepted(client, engine) -> None:
    known(engine, "alice@example.org", "bob@example.org")
    in_url = client.post(f"/sendgrid/events?secret={SECRET}", json=[bounce("alice@example.org", "e1")])
    assert in_url.status_code == 200 and in_url.get_json()["suspended"] == ["alice@example.org"]
    as_password = client.post("/sendgrid/events", headers=basic("sendgrid", SECRET),
                              json=[{"email": "bob@example.org", "event": "unsubscribe", "sg_event_id": "e2"}])
    assert as_password.status_code == 200 and as_password.get_json()["unsubscribed"] == ["bob@example.org"]
    assert suspended(engine) == {"alice@example.org"}
    with Session(engine) as session:
        assert session.scalar(select(Subscription.active).join(Subscription.recipient)
                              .where(Recipient.address == "bob@example.org")) is False


def signed_request(private: ec.EllipticCurvePrivateKey, events: list) -> tuple[str, dict]:
    body = json.dumps(events)
    timestamp = str(int(time.time()))
    signature = base64.b64encode(private.sign((timestamp + body).encode(), ec.ECDSA(hashes.SHA256()))).decode()
    return body, {"X-Twilio-Email-Event-Webhook-Signature": signature,
                  "X-Twilio-Email-Event-Webhook-Timestamp": timestamp, "Content-Type": "application/json"}


def public_key(private: ec.EllipticCurvePrivateKey) -> str:
    der = private.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def test_signed_events_still_work_and_with_both_set_either_proof_is_enough(make_client, engine) -> None:
    known(engine, "alice@example.org", "bob@example.org", "cy@example.org")
    private = ec.generate_private_key(ec.SECP256R1())
    signed_only = make_client(SENDGRID_WEBHOOK_PUBLIC_KEY=public_key(private))
    body, headers = signed_request(private, [bounce("alice@example.org", "s1")])
    assert signed_only.post(f"/sendgrid/events?secret={SECRET}", data=body.replace("s1", "s0"),
                            headers=headers).status_code == 403  # no secret configured: a URL secret proves nothing
    assert signed_only.post("/sendgrid/events", data=body, headers=headers).get_json()["suspended"] == ["alice@example.org"]

    both = make_client(SENDGRID_WEBHOOK_PUBLIC_KEY=public_key(private), DIGESTBOT_SENDGRID_WEBHOOK_SECRET=SECRET)
    body, headers = signed_request(private, [bounce("bob@example.org", "s2")])
    assert both.post("/sendgrid/events", data=body, headers=headers).get_json()["suspended"] == ["bob@example.org"]
    by_secret = both.post(f"/sendgrid/events?secret={SECRET}", json=[bounce("cy@example.org", "s3")])
    assert by_secret.get_json()["suspended"] == ["cy@example.org"]
    forged = both.post("/sendgrid/events", data=body.replace("s2", "s4"), headers=headers)
    assert forged.status_code == 403
    assert one_line_error(forged) == "neither a valid event webhook signature nor the webhook secret"
    assert suspended(engine) == {"alice@example.org", "bob@example.org", "cy@example.org"}


def test_the_secret_must_be_long_and_url_safe_and_is_masked() -> None:
    for bad in ("short", "has spaces in it, long enough", "p%40ss/word+0123456789"):
        with pytest.raises(ConfigError, match="DIGESTBOT_SENDGRID_WEBHOOK_SECRET must be at least 16"):
            Settings.load(env={"DIGESTBOT_SENDGRID_WEBHOOK_SECRET": bad}, dotenv_path=None)
    settings = Settings.load(env={"DIGESTBOT_SENDGRID_WEBHOOK_SECRET": SECRET}, dotenv_path=None)
    assert settings.sendgrid_webhook_secret == SECRET and SECRET not in repr(settings)


def test_the_secret_never_reaches_the_log(client, engine, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client.post(f"/sendgrid/events?secret={SECRET}", json=[])
    client.post("/sendgrid/events?secret=guess-0123456789abcdef", json=[])
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "POST /sendgrid/events 200" in logged and "POST /sendgrid/events 403" in logged
    assert SECRET not in logged and "guess-0123456789abcdef" not in logged


# ---- what a post may cost ----

def test_events_about_unknown_addresses_leave_no_rows(client, engine) -> None:
    known(engine, "alice@example.org")
    events = [bounce(f"stranger{i}@example.org", f"u{i}") for i in range(2000)]
    events += [bounce("not an address", "bad1"), bounce(["alice@example.org"], "bad2"), "bounce", 7, None,
               {"email": "slack:#general", "event": "spamreport", "sg_event_id": "bad3"},
               {"email": "alice@example.org", "event": "open", "sg_event_id": "o1"}]
    url = f"/sendgrid/events?secret={SECRET}"
    report = client.post(url, json=events).get_json()
    assert report == {"suspended": [], "unsubscribed": [], "duplicates": 0, "ignored": len(events)}
    assert seen_ids(engine) == 0
    assert client.post(url, json=events).get_json()["ignored"] == len(events)  # a retry: still nothing kept
    assert seen_ids(engine) == 0 and suspended(engine) == set()

    mixed = client.post(url, json=[*events[:50], bounce("ALICE@example.org", "a1"), bounce("alice@example.org", "a1")])
    assert mixed.get_json() == {"suspended": ["alice@example.org"], "unsubscribed": [], "duplicates": 1, "ignored": 50}
    assert seen_ids(engine) == 1


def test_seen_event_ids_expire_in_small_batches(engine, store) -> None:
    with store.transaction() as tx:
        assert first_times(tx, "sendgrid", ["a", "b", "a"], T0) == {"a", "b"}
        assert first_times(tx, "sendgrid", ["a", "c"], T0 + timedelta(hours=1)) == {"c"}
        assert not first_time(tx, "sendgrid", "b", T0 + SEEN_FOR - timedelta(minutes=1))  # a retry: still known
        assert first_time(tx, "slack", "b", T0)  # sources are kept apart
    with store.transaction() as tx:
        # Recording a new id forgets those older than SEEN_FOR: a and b (both sources), not c, an hour younger.
        assert first_time(tx, "sendgrid", "d", T0 + SEEN_FOR + timedelta(minutes=1))
        left = set(tx.session.execute(select(WebhookEvent.source, WebhookEvent.event_id)).all())
        assert left == {("sendgrid", "c"), ("sendgrid", "d")}
        assert first_time(tx, "sendgrid", "a", T0 + SEEN_FOR + timedelta(minutes=2))  # forgotten: new again

    with Session(engine) as session, session.begin():
        session.add_all(WebhookEvent(source="sendgrid", event_id=f"old{i}", received_at=T0 - timedelta(seconds=i))
                        for i in range(250))
    later = T0 + SEEN_FOR + timedelta(minutes=30)
    with store.transaction() as tx:
        assert forget_seen_events(tx, later, limit=100) == 100
        # The oldest go first.
        assert tx.session.scalar(select(func.max(WebhookEvent.received_at))
                                 .where(WebhookEvent.event_id.like("old%"))) == T0 - timedelta(seconds=0)
        assert tx.session.scalar(select(func.min(WebhookEvent.received_at))
                                 .where(WebhookEvent.event_id.like("old%"))) == T0 - timedelta(seconds=149)
    deleted = []
    with store.transaction() as tx:
        while batch := forget_seen_events(tx, later, limit=100):
            deleted.append(batch)
    assert deleted == [100, 50]
    assert seen_ids(engine) == 3  # c, d and a: within SEEN_FOR of `later`


def test_a_post_forgets_old_ids_as_it_records_new_ones(make_client, engine) -> None:
    known(engine, "alice@example.org")
    with Session(engine) as session, session.begin():
        session.add_all(WebhookEvent(source="slack", event_id=f"sig{i}", received_at=T0) for i in range(150))
    client = make_client(clock=lambda: T0 + SEEN_FOR + timedelta(hours=1), DIGESTBOT_SENDGRID_WEBHOOK_SECRET=SECRET)
    stranger = client.post(f"/sendgrid/events?secret={SECRET}", json=[bounce("nobody@example.org", "n1")])
    assert stranger.status_code == 200 and seen_ids(engine) == 150  # nothing recorded: nothing written at all
    client.post(f"/sendgrid/events?secret={SECRET}", json=[bounce("alice@example.org", "a1")])
    assert seen_ids(engine) == 150 - 100 + 1  # up to 100 (or twice as many as recorded) go each time


def test_bad_bodies_get_one_line_and_change_nothing(client, engine) -> None:
    known(engine, "alice@example.org")
    url = f"/sendgrid/events?secret={SECRET}"
    cases = {
        "[" * 100_000: 400,
        "[" * 100_000 + "]" * 100_000: 400,
        '[{"email": "alice@example.org", "event": "bounce"' + "," * 3: 400,
        json.dumps([{}] * (MAX_EVENTS + 1)): 413,
    }
    for body, status in cases.items():
        response = client.post(url, data=body, content_type="application/json")
        assert response.status_code == status, body[:40]
        one_line_error(response)
    assert one_line_error(client.post(url, data="[" * 100_000)) == "the body is nested too deeply"
    not_utf8 = client.post(url, data=b'["\xff\xfe"]', content_type="application/json")
    assert not_utf8.status_code == 400 and one_line_error(not_utf8) == "the body is not JSON"
    too_big = client.post(url, data=json.dumps([bounce("alice@example.org", "x" * 1000)] * 1100),
                          content_type="application/json")
    assert too_big.status_code == 413 and one_line_error(too_big)
    assert suspended(engine) == set() and seen_ids(engine) == 0
    assert client.post(url, json=[bounce("alice@example.org", "ok")] * MAX_EVENTS).get_json()["duplicates"] == MAX_EVENTS - 1


def hold_the_store(engine):
    """A connection that keeps every webhook post's recipient lookup waiting, until closed."""
    connection = engine.connect()
    connection.begin()  # SQLite: BEGIN IMMEDIATE, the write lock every transaction here waits for
    if engine.dialect.name == "postgresql":
        connection.execute(text("LOCK TABLE recipients IN ACCESS EXCLUSIVE MODE"))
    return connection


def test_at_most_two_posts_are_worked_on_at_once(make_client, engine) -> None:
    known(engine, "alice@example.org")
    client = make_client(DIGESTBOT_SENDGRID_WEBHOOK_SECRET=SECRET)
    url = f"/sendgrid/events?secret={SECRET}"
    answers: list[int] = []
    lock = hold_the_store(engine)
    try:
        waiting = [threading.Thread(target=lambda i=i: answers.append(client.application.test_client().post(
            url, json=[bounce("alice@example.org", f"w{i}")]).status_code)) for i in range(2)]
        for thread in waiting:
            thread.start()
        time.sleep(0.5)  # both are in, waiting for the store
        third = client.post(url, json=[bounce("alice@example.org", "w3")])
        assert third.status_code == 429 and third.headers["Retry-After"] == "10"
        assert one_line_error(third).startswith("too many event posts at once")
        assert answers == []
    finally:
        lock.rollback()
        lock.close()
    for thread in waiting:
        thread.join(timeout=10)
    assert answers == [200, 200] and suspended(engine) == {"alice@example.org"}
    assert client.post(url, json=[]).status_code == 200  # the slots were given back


# ---- a burst against the real server ----

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Browser:
    """One keep-alive connection that keeps its session cookie."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.cookie = ""

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict | None = None) -> tuple[int, bytes, float]:
        headers = {**(headers or {}), **({"Cookie": self.cookie} if self.cookie else {})}
        start = time.perf_counter()
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        if cookie := response.getheader("Set-Cookie"):
            self.cookie = cookie.split(";", 1)[0]
        return response.status, data, time.perf_counter() - start


def test_a_burst_of_large_posts_leaves_pages_and_healthz_answering(engine, tmp_path) -> None:
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    app = create_app(bootstrap(settings_for(engine, tmp_path, DIGESTBOT_SENDGRID_WEBHOOK_SECRET=SECRET), engine=engine))
    port = free_port()
    server = waitress.server.create_server(app, host="127.0.0.1", port=port, threads=8)
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    try:
        person = Browser(port)
        status, page, _ = person.request("GET", "/")
        assert status == 200
        csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()

        def body(sender: int, post: int) -> bytes:
            # Bounces for addresses nobody subscribed, padded to almost the 1 MB limit.
            events = [bounce(f"s{sender}-{post}-{i}@example.org", f"burst-{sender}-{post}-{i}", reason="550 " + "x" * 90)
                      for i in range(MAX_EVENTS)]
            data = json.dumps(events).encode()
            assert 900_000 < len(data) < 1 << 20
            return data

        statuses: list[int] = []

        def sender(n: int) -> None:
            connection = Browser(port)
            for post in range(3):
                statuses.append(connection.request("POST", f"/sendgrid/events?secret={SECRET}", body(n, post),
                                                   {"Content-Type": "application/json"})[0])

        senders = [threading.Thread(target=sender, args=(n,)) for n in range(10)]
        started = time.perf_counter()
        for thread in senders:
            thread.start()
        health, subscribing = [], []
        while any(thread.is_alive() for thread in senders) and time.perf_counter() - started < 20:
            status, _, elapsed = person.request("GET", "/healthz")
            assert status == 200
            health.append(elapsed)
            if len(subscribing) < 3:
                form = urlencode({"csrf": csrf, "email": f"reader{len(subscribing)}@example.org", "query": "diffusion",
                                  "cadence": "weekly", "at": "07:30", "day": "fri", "tz": "UTC"})
                status, _, elapsed = person.request("POST", "/", form,
                                                    {"Content-Type": "application/x-www-form-urlencoded"})
                assert status == 303
                subscribing.append(elapsed)
            time.sleep(0.02)
        for thread in senders:
            thread.join(timeout=20)
        took = time.perf_counter() - started
    finally:
        server.close()

    assert len(statuses) == 30 and set(statuses) <= {200, 429} and 200 in statuses, statuses
    assert len(health) >= 3 and len(subscribing) == 3
    assert max(health) < 2.0 and max(subscribing) < 2.0, (max(health), max(subscribing), took)
    assert seen_ids(engine) == 0
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Recipient)) == 3  # the three readers, no stranger
