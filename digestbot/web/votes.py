"""Feedback on papers (issue 13): the "More like this" / "Less like this" links of email digests
and the buttons of Slack digests.

A link's GET only shows a page (mail scanners fetch every link in a message): the page sends
the vote by POST at once with a script, and has a button for browsers without one. The signed
token in the URL names the recipient, the paper and the vote; a forged token is refused and
nothing is recorded. Slack's button clicks come to ``/slack/interactions``, signed like slash
commands (a bad signature: 403); each button's value is a vote token of its own.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import TimeoutError
from urllib.parse import parse_qs

from flask import Blueprint, abort, request
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from digestbot.core.tokens import BadToken
from digestbot.errors import UsageError
from digestbot.services import votes
from digestbot.web.app import site

blueprint = Blueprint("votes", __name__)
log = logging.getLogger("digestbot.web")

ANSWER_WITHIN = 2.5  # seconds: Slack wants an answer within 3
ACTIONS = {"vote_up": "up", "vote_down": "down"}


def _load(token: str) -> tuple[int, int, str]:
    try:
        return site().signer.load_vote(token)
    except BadToken as exc:
        abort(404, description=str(exc))


def _page(token: str, done: bool):
    s = site()
    recipient_id, paper_id, action = _load(token)
    if done:
        try:
            votes.vote_by_ids(s.store, recipient_id, paper_id, action, s.clock())
        except UsageError as exc:
            abort(404, description=str(exc))
    title = votes.paper_title(s.store, paper_id)
    if title is None:
        abort(404, description="This paper is no longer known.")
    other = "down" if action == "up" else "up"
    return s.page("feedback.html.j2", action=action, title=title, done=done,
                  other_url=s.signer.vote_url(recipient_id, paper_id, other),
                  manage_url=s.signer.manage_url(recipient_id))


@blueprint.get("/feedback/<token>")
def feedback_page(token: str):
    """Shows what the link would record; records nothing."""
    return _page(token, done=False)


@blueprint.post("/feedback/<token>")
def feedback(token: str):
    """Records the vote (the page's script or button)."""
    return _page(token, done=True)


@blueprint.post("/slack/interactions")
def interactions():
    s = site()
    if not s.settings.slack_signing_secret:
        abort(503, description="Slack interactions are not set up here (SLACK_SIGNING_SECRET is empty)")
    body = request.get_data()
    try:
        valid = SignatureVerifier(s.settings.slack_signing_secret).is_valid_request(body, request.headers)
    except ValueError:
        valid = False
    if not valid:
        abort(403, description="invalid Slack signature")
    try:
        payload = json.loads(parse_qs(body.decode("utf-8", "replace")).get("payload", ["{}"])[0])
        [action] = [a for a in payload.get("actions", []) if a.get("action_id") in ACTIONS][:1] or [None]
    except (ValueError, AttributeError, TypeError):
        abort(400, description="not a Slack interaction payload")
    if action is None:
        return "", 200  # another kind of interaction: nothing to do
    try:
        recipient_id, paper_id, vote = s.signer.load_vote(str(action.get("value", "")))
    except BadToken:
        abort(400, description="this button is not valid")
    if vote != ACTIONS[action["action_id"]]:
        abort(400, description="this button is not valid")
    signature = request.headers.get("X-Slack-Signature", "")
    response_url = str(payload.get("response_url") or "")
    work = s.background.submit(votes.slack_vote, s.store, signature, recipient_id, paper_id, vote, s.clock())
    try:
        recorded = work.result(timeout=ANSWER_WITHIN)
    except TimeoutError:
        # Acknowledged in time; the vote is recorded when the store is free, and said then.
        work.add_done_callback(lambda done: _tell(s, response_url, _said(done, vote)))
        return "", 200
    except UsageError as exc:
        _tell(s, response_url, str(exc))
        return {"response_type": "ephemeral", "replace_original": False, "text": str(exc)}, 200
    if recorded is None:
        abort(409, description="this request was already received")
    text = _said(work, vote)
    _tell(s, response_url, text)
    return {"response_type": "ephemeral", "replace_original": False, "text": text}, 200


def _said(done, vote: str) -> str:
    try:
        done.result()
    except Exception as exc:  # the vote failed after the acknowledgement: say so
        return f"That vote was not recorded: {str(exc).splitlines()[0] if str(exc) else 'try again'}"
    return f"Noted: {'more' if vote == 'up' else 'fewer'} papers like this one in this channel's digests."


def _tell(s, response_url: str, text: str) -> None:
    """An ephemeral note to whoever clicked, through the interaction's response_url (in the
    background: the click is acknowledged first). The message itself is left as it is."""
    if response_url.startswith(("https://", "http://")):  # from a signed request: Slack gave it
        s.background.submit(_post, response_url, text)


def _post(response_url: str, text: str) -> None:
    response = WebhookClient(response_url, timeout=10).send(text=text, response_type="ephemeral",
                                                            replace_original=False)
    if response.status_code != 200:
        log.warning("slack interaction: response_url answered %s", response.status_code)
