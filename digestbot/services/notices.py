"""Emails sent because someone asked on the web pages: a confirmation link, a manage link.

They go through the outbox like digests (same channels, same retries), as messages of their
own kinds, which also lets the per-address daily limit be counted from the outbox itself.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from digestbot.core.schedule import Schedule
from digestbot.core.tokens import TIMED, LinkSigner
from digestbot.render import Renderer, Sender, mail_domain
from digestbot.services import subscriptions
from digestbot.services.subscriptions import schedule_label
from digestbot.store import NewMessage, Recipient, Store, Subscription, Transaction

NOTICES = ("confirm", "manage")  # the outbox kinds of these emails


def address_over_limit(tx: Transaction, recipient_id: int, limit: int, now: datetime) -> bool:
    """Whether this address already got ``limit`` of these emails in the last 24 hours."""
    return tx.outbox.sent_since(recipient_id, NOTICES, now - timedelta(days=1)) >= limit


class Notices:
    """Renders these emails and queues them, inside the caller's transaction."""

    def __init__(self, renderer: Renderer, signer: LinkSigner, sender: Sender) -> None:
        self.renderer = renderer
        self.signer = signer
        self.sender = sender

    def queue_confirmation(self, tx: Transaction, recipient: Recipient, subs: list[Subscription],
                           now: datetime) -> None:
        context = {
            "address": recipient.address,
            "subscriptions": [{"query": sub.query or sub.name or "", "schedule": schedule_label(sub)} for sub in subs],
            "confirm_url": self.signer.confirm_url(recipient.id, [sub.id for sub in subs]),
            "valid_days": TIMED["confirm"] // 86400,
        }
        subject = "Confirm your digestbot subscription" + ("s" if len(subs) > 1 else "")
        self._queue(tx, recipient, "confirm", subject, context, now)

    def queue_manage_link(self, tx: Transaction, recipient: Recipient, now: datetime) -> None:
        context = {"address": recipient.address, "manage_url": self.signer.manage_url(recipient.id),
                   "site": self.signer.base_url}
        self._queue(tx, recipient, "manage", "Your digestbot subscriptions", context, now)

    def _queue(self, tx: Transaction, recipient: Recipient, kind: str, subject: str, context: dict,
               now: datetime) -> None:
        key = f"{kind}-{recipient.id}-{uuid.uuid4().hex[:12]}"
        payload = self.renderer.notice(kind, context, self.sender, to=recipient.address, subject=subject, key=key,
                                       message_id=f"<{key}@{mail_domain(self.sender.email)}>")
        tx.outbox.queue([NewMessage(recipient.id, "email", kind, key, subject, payload)], now=now)


def sign_up(store: Store, notices: Notices, address: str, query: str, schedule: Schedule, *, limit: int,
            now: datetime, top: int | None = None, likes: tuple[str, ...] = (), like_top: int | None = None,
            like_threshold: float | None = None) -> bool:
    """The subscribe form: a pending subscription and its confirmation email, in one transaction.

    False, with nothing kept, when the address already got ``limit`` notices today.
    """
    try:
        with store.transaction() as tx:
            sub, _ = subscriptions.subscribe_in(tx, address, query, schedule=schedule, pending=True, now=now, top=top,
                                                likes=likes, like_top=like_top, like_threshold=like_threshold)
            if address_over_limit(tx, sub.recipient_id, limit, now):
                raise _OverLimit  # leaving the block rolls the subscription back
            notices.queue_confirmation(tx, sub.recipient, [sub], now)
    except _OverLimit:
        return False
    return True


class _OverLimit(Exception):
    pass


def send_manage_link(store: Store, notices: Notices, address: str, *, limit: int, now: datetime) -> None:
    """Email the manage link to ``address`` if it is an email recipient with subscriptions (and
    under its daily limit); the caller answers the same either way."""
    with store.transaction() as tx:
        recipient = tx.subscriptions.recipient_at(address, "email")
        if recipient is not None and tx.subscriptions.of_recipient(recipient.id) \
                and not address_over_limit(tx, recipient.id, limit, now):
            notices.queue_manage_link(tx, recipient, now)
