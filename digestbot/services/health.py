"""Is the pipeline healthy? Next due digests, and one alert to DIGESTBOT_ADMIN per problem.

"No papers today" and "the pipeline is broken" look alike from a subscriber's inbox; the
admin hears when no dump has arrived for DIGESTBOT_STALE_HOURS, and when a file fails.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from digestbot.core.digest import one_line
from digestbot.core.recipients import parse_recipient, shown
from digestbot.core.schedule import Schedule, next_slot
from digestbot.render import Sender, admin_alert_payload
from digestbot.settings import Settings
from digestbot.store import NewMessage, Store, Transaction, schema_revision


def database_revision(store: Store) -> str | None:
    """The schema revision of the database (/healthz); raises when the database cannot be reached."""
    return schema_revision(store.engine)


def next_digests(tx: Transaction, now: datetime, limit: int = 10) -> list[dict]:
    """The soonest scheduled digests, by recipient and cadence: read from the subscriptions due
    soonest (by ``next_due_at``, a bounded number), not from every subscription."""
    soonest: dict[tuple[str, str], datetime] = {}
    for sub in tx.subscriptions.soonest_scheduled(max(limit * 100, 1_000)):
        when = next_slot(Schedule(sub.cadence, sub.send_at, sub.weekday, sub.timezone), now)
        key = (sub.recipient.address, sub.cadence)
        if key not in soonest or when < soonest[key]:
            soonest[key] = when
    ordered = sorted(soonest.items(), key=lambda item: item[1])[:limit]
    return [{"recipient": shown(r), "cadence": c, "at": when.isoformat()} for (r, c), when in ordered]


def pending_alerts(tx: Transaction, settings: Settings, now: datetime) -> list[tuple[str, str, str]]:
    """(key, subject, body) for each problem the admin has not heard about yet."""
    found: list[tuple[str, str, str]] = []
    last_file = tx.papers.last_ingested_file()
    last = last_file.processed_at if last_file is not None else None
    if last is not None and now - last > timedelta(hours=settings.stale_hours):
        found.append((
            f"stale:{last.isoformat()}",
            f"digestbot: no new dump for {int((now - last).total_seconds() // 3600)} hours",
            f"The last dump was ingested at {last:%Y-%m-%d %H:%M} UTC. Is the scraper that fills "
            f"{settings.watch_dir} still running?",
        ))
    for failed in tx.papers.failed_files():
        found.append((
            f"failed:{failed.sha256}",
            f"digestbot: a dump file failed: {one_line(failed.path)}",  # a file name may hold a line break
            f"{failed.path} could not be ingested: {failed.error}",
        ))
    told = tx.outbox.alerts_told([key for key, _, _ in found])
    return [alert for alert in found if alert[0] not in told]


def queue_admin_alerts(store: Store, settings: Settings, now: datetime) -> int:
    """Put each new alert in the outbox for DIGESTBOT_ADMIN (once per problem); returns how many."""
    if not settings.admin:
        return 0
    target = parse_recipient(settings.admin, private_webhooks=settings.allow_private_webhooks)
    sender = Sender(settings.from_email, settings.from_name, settings.postal_address)
    queued = 0
    with store.reading() as tx:
        alerts = pending_alerts(tx, settings, now)
    for key, subject, body in alerts:
        with store.transaction() as tx:
            if not tx.outbox.tell_alert(key, now):
                continue  # another process raised the same alert
            recipient = tx.subscriptions.recipient_for(target.address, target.kind, now)
            message_key = f"alert-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
            payload = admin_alert_payload(target, subject, body, sender, key=message_key)
            tx.outbox.queue([NewMessage(recipient.id, target.kind, "alert", message_key, subject, payload)], now=now)
        queued += 1
    return queued
