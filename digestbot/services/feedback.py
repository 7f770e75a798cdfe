"""What providers tell us back: SendGrid's event webhook (bounces, drops, spam reports,
unsubscribes), and the de-duplication of anything a provider may deliver twice."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digestbot.core.recipients import parse_recipient
from digestbot.errors import DigestbotError, NotFound
from digestbot.services.subscriptions import unsubscribe_recipient
from digestbot.store.db import insert_ignoring_duplicates
from digestbot.store.models import OutboxMessage, Recipient, WebhookEvent

# A hard bounce, a message SendGrid refused to send (its suppression lists: earlier bounces,
# spam reports, invalid addresses) or a spam report: mailing that address again hurts the
# sender's reputation, so it gets nothing more until its owner confirms again on the web page.
SUSPENDING = ("bounce", "dropped", "spamreport")
UNSUBSCRIBING = ("unsubscribe", "group_unsubscribe")


def first_time(session: Session, source: str, event_id: str, now: datetime) -> bool:
    """Record an event id; False when it was already recorded (a provider's retry or a replay)."""
    insert = insert_ignoring_duplicates(session.get_bind().dialect.name, WebhookEvent)
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT here.
    inserted = session.execute(
        insert.values(source=source, event_id=event_id[:200], received_at=now)
        .returning(WebhookEvent.event_id)
    ).first()
    return inserted is not None


def suspend(session: Session, recipient: Recipient, reason: str, now: datetime) -> None:
    """No more messages to this recipient: digests skip it, and what is queued for it fails with the reason."""
    if recipient.suspended_at is None:
        recipient.suspended_at = now
    recipient.suspended_reason = reason[:500]
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.recipient_id == recipient.id, OutboxMessage.status == "pending")
        .values(status="failed", last_error=f"recipient suspended: {reason}"[:500])
    )


@dataclass
class EventReport:
    suspended: list[str] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)
    duplicates: int = 0
    ignored: int = 0

    def as_json(self) -> dict:
        return {"suspended": self.suspended, "unsubscribed": self.unsubscribed,
                "duplicates": self.duplicates, "ignored": self.ignored}


def apply_sendgrid_events(session: Session, events: list, now: datetime) -> EventReport:
    """Act on a batch of SendGrid events, each once (by ``sg_event_id``)."""
    report = EventReport()
    for event in events:
        kind = event.get("event") if isinstance(event, dict) else None
        if kind not in SUSPENDING + UNSUBSCRIBING or (kind == "bounce" and event.get("type") == "blocked"):
            report.ignored += 1  # deliveries, opens, deferrals, and blocks (temporary)
            continue
        event_id = event.get("sg_event_id")
        if event_id and not first_time(session, "sendgrid", str(event_id), now):
            report.duplicates += 1
            continue
        recipient = _recipient(session, event.get("email"))
        if recipient is None:
            report.ignored += 1
            continue
        if kind in SUSPENDING:
            suspend(session, recipient, _reason(kind, event), now)
            report.suspended.append(recipient.address)
        else:
            try:
                unsubscribe_recipient(session, recipient.address, now)
            except NotFound:
                pass  # nothing active: already unsubscribed
            report.unsubscribed.append(recipient.address)
    return report


def _recipient(session: Session, email) -> Recipient | None:
    if not isinstance(email, str):
        return None
    try:
        address = parse_recipient(email).address
    except DigestbotError:
        return None
    return session.scalar(select(Recipient).where(Recipient.address == address, Recipient.kind == "email"))


def _reason(kind: str, event: dict) -> str:
    detail = str(event.get("reason") or event.get("response") or "").strip().splitlines()
    return f"{kind}: {detail[0]}" if detail else kind
