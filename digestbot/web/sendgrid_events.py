"""`/sendgrid/events`: SendGrid's event webhook. Bounces, drops and spam reports suspend the
recipient; each event is acted on once (by ``sg_event_id``: SendGrid retries for 24 hours).

With SENDGRID_WEBHOOK_PUBLIC_KEY set, a request must carry a valid ECDSA signature
(sendgrid's own EventWebhook helper checks it); without it, anyone who knows the URL could
suspend addresses, so set it in production.
"""

from __future__ import annotations

import json

from flask import Blueprint, abort, request
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from digestbot.services.feedback import apply_sendgrid_events
from digestbot.web.app import site

blueprint = Blueprint("sendgrid", __name__)


@blueprint.post("/sendgrid/events")
def events():
    s = site()
    body = request.get_data()
    key = s.settings.sendgrid_webhook_public_key
    if key:
        signature = request.headers.get(EventWebhookHeader.SIGNATURE, "")
        timestamp = request.headers.get(EventWebhookHeader.TIMESTAMP, "")
        try:
            valid = bool(signature and timestamp) and EventWebhook(key).verify_signature(
                body.decode("utf-8"), signature, timestamp)
        except (ValueError, UnicodeDecodeError):  # not base64, not a key, not UTF-8
            valid = False
        if not valid:
            abort(403, description="invalid event webhook signature")
    try:
        batch = json.loads(body)
    except ValueError:
        abort(400, description="the body is not JSON")
    if not isinstance(batch, list):
        abort(400, description="expected a JSON array of events")
    with s.session() as session, session.begin():
        report = apply_sendgrid_events(session, batch, s.clock())
    return report.as_json()
