"""Is the pipeline healthy? Next due digests, and one alert to DIGESTBOT_ADMIN per problem.

"No papers today" and "the pipeline is broken" look alike from a subscriber's inbox; the
admin hears when no dump has arrived for DIGESTBOT_STALE_HOURS, and when a file fails.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digestbot.core.digest import one_line
from digestbot.core.recipients import parse_recipient
from digestbot.core.schedule import Schedule, next_slot
from digestbot.render import Sender, admin_alert_payload
from digestbot.settings import Settings
from digestbot.store.models import AdminAlert, DumpFile, OutboxMessage, Recipient, Subscription


def next_digests(session: Session, now: datetime, limit: int = 10) -> list[dict]:
    """The soonest scheduled digests, by recipient and cadence."""
    soonest: dict[tuple[str, str], datetime] = {}
    rows = session.execute(
        select(Subscription, Recipient.address).join(Subscription.recipient)
        .where(Subscription.active.is_(True), Subscription.cadence != "instant", Recipient.suspended_at.is_(None))
    ).all()
    for sub, address in rows:
        when = next_slot(Schedule(sub.cadence, sub.send_at, sub.weekday, sub.timezone), now)
        key = (address, sub.cadence)
        if key not in soonest or when < soonest[key]:
            soonest[key] = when
    ordered = sorted(soonest.items(), key=lambda item: item[1])[:limit]
    return [{"recipient": r, "cadence": c, "at": when.isoformat()} for (r, c), when in ordered]


def pending_alerts(session: Session, settings: Settings, now: datetime) -> list[tuple[str, str, str]]:
    """(key, subject, body) for each problem the admin has not heard about yet."""
    found: list[tuple[str, str, str]] = []
    last = session.scalar(select(func.max(DumpFile.processed_at)).where(DumpFile.status == "ingested"))
    if last is not None and now - last > timedelta(hours=settings.stale_hours):
        found.append((
            f"stale:{last.isoformat()}",
            f"digestbot: no new dump for {int((now - last).total_seconds() // 3600)} hours",
            f"The last dump was ingested at {last:%Y-%m-%d %H:%M} UTC. Is the scraper that fills "
            f"{settings.watch_dir} still running?",
        ))
    for failed in session.scalars(select(DumpFile).where(DumpFile.status == "failed")):
        found.append((
            f"failed:{failed.sha256}",
            f"digestbot: a dump file failed: {one_line(failed.path)}",  # a file name may hold a line break
            f"{failed.path} could not be ingested: {failed.error}",
        ))
    if not found:
        return []
    told = set(session.scalars(select(AdminAlert.key).where(AdminAlert.key.in_([k for k, _, _ in found]))))
    return [alert for alert in found if alert[0] not in told]


def queue_admin_alerts(engine: Engine, settings: Settings, now: datetime) -> int:
    """Put each new alert in the outbox for DIGESTBOT_ADMIN (once per problem); returns how many."""
    if not settings.admin:
        return 0
    target = parse_recipient(settings.admin, private_webhooks=settings.allow_private_webhooks)
    sender = Sender(settings.from_email, settings.from_name, settings.postal_address)
    queued = 0
    with Session(engine) as session:
        alerts = pending_alerts(session, settings, now)
    for key, subject, body in alerts:
        try:
            with Session(engine) as session, session.begin():
                session.add(AdminAlert(key=key[:200], sent_at=now))
                recipient = session.scalar(select(Recipient).where(Recipient.address == target.address))
                if recipient is None:
                    recipient = Recipient(address=target.address, kind=target.kind, created_at=now)
                    session.add(recipient)
                    session.flush()
                message_key = f"alert-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
                payload = admin_alert_payload(target, subject, body, sender, key=message_key)
                session.add(OutboxMessage(
                    recipient_id=recipient.id, channel=target.kind, cadence="alert", digest_key=message_key,
                    part=1, subject=subject, payload=json.dumps(payload, ensure_ascii=False), status="pending",
                    attempts=0, next_attempt_at=now, created_at=now,
                ))
            queued += 1
        except IntegrityError:
            continue  # another process raised the same alert
    return queued
