"""What providers tell us back: SendGrid's event webhook (bounces, drops, spam reports,
unsubscribes), and the de-duplication of anything a provider may deliver twice."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from digestbot.core.recipients import parse_recipient
from digestbot.errors import DigestbotError, NotFound
from digestbot.services import metrics
from digestbot.services.subscriptions import unsubscribe_recipient_in
from digestbot.store import Recipient, Store, Transaction
from digestbot.store.events import MAX_EVENT_ID

# A hard bounce, a message SendGrid refused to send (its suppression lists: earlier bounces,
# spam reports, invalid addresses) or a spam report: mailing that address again hurts the
# sender's reputation, so it gets nothing more until its owner confirms again on the web page.
SUSPENDING = ("bounce", "dropped", "spamreport")
UNSUBSCRIBING = ("unsubscribe", "group_unsubscribe")

# Seen event ids are kept long enough to recognise every retry and replay: SendGrid retries
# for 24 hours, Slack requests older than 5 minutes are refused anyway.
SEEN_FOR = timedelta(days=3)
FORGET_BATCH = 100


def first_time(tx: Transaction, source: str, event_id: str, now: datetime) -> bool:
    """Record an event id; False when it was already recorded (a provider's retry or a replay)."""
    return event_id[:MAX_EVENT_ID] in first_times(tx, source, [event_id], now)


def first_times(tx: Transaction, source: str, event_ids: list[str], now: datetime) -> set[str]:
    """Record event ids; the (truncated) ids that were not recorded before.

    Recording is also when ids that can no longer come back are forgotten: up to twice as many
    as are recorded (at least FORGET_BATCH), so expired ids are forgotten faster than they pile up.
    """
    forget_seen_events(tx, now, limit=max(FORGET_BATCH, 2 * len({e[:MAX_EVENT_ID] for e in event_ids})))
    return tx.events.record(source, event_ids, now)


def forget_seen_events(tx: Transaction, now: datetime, *, limit: int = FORGET_BATCH,
                       older_than: timedelta = SEEN_FOR) -> int:
    """Forget up to ``limit`` of the oldest event ids received before ``now - older_than``; how many.

    Each call is kept short; a periodic job can call it until it returns 0.
    """
    return tx.events.forget_older(now - older_than, limit)


def suspend(tx: Transaction, recipient: Recipient, reason: str, now: datetime) -> None:
    """No more messages to this recipient: digests skip it, and what is queued for it fails with the reason."""
    if recipient.suspended_at is None:
        recipient.suspended_at = now
    recipient.suspended_reason = reason[:500]
    tx.outbox.fail_pending(recipient.id, f"recipient suspended: {reason}")


@dataclass
class EventReport:
    suspended: list[str] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)
    duplicates: int = 0
    ignored: int = 0

    def as_json(self) -> dict:
        return {"suspended": self.suspended, "unsubscribed": self.unsubscribed,
                "duplicates": self.duplicates, "ignored": self.ignored}


@dataclass(frozen=True)
class _Actionable:
    kind: str
    address: str
    event_id: str | None
    reason: str


def apply_sendgrid_events(store: Store, events: list, now: datetime) -> EventReport:
    """Act on a batch of SendGrid events, each once (by ``sg_event_id``).

    Anyone who can post here could name any address, so what an event about an unknown
    address costs must not last: recipients are looked up first, in a short read, and only
    events that act on a known recipient write anything (their id, then the suspension or
    unsubscription), in one short write transaction. A batch of nothing actionable writes nothing.
    """
    report = EventReport()
    actionable: list[_Actionable] = []
    for event in events:
        kind = event.get("event") if isinstance(event, dict) else None
        metrics.WEBHOOK_EVENTS.labels("sendgrid", kind if kind in metrics.SENDGRID_EVENTS else "other").inc()
        found = _actionable(event)
        if found is None:
            report.ignored += 1  # deliveries, opens, deferrals, blocks (temporary), unknown shapes
        else:
            actionable.append(found)
    with store.reading() as tx:
        known = tx.subscriptions.recipient_ids(sorted({a.address for a in actionable}), "email")
    todo = [a for a in actionable if a.address in known]
    report.ignored += len(actionable) - len(todo)
    if not todo:
        return report
    with store.transaction() as tx:
        new = first_times(tx, "sendgrid", [a.event_id for a in todo if a.event_id], now)
        recipients = tx.subscriptions.recipients(sorted({known[a.address] for a in todo}))
        acted: set[str] = set()
        for item in todo:
            recipient = recipients.get(known[item.address])
            event_id = item.event_id[:MAX_EVENT_ID] if item.event_id else None
            if event_id is not None and (event_id not in new or event_id in acted):
                report.duplicates += 1
                continue
            if event_id is not None:
                acted.add(event_id)
            if recipient is None:  # deleted between the two transactions
                report.ignored += 1
            elif item.kind in SUSPENDING:
                suspend(tx, recipient, item.reason, now)
                report.suspended.append(recipient.address)
            else:
                try:
                    unsubscribe_recipient_in(tx, recipient.address, now)
                except NotFound:
                    pass  # nothing active: already unsubscribed
                report.unsubscribed.append(recipient.address)
    return report


def _actionable(event) -> _Actionable | None:
    """The event, if it would suspend or unsubscribe a well-formed email address."""
    if not isinstance(event, dict):
        return None
    kind = event.get("event")
    if kind not in SUSPENDING + UNSUBSCRIBING or (kind == "bounce" and event.get("type") == "blocked"):
        return None
    email = event.get("email")
    if not isinstance(email, str):
        return None
    try:
        recipient = parse_recipient(email)
    except DigestbotError:
        return None
    if recipient.kind != "email":
        return None
    event_id = event.get("sg_event_id")
    return _Actionable(kind, recipient.address, str(event_id) if event_id else None, _reason(kind, event))


def _reason(kind: str, event: dict) -> str:
    detail = str(event.get("reason") or event.get("response") or "").strip().splitlines()
    return f"{kind}: {detail[0]}" if detail else kind
