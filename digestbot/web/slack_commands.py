"""`/slack/commands`: the `/digest` slash command, for the channel it is typed in.

Every request is checked with slack_sdk's SignatureVerifier (HMAC of the raw body with
SLACK_SIGNING_SECRET; older than five minutes is refused), and its signature is recorded so
that the same request replayed within those five minutes is refused too. Slack wants an answer
within 3 seconds: each command is one short transaction, and if the store keeps it waiting
longer the request is acknowledged at once and the answer posted to its ``response_url``.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, TimeoutError
from functools import partial
from urllib.parse import parse_qs

from flask import Blueprint, abort, request
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from digestbot.core.slash import HELP
from digestbot.render import slack_escape
from digestbot.services import metrics
from digestbot.services.selfservice import SlashOutcome, slash_command
from digestbot.services.subscriptions import schedule_label
from digestbot.web.app import Site, site

blueprint = Blueprint("slack", __name__)
log = logging.getLogger("digestbot.web")

ANSWER_WITHIN = 2.5  # seconds: Slack shows the user a timeout after 3


def _reply(text: str, *, public: bool = False) -> dict:
    return {"response_type": "in_channel" if public else "ephemeral", "text": text}


@blueprint.post("/slack/commands")
def command():
    s = site()
    if not s.settings.slack_signing_secret:
        abort(503, description="Slack commands are not set up here (SLACK_SIGNING_SECRET is empty)")
    body = request.get_data()
    try:
        valid = SignatureVerifier(s.settings.slack_signing_secret).is_valid_request(body, request.headers)
    except ValueError:  # a timestamp that is not a number
        valid = False
    if not valid:
        abort(401, description="invalid Slack signature")
    form = {key: values[0] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
    channel = form.get("channel_id", "")
    if not channel:
        abort(400, description="no channel_id in the command")
    signature = request.headers.get("X-Slack-Signature", "")
    metrics.WEBHOOK_EVENTS.labels("slack", "slash_command").inc()
    work = s.background.submit(_handle, s, form, signature, f"slack:{channel}")
    try:
        return work.result(timeout=ANSWER_WITHIN)
    except TimeoutError:
        # The store is busy (a large ingest holds SQLite's write lock, say): answer now, and post
        # the outcome to the command's response_url when it is done.
        work.add_done_callback(partial(_follow_up, form.get("response_url", "")))
        return _reply("Working on it…")


def _handle(s: Site, form: dict, signature: str, recipient: str) -> dict:
    outcome = slash_command(s.store, signature, form.get("text", ""), recipient, s.clock())
    if outcome is None:
        abort(401, description="this request was already received")
    return _answer(outcome, form.get("user_id", ""))


def _follow_up(response_url: str, work: Future) -> None:
    try:
        answer = work.result()
    except Exception as exc:  # the command failed after all: say so rather than stay silent
        log.warning("slash command failed after its acknowledgement: %s", exc)
        answer = _reply(":warning: that did not work; try again in a minute.")
    if not response_url:  # from the signed request: Slack's own URL for late answers
        log.warning("slash command: no response_url for the late answer")
        return
    response = WebhookClient(response_url, timeout=10).send(text=answer["text"], response_type=answer["response_type"])
    if response.status_code != 200:
        log.warning("slash command: response_url answered %s", response.status_code)


def _answer(outcome: SlashOutcome, user: str) -> dict:
    if outcome.error is not None:
        return _reply(f":warning: {slack_escape(outcome.error)}")
    if outcome.action == "help":
        return _reply(HELP)
    sub = outcome.subscription
    if outcome.action == "subscribe":
        who = f"<@{user}>" if user.isalnum() else "Someone"  # a mention of the user who typed it, nothing else
        return _reply(f"{who} subscribed this channel to `{slack_escape(sub.query)}` ({schedule_label(sub)}), "
                      f"id {sub.id}.", public=True)
    if outcome.action == "list":
        if not outcome.subscriptions:
            return _reply("This channel has no subscriptions. " + HELP)
        return _reply("\n".join(f"`{sub.id}` {slack_escape(sub.query)} · {schedule_label(sub)}"
                                for sub in outcome.subscriptions))
    return _reply(f"Unsubscribed this channel from `{slack_escape(sub.query)}`.", public=True)
