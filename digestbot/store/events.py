"""The Events repository: webhook events seen once (SendGrid event ids, Slack request signatures)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, tuple_

from digestbot.store.db import insert_ignoring_duplicates
from digestbot.store.models import WebhookEvent
from digestbot.store.repository import Repository

MAX_EVENT_ID = 200  # the column's width


class Events(Repository):
    """SQL for webhook events seen once (SendGrid event ids, Slack request signatures)."""

    def record(self, source: str, event_ids: Sequence[str], now: datetime) -> set[str]:
        """Record event ids (each cut to the column's width), one statement per 500; those not
        recorded before."""
        ids = list(dict.fromkeys(event_id[:MAX_EVENT_ID] for event_id in event_ids))
        insert = insert_ignoring_duplicates(self.dialect, WebhookEvent)
        new: set[str] = set()
        for start in range(0, len(ids), 500):
            rows = [{"source": source, "event_id": event_id, "received_at": now} for event_id in ids[start:start + 500]]
            # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT here.
            new.update(self.session.scalars(insert.values(rows).returning(WebhookEvent.event_id)))
        return new

    def count_older(self, before: datetime) -> int:
        """Event ids received before ``before``."""
        return self.session.scalar(select(func.count()).select_from(WebhookEvent)
                                   .where(WebhookEvent.received_at < before)) or 0

    def forget_older(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` of the oldest event ids received before ``before``; how many.

        Small batches through the ``received_at`` index keep each call short.
        """
        oldest = (select(WebhookEvent.source, WebhookEvent.event_id)
                  .where(WebhookEvent.received_at < before)
                  .order_by(WebhookEvent.received_at).limit(limit))
        return self.session.execute(
            delete(WebhookEvent).where(tuple_(WebhookEvent.source, WebhookEvent.event_id).in_(oldest))
        ).rowcount
