"""`/slack/commands`: the `/digest` slash command, for the channel it is typed in.

Every request is checked with slack_sdk's SignatureVerifier (HMAC of the raw body with
SLACK_SIGNING_SECRET; older than five minutes is refused), and its signature is recorded so
that the same request replayed within those five minutes is refused too. Slack wants an answer
within 3 seconds: each command is one short transaction.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from flask import Blueprint, abort, request
from slack_sdk.signature import SignatureVerifier

from digestbot.core.schedule import parse_schedule
from digestbot.core.slash import HELP, parse_command
from digestbot.errors import DigestbotError, NotFound
from digestbot.render import slack_escape
from digestbot.services import subscriptions
from digestbot.services.feedback import first_time
from digestbot.services.notices import schedule_label
from digestbot.web.app import Site, site

blueprint = Blueprint("slack", __name__)


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
    with s.session() as session, session.begin():
        if not first_time(session, "slack", request.headers.get("X-Slack-Signature", ""), s.clock()):
            abort(401, description="this request was already received")
        try:
            return _run(s, session, parse_command(form.get("text", "")), f"slack:{channel}", form.get("user_id", ""))
        except DigestbotError as exc:
            return _reply(f":warning: {slack_escape(exc)}")


def _run(s: Site, session, command, recipient: str, user: str) -> dict:
    now = s.clock()
    if command.action == "help":
        return _reply(HELP)
    if command.action == "subscribe":
        sub, _ = subscriptions.subscribe(session, recipient, command.query, schedule=parse_schedule(command.cadence),
                                         now=now)
        who = f"<@{user}>" if user.isalnum() else "Someone"  # a mention of the user who typed it, nothing else
        return _reply(f"{who} subscribed this channel to `{slack_escape(sub.query)}` ({schedule_label(sub)}), "
                      f"id {sub.id}.", public=True)
    if command.action == "list":
        subs = subscriptions.list_subscriptions(session, recipient)
        if not subs:
            return _reply("This channel has no subscriptions. " + HELP)
        return _reply("\n".join(f"`{sub.id}` {slack_escape(sub.query)} · {schedule_label(sub)}" for sub in subs))
    sub_ids = [sub.id for sub in subscriptions.list_subscriptions(session, recipient)]
    if command.subscription_id not in sub_ids:
        raise NotFound(f"this channel has no subscription {command.subscription_id}: see /digest list")
    sub = subscriptions.unsubscribe(session, command.subscription_id, now)
    return _reply(f"Unsubscribed this channel from `{slack_escape(sub.query)}`.", public=True)
