"""The Outbox repository: digest items, the outbox and admin alerts.

Claims are atomic: on PostgreSQL ``FOR UPDATE SKIP LOCKED`` inside an ``UPDATE … RETURNING``
(so several `digestbot send` processes never take the same row), on SQLite the same UPDATE
under ``BEGIN IMMEDIATE``. What a digest needs to know (which subscriptions are due, which
matched papers it has not sent yet) is read here too: "digests and outbox" is one aggregate.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, exists, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from digestbot.store.db import insert_ignoring_duplicates
from digestbot.store.models import AdminAlert, DigestItem, Match, OutboxMessage, OutboxPayload, Paper, Subscription
from digestbot.errors import Conflict
from digestbot.store.repository import Repository



_DIGEST_ITEMS = {
    "sqlite": "INSERT INTO digest_items (recipient_id, cadence, paper_id, digest_key, created_at) "
              "SELECT json_extract(d.value, '$[0]'), json_extract(d.value, '$[1]'), p.value, "
              "json_extract(d.value, '$[2]'), :now "
              "FROM json_each(:items) AS d JOIN json_each(d.value, '$[3]') AS p",
    "postgresql": "INSERT INTO digest_items (recipient_id, cadence, paper_id, digest_key, created_at) "
                  "SELECT CAST(d ->> 0 AS INTEGER), d ->> 1, CAST(p AS INTEGER), d ->> 2, :now "
                  "FROM json_array_elements(CAST(:items AS JSON)) AS d, json_array_elements_text(d -> 3) AS p",
}


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to queue: a digest (or one part of a Slack digest), a notice or an admin alert."""

    recipient_id: int
    channel: str  # email | slack | slack-webhook
    kind: str  # instant | daily | weekly (digests), confirm | manage (notices), alert
    key: str  # groups the parts of one message (the digest key)
    subject: str
    payload: dict[str, Any]  # what the channel sends
    part: int = 1


class Outbox(Repository):
    """SQL for digest items, the outbox and admin alerts."""

    # ---- queuing ----

    def queue(self, messages: Sequence[NewMessage], *, now: datetime, due: datetime | None = None) -> None:
        """Put messages in the outbox, pending, sendable from ``due`` (default: ``now``).

        One bulk INSERT, not ORM objects: the unit of work was a good part of a digest's build time.
        """
        if not messages:
            return
        # Core, through the tables: the ORM's bulk path cost more than the statements themselves.
        table = OutboxMessage.__table__
        ids = self.session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), [
            {"recipient_id": m.recipient_id, "channel": m.channel, "kind": m.kind, "digest_key": m.key,
             "part": m.part, "subject": m.subject,
             "status": "pending", "attempts": 0, "next_attempt_at": due or now, "created_at": now}
            for m in messages
        ]).scalars().all()
        # The payload apart, written once: status updates rewrite only the narrow outbox row.
        self.session.execute(insert(OutboxPayload.__table__), [
            {"message_id": message_id, "payload": json.dumps(m.payload, ensure_ascii=False)}
            for message_id, m in zip(ids, messages, strict=True)
        ])

    def sent_since(self, recipient_id: int, kinds: Iterable[str], since: datetime) -> int:
        """How many messages of these kinds were queued for the recipient since then (for per-address limits)."""
        return self.session.scalar(
            select(func.count()).select_from(OutboxMessage)
            .where(OutboxMessage.recipient_id == recipient_id, OutboxMessage.kind.in_(list(kinds)),
                   OutboxMessage.created_at >= since)
        ) or 0

    # ---- delivering ----

    def claim(self, worker: str, now: datetime, limit: int, kinds: Sequence[str] | None = None
              ) -> list[OutboxMessage]:
        """Take up to ``limit`` due pending rows (of these kinds only, if given) for ``worker``."""
        earlier = aliased(OutboxMessage)
        # The parts of a Slack digest go out in order, even across workers: a part is claimable
        # only once every earlier part of its digest is sent or has failed for good.
        waiting_for_earlier_part = (
            select(earlier.id)
            .where(earlier.digest_key == OutboxMessage.digest_key, earlier.part < OutboxMessage.part,
                   earlier.status.in_(("pending", "sending")))
            .exists()
        )
        # A first part waits for nothing: saying so spares the check for every email and most Slack
        # messages. (Without it, a PostgreSQL planner that has no statistics yet for a freshly built
        # outbox ran the check for every pending row before taking the first ones: quadratic.)
        due = (
            select(OutboxMessage.id)
            .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now,
                   or_(OutboxMessage.part == 1, ~waiting_for_earlier_part))
            .order_by(OutboxMessage.id).limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite serialises writers instead
        )
        if kinds is not None:
            due = due.where(OutboxMessage.kind.in_(kinds))
        ids = list(self.session.scalars(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(due.scalar_subquery()), OutboxMessage.status == "pending")
            .values(status="sending", claimed_at=now, claimed_by=worker, attempts=OutboxMessage.attempts + 1)
            .returning(OutboxMessage.id)
        ))
        if not ids:
            return []
        return list(self.session.scalars(
            select(OutboxMessage).where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id)))

    def record_outcomes(self, worker: str, outcomes: Iterable[tuple[int, dict[str, Any]]]) -> None:
        """Set each row's new values (and release its claim), if ``worker`` still holds it.

        Core executemany through the table, one statement per shape of values: a sending thread
        waits for this commit, so it is kept short.
        """
        table = OutboxMessage.__table__
        shapes: dict[tuple[str, ...], list[dict]] = defaultdict(list)
        for row_id, values in outcomes:
            shapes[tuple(sorted(values))].append({"row_id": row_id, **{f"new_{k}": v for k, v in values.items()}})
        for names, params in shapes.items():
            self.session.execute(
                update(table)
                .where(table.c.id == bindparam("row_id"), table.c.claimed_by == worker)
                .values(claimed_at=None, claimed_by=None,
                        **{name: bindparam(f"new_{name}", type_=table.c[name].type) for name in names}),
                params,
            )

    def release_stale(self, now: datetime, lease: timedelta) -> int:
        """Rows ``sending`` for longer than ``lease`` (their process died): back to pending; how many."""
        result = self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status == "sending", OutboxMessage.claimed_at < now - lease)
            .values(status="pending", claimed_at=None, claimed_by=None)
        )
        return result.rowcount or 0

    def next_due(self, kinds: Sequence[str] | None = None) -> datetime | None:
        """When the soonest pending row (of these kinds) comes due."""
        statement = select(func.min(OutboxMessage.next_attempt_at)).where(OutboxMessage.status == "pending")
        if kinds is not None:
            statement = statement.where(OutboxMessage.kind.in_(kinds))
        return self.session.scalar(statement)

    def fail_pending(self, recipient_id: int, reason: str) -> None:
        """Every pending message to this recipient fails with ``reason`` (it was suspended)."""
        self.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.recipient_id == recipient_id, OutboxMessage.status == "pending")
            .values(status="failed", last_error=reason[:500])
        )

    # ---- what the operator sees ----

    def counts(self) -> dict[str, int]:
        """Messages by status (every status, 0 when none)."""
        found = dict(self.session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
        return {status: found.get(status, 0) for status in ("pending", "sending", "sent", "failed")}

    def pending(self) -> int:
        return self.session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending")) or 0

    def newest(self, status: str | None, limit: int) -> list[OutboxMessage]:
        statement = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
        if status is not None:
            statement = statement.where(OutboxMessage.status == status)
        return list(self.session.scalars(statement))

    def message(self, row_id: int) -> OutboxMessage | None:
        return self._by_id(OutboxMessage, row_id)

    def put_back(self, row: OutboxMessage, now: datetime) -> None:
        """Pending again, due now, with a fresh attempt count."""
        row.status, row.attempts, row.next_attempt_at, row.last_error = "pending", 0, now, None

    # ---- retention ----

    def _sent_before(self, before: datetime):
        return (select(OutboxPayload.message_id).join(OutboxMessage, OutboxMessage.id == OutboxPayload.message_id)
                .where(OutboxMessage.status == "sent", OutboxMessage.sent_at < before))

    def count_sent_payloads(self, before: datetime) -> int:
        """Payloads kept of messages sent before ``before``."""
        return self.session.scalar(select(func.count()).select_from(self._sent_before(before).subquery())) or 0

    def drop_sent_payloads(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` payloads of messages sent before ``before`` (the rows stay); how many."""
        ids = list(self.session.scalars(self._sent_before(before).limit(limit)))
        if ids:
            self.session.execute(delete(OutboxPayload).where(OutboxPayload.message_id.in_(ids)))
        return len(ids)

    # ---- digests ----

    def undigested(self, recipient_id: int, cadence: str, subscription_ids: Sequence[int]) -> list[tuple]:
        """(subscription id, paper id, title, abstract, authors_count, upvotes, published,
        first_seen, arxiv_id, authors) of papers these subscriptions matched and no digest of this cadence to this
        recipient has covered yet."""
        already = exists().where(and_(
            DigestItem.recipient_id == recipient_id, DigestItem.cadence == cadence,
            DigestItem.paper_id == Match.paper_id,
        ))
        return list(self.session.execute(
            select(Match.subscription_id, Paper.id, Paper.title, Paper.abstract, Paper.authors_count,
                   Paper.upvotes, Paper.published, Paper.first_seen, Paper.arxiv_id, Paper.authors)
            .join(Paper, Paper.id == Match.paper_id)
            .where(Match.subscription_id.in_(list(subscription_ids)), ~already)
        ).all())

    def undigested_of(self, subscription_ids: Sequence[int]) -> list[tuple]:
        """``undigested`` for many subscriptions at once (each with its own recipient and cadence)."""
        already = exists().where(and_(
            DigestItem.recipient_id == Subscription.recipient_id, DigestItem.cadence == Subscription.cadence,
            DigestItem.paper_id == Match.paper_id,
        ))
        found: list[tuple] = []
        for start in range(0, len(subscription_ids), 500):
            found += self.session.execute(
                select(Match.subscription_id, Paper.id, Paper.title, Paper.abstract, Paper.authors_count,
                       Paper.upvotes, Paper.published, Paper.first_seen, Paper.arxiv_id, Paper.authors)
                .join(Paper, Paper.id == Match.paper_id).join(Subscription, Subscription.id == Match.subscription_id)
                .where(Match.subscription_id.in_(list(subscription_ids[start:start + 500])), ~already)
            ).all()
        return found

    def record_digests(self, digests: Sequence[tuple[int, str, Iterable[int], str]], now: datetime) -> None:
        """``record_digest`` for many (recipient id, cadence, paper ids, digest key) in one statement.

        Raises ``Conflict`` when another process recorded one of them first.
        """
        # One JSON document, its rows made by the database: an executemany of ~8 rows a digest cost
        # the driver more than the database.
        document = json.dumps([[recipient_id, cadence, key, list(paper_ids)]
                               for recipient_id, cadence, paper_ids, key in digests if paper_ids])
        if document == "[]":
            return
        created = DigestItem.__table__.c.created_at.type
        try:
            self.session.execute(text(_DIGEST_ITEMS[self.dialect]).bindparams(bindparam("now", type_=created)),
                                 {"items": document, "now": now})
        except IntegrityError as exc:
            raise Conflict("digest items were recorded meanwhile by another process") from exc

    def record_digest(self, recipient_id: int, cadence: str, paper_ids: Iterable[int], digest_key: str,
                      now: datetime) -> None:
        """These papers went into this digest: no later digest of the cadence sends them again.

        Raises ``Conflict`` when another process recorded one of them first (it built the same digest).
        """
        try:
            self.session.execute(insert(DigestItem), [
                {"recipient_id": recipient_id, "cadence": cadence, "paper_id": paper_id, "digest_key": digest_key,
                 "created_at": now}
                for paper_id in paper_ids
            ])
        except IntegrityError as exc:
            raise Conflict(f"digest items of recipient {recipient_id} ({cadence}) were recorded meanwhile") from exc

    def digest_papers(self, recipient_id: int, digest_key: str) -> list[Paper]:
        """The papers of one digest, as its page lists them: most upvoted first, then newest."""
        return list(self.session.scalars(
            select(Paper).join(DigestItem, DigestItem.paper_id == Paper.id)
            .where(DigestItem.recipient_id == recipient_id, DigestItem.digest_key == digest_key)
            .order_by(Paper.upvotes.desc().nulls_last(), Paper.first_seen.desc())
        ))

    # ---- admin alerts ----

    def alerts_told(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` the admin has been alerted about."""
        if not keys:
            return set()
        return set(self.session.scalars(select(AdminAlert.key).where(AdminAlert.key.in_(list(keys)))))

    def tell_alert(self, key: str, now: datetime) -> bool:
        """Record that the admin is told about ``key``; False if that was recorded already (by another process)."""
        statement = insert_ignoring_duplicates(self.dialect, AdminAlert).values(key=key[:200], sent_at=now)
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT.
        return self.session.scalar(statement.returning(AdminAlert.key)) is not None
