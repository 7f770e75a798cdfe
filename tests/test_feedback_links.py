"""Feedback links in email digests and buttons in Slack digests (issue 13), through the real
digest builder, templates and web application, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit

import pytest

from digestbot.bootstrap import bootstrap
from digestbot.core.schedule import parse_schedule
from digestbot.services import votes
from digestbot.services.matching import papers_since
from digestbot.services.subscriptions import subscribe
from digestbot.store import OutboxMessage, Store
from digestbot.web.app import create_app
from test_relevance import add_papers, topical_papers
from test_web import SLACK_SECRET, settings_for

T0 = datetime(2026, 12, 1, 7, tzinfo=UTC)
DUE = datetime(2026, 12, 2, 8, tzinfo=UTC)


def digest_for(engine, tmp_path, recipient: str) -> tuple[object, dict]:
    """A digest of the topical papers for ``recipient``, built into the outbox; (parts, payload)."""
    store = Store(engine)
    subscribe(store, recipient, "paper", schedule=parse_schedule("daily", "08:00", "mon", "UTC"), now=T0)
    add_papers(store, topical_papers(), now=T0 + timedelta(minutes=5))
    parts = bootstrap(settings_for(engine, tmp_path), engine=engine)
    with store.transaction() as tx:
        parts.matcher.sync(tx)
        parts.matcher.match_and_store(tx, papers_since(tx, T0))
    parts.digests.build_due(DUE)
    with store.reading() as tx:
        [row] = tx.session.query(OutboxMessage).all()
    return parts, json.loads(row.payload)


def listed(engine, recipient: str) -> list[tuple[str, str]]:
    return [(v["paper"]["title"], v["vote"]) for v in votes.list_votes(Store(engine), recipient)]


def test_an_email_link_records_on_post_never_on_get(engine, tmp_path) -> None:
    parts, payload = digest_for(engine, tmp_path, "ada@example.org")
    more = re.findall(r"More like this: (\S+)", payload["text"])
    less = re.findall(r"Less like this: (\S+)", payload["text"])
    assert len(more) == len(less) == 12 and payload["html"].count(">More like this</a>") == 12
    client = create_app(parts).test_client()
    first_title = re.findall(r"^1\. (.+)$", payload["text"], flags=re.MULTILINE)[0]

    page = client.get(urlsplit(less[0]).path)
    assert page.status_code == 200 and b'id="vote-form"' in page.data and b"/static/feedback.js" in page.data
    assert listed(engine, "ada@example.org") == []  # a scanner's GET records nothing
    done = client.post(urlsplit(less[0]).path)
    assert done.status_code == 200 and b'id="recorded"' in done.data
    assert listed(engine, "ada@example.org") == [(first_title, "down")]
    client.post(urlsplit(more[0]).path)  # changed their mind
    assert listed(engine, "ada@example.org") == [(first_title, "up")]


@pytest.mark.parametrize("forge", [
    lambda path: path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"),  # a signature altered
    lambda path: path.replace(".d.", ".u.", 1),  # the payload altered: "less" made "more"
    lambda path: re.sub(r"/feedback/(\d+)\.", lambda m: f"/feedback/{int(m[1]) + 1}.", path),  # another reader
])
def test_forged_links_are_refused_and_record_nothing(engine, tmp_path, forge) -> None:
    parts, payload = digest_for(engine, tmp_path, "ada@example.org")
    path = urlsplit(re.findall(r"Less like this: (\S+)", payload["text"])[0]).path
    client = create_app(parts).test_client()
    assert client.get(forge(path)).status_code == 404
    assert client.post(forge(path)).status_code == 404
    # A manage link's token is signed by the same key, for another purpose: no vote either.
    manage_token = urlsplit(parts.signer.manage_url(1)).path.rsplit("/", 1)[1]
    assert client.post(f"/feedback/{manage_token}").status_code == 404
    assert listed(engine, "ada@example.org") == []


def slack_click(client, value: str, action_id: str, *, secret: str = SLACK_SECRET, timestamp: int | None = None,
                response_url: str | None = None):
    payload = {"type": "block_actions", "user": {"id": "U42"}, "channel": {"id": "C0123ABCD"},
               "actions": [{"action_id": action_id, "block_id": "vote-1", "value": value, "type": "button"}]}
    if response_url:
        payload["response_url"] = response_url
    body = urlencode({"payload": json.dumps(payload)})
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = "v0=" + hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    headers = {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature}
    return client.post("/slack/interactions", data=body, headers=headers,
                       content_type="application/x-www-form-urlencoded")


def test_slack_buttons_record_the_vote_for_the_channel_once(engine, tmp_path) -> None:
    parts, payload = digest_for(engine, tmp_path, "slack:C0123ABCD")
    actions = [b for b in payload["blocks"] if b["type"] == "actions"]
    assert actions and [e["action_id"] for e in actions[0]["elements"]] == ["vote_up", "vote_down"]
    up = actions[0]["elements"][0]["value"]
    client = create_app(parts).test_client()

    assert slack_click(client, up, "vote_up", secret="not-the-secret").status_code == 403
    assert listed(engine, "slack:C0123ABCD") == []
    started = time.monotonic()
    answer = slack_click(client, up, "vote_up", timestamp=int(time.time()))
    assert answer.status_code == 200 and time.monotonic() - started < 3
    assert "Noted" in answer.get_json()["text"]
    [(title, vote)] = listed(engine, "slack:C0123ABCD")
    assert vote == "up"
    # The same button value under the other action, or a forged value: refused, nothing changed.
    assert slack_click(client, up, "vote_down").status_code == 400
    assert slack_click(client, up[:-2] + "xx", "vote_up").status_code == 400
    assert listed(engine, "slack:C0123ABCD") == [(title, "up")]


def test_a_replayed_slack_click_is_refused(engine, tmp_path) -> None:
    parts, payload = digest_for(engine, tmp_path, "slack:C0123ABCD")
    down = next(b for b in payload["blocks"] if b["type"] == "actions")["elements"][1]["value"]
    client = create_app(parts).test_client()
    now = int(time.time())
    assert slack_click(client, down, "vote_down", timestamp=now).status_code == 200
    votes.vote_by_ids(Store(engine), *parts.signer.load_vote(down)[:2], "clear", T0)
    assert slack_click(client, down, "vote_down", timestamp=now).status_code == 409
    assert listed(engine, "slack:C0123ABCD") == []


# ---- the subscribe page's "papers like…" ----

def test_the_subscribe_page_finds_papers_by_title_and_subscribes_to_papers_like_them(engine, tmp_path) -> None:
    from test_web import FORM, csrf_of, subs_of

    add_papers(Store(engine), topical_papers() + [("Speech <b>tricks</b> & more", "speech tricks")])
    client = create_app(bootstrap(settings_for(engine, tmp_path), engine=engine)).test_client()
    page = client.get("/").get_data(as_text=True)
    assert 'id="like-search"' in page and 'name="likes"' in page and "/static/likes.js" in page
    found = client.get("/api/papers?q=SPEECH paper").get_json()["papers"]
    assert sorted(p["title"] for p in found) == [f"speech paper {n}" for n in range(4)]
    assert client.get("/api/papers?q=<b>").get_json()["papers"] == []  # too short a key: nothing
    assert client.get("/api/papers?q=%25%25%25").get_json()["papers"] == []  # LIKE wildcards are text

    refused = client.post("/", data={"csrf": csrf_of(client), **FORM, "query": "", "likes": "no such paper"})
    assert refused.status_code == 400 and "no stored paper titled" in refused.get_data(as_text=True).lower()
    assert subs_of(engine, FORM["email"]) == []
    done = client.post("/", data={"csrf": csrf_of(client), **FORM, "query": "",
                                  "likes": "speech paper 0\n\nSpeech Paper 1\n"})
    assert done.status_code == 303
    [sub] = subs_of(engine, FORM["email"])
    assert (sub.query, sub.pending, sub.like_top) == ("", True, 10)  # weekly: 10 a week
    with Store(engine).reading() as tx:
        assert len(tx.votes.likes_of([sub.id])[sub.id]) == 2
    from test_web import outbox
    [confirm] = outbox(engine, "confirm")
    assert "papers like \u201cspeech paper 0\u201d and 1 more" in json.loads(confirm.payload)["text"]


def test_a_slack_click_is_answered_to_whoever_clicked_through_its_response_url(engine, tmp_path) -> None:
    from fakes import FakeSlack

    parts, payload = digest_for(engine, tmp_path, "slack:C0123ABCD")
    down = next(b for b in payload["blocks"] if b["type"] == "actions")["elements"][1]["value"]
    client = create_app(parts).test_client()
    with FakeSlack() as slack:
        assert slack_click(client, down, "vote_down", response_url=slack.webhook_url("resp")).status_code == 200
        deadline = time.monotonic() + 10
        while not slack.hook_posts and time.monotonic() < deadline:
            time.sleep(0.05)
        [told] = slack.hook_posts
    assert told.json["response_type"] == "ephemeral" and told.json["replace_original"] is False
    assert "fewer papers like this" in told.json["text"]
    assert [v for _, v in listed(engine, "slack:C0123ABCD")] == ["down"]
