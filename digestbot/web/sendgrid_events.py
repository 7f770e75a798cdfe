"""`/sendgrid/events`: SendGrid's event webhook. Bounces, drops and spam reports suspend the
recipient; each event is acted on once (by ``sg_event_id``: SendGrid retries for 24 hours).

Whoever can post here can suspend any address, so nothing is accepted until the endpoint is
set up (503 until then, like /slack/commands): each request must prove it comes from SendGrid,
either with a valid ECDSA signature (SENDGRID_WEBHOOK_PUBLIC_KEY; sendgrid's own EventWebhook
helper checks it) or with the shared secret DIGESTBOT_SENDGRID_WEBHOOK_SECRET, given as
``?secret=`` or as the password of HTTP basic auth. With both set, either proof is enough.

A burst of posts must not take the waitress threads or the database from the pages and
/healthz: at most CONCURRENT requests are worked on at once (the others get 429 with
Retry-After, and SendGrid retries), a request carries at most MAX_EVENTS events, and the
store is written only for events about known recipients.
"""

from __future__ import annotations

import hmac
import json
import threading

from flask import Blueprint, abort, current_app, request
from flask.blueprints import BlueprintSetupState
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from digestbot.services.feedback import apply_sendgrid_events
from digestbot.settings import Settings
from digestbot.web.app import site

blueprint = Blueprint("sendgrid", __name__)

# SendGrid posts a batch when it reaches 768 KB or every 30 s: a few thousand of its smallest
# events at most. The 1 MB body limit bounds the bytes; this bounds the work per request.
MAX_EVENTS = 5000
CONCURRENT = 2  # of `digestbot serve`'s 8 threads: the rest stay free for people and /healthz
RETRY_AFTER = 10  # seconds


@blueprint.record_once
def _make_slots(state: BlueprintSetupState) -> None:
    state.app.extensions["digestbot.sendgrid_slots"] = threading.BoundedSemaphore(CONCURRENT)


@blueprint.post("/sendgrid/events")
def events():
    s = site()
    if not (s.settings.sendgrid_webhook_public_key or s.settings.sendgrid_webhook_secret):
        abort(503, description="SendGrid events are not set up here "
                               "(SENDGRID_WEBHOOK_PUBLIC_KEY and DIGESTBOT_SENDGRID_WEBHOOK_SECRET are empty)")
    body = request.get_data()
    refusal = _unproven(s.settings, body)
    if refusal:
        abort(403, description=refusal)
    slots: threading.BoundedSemaphore = current_app.extensions["digestbot.sendgrid_slots"]
    if not slots.acquire(blocking=False):
        return ({"error": f"too many event posts at once; retry in {RETRY_AFTER} s"}, 429,
                {"Retry-After": str(RETRY_AFTER)})
    try:
        batch = _events_in(body)
        return apply_sendgrid_events(s.store, batch, s.clock()).as_json()
    finally:
        slots.release()


def _unproven(settings: Settings, body: bytes) -> str | None:
    """Why the request does not prove it comes from SendGrid, in one line; None when it does."""
    key, secret = settings.sendgrid_webhook_public_key, settings.sendgrid_webhook_secret
    if key and _signed(key, body):
        return None
    if secret and _has_secret(secret):
        return None
    if key and secret:
        return "neither a valid event webhook signature nor the webhook secret"
    return "invalid event webhook signature" if key else "missing or wrong event webhook secret"


def _signed(key: str, body: bytes) -> bool:
    signature = request.headers.get(EventWebhookHeader.SIGNATURE, "")
    timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP, "")
    if not (signature and timestamp):
        return False
    try:
        return bool(EventWebhook(key).verify_signature(body.decode("utf-8"), signature, timestamp))
    except (ValueError, UnicodeDecodeError):  # not base64, not a key, not UTF-8
        return False


def _has_secret(secret: str) -> bool:
    """The secret as ``?secret=`` or as the basic-auth password (the user name is not checked)."""
    auth = request.authorization
    password = (auth.password or "") if auth is not None and auth.type == "basic" else ""
    expected = secret.encode()
    # Both are compared, always, in constant time: how long a refusal takes tells nothing.
    matches = [hmac.compare_digest(given.encode(), expected) for given in (request.args.get("secret", ""), password)]
    return any(matches)


def _events_in(body: bytes) -> list:
    try:
        batch = json.loads(body)
    except ValueError:  # also bytes that are not UTF-8
        abort(400, description="the body is not JSON")
    except RecursionError:
        abort(400, description="the body is nested too deeply")
    if not isinstance(batch, list):
        abort(400, description="expected a JSON array of events")
    if len(batch) > MAX_EVENTS:
        abort(413, description=f"at most {MAX_EVENTS} events per request")
    return batch
