"""Emails sent because someone asked on the web pages: a confirmation link, a manage link.

They go through the outbox like digests (same channels, same retries), under their own cadence
names, which also lets the per-address daily limit be counted from the outbox itself.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digestbot.core.tokens import TIMED, LinkSigner
from digestbot.render import Renderer, Sender, mail_domain
from digestbot.services.subscriptions import schedule_label
from digestbot.store.models import OutboxMessage, Recipient, Subscription

NOTICES = ("confirm", "manage")  # outbox cadences of these emails


def notices_sent_since(session: Session, recipient_id: int, since: datetime) -> int:
    return session.scalar(
        select(func.count()).select_from(OutboxMessage)
        .where(OutboxMessage.recipient_id == recipient_id, OutboxMessage.cadence.in_(NOTICES),
               OutboxMessage.created_at >= since)
    ) or 0


def address_over_limit(session: Session, recipient: Recipient, limit: int, now: datetime) -> bool:
    """Whether this address already got ``limit`` of these emails in the last 24 hours."""
    return notices_sent_since(session, recipient.id, now - timedelta(days=1)) >= limit


class Notices:
    def __init__(self, renderer: Renderer, signer: LinkSigner, sender: Sender) -> None:
        self.renderer = renderer
        self.signer = signer
        self.sender = sender

    def queue_confirmation(self, session: Session, recipient: Recipient, subs: list[Subscription],
                           now: datetime) -> OutboxMessage:
        context = {
            "address": recipient.address,
            "subscriptions": [{"query": sub.query, "schedule": schedule_label(sub)} for sub in subs],
            "confirm_url": self.signer.confirm_url(recipient.id, [sub.id for sub in subs]),
            "valid_days": TIMED["confirm"] // 86400,
        }
        subject = "Confirm your digestbot subscription" + ("s" if len(subs) > 1 else "")
        return self._queue(session, recipient, "confirm", subject, context, now)

    def queue_manage_link(self, session: Session, recipient: Recipient, now: datetime) -> OutboxMessage:
        context = {"address": recipient.address, "manage_url": self.signer.manage_url(recipient.id),
                   "site": self.signer.base_url}
        return self._queue(session, recipient, "manage", "Your digestbot subscriptions", context, now)

    def _queue(self, session: Session, recipient: Recipient, kind: str, subject: str, context: dict,
               now: datetime) -> OutboxMessage:
        key = f"{kind}-{recipient.id}-{uuid.uuid4().hex[:12]}"
        payload = self.renderer.notice(kind, context, self.sender, to=recipient.address, subject=subject, key=key,
                                       message_id=f"<{key}@{mail_domain(self.sender.email)}>")
        row = OutboxMessage(
            recipient_id=recipient.id, channel="email", cadence=kind, digest_key=key, part=1, subject=subject,
            payload=json.dumps(payload, ensure_ascii=False), status="pending", attempts=0, next_attempt_at=now,
            created_at=now,
        )
        session.add(row)
        session.flush()
        return row
