"""Build the digests that are due into the outbox: one message (or Slack messages) per
recipient per cadence window, with the record of which papers it covers, in one transaction."""

from __future__ import annotations

import json
import secrets
import uuid
from collections import defaultdict
from dataclasses import dataclass
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, and_, exists, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from digestbot.core.digest import Digest, PaperRef, SubscriptionRef, compose
from digestbot.core.query import parse_stored_query
from digestbot.core.recipients import parse_recipient
from digestbot.core.schedule import CADENCES, Schedule, latest_slot
from digestbot.core.tokens import LinkSigner
from digestbot.render import Links, Renderer, Sender, mail_domain
from digestbot.settings import Settings
from digestbot.store.models import DigestItem, Match, OutboxMessage, Paper, Recipient, Secret, Subscription


# Queries are parsed for every digest of a run, and popular ones are shared by many readers.
_parsed_query = lru_cache(maxsize=4096)(parse_stored_query)


@dataclass(frozen=True, slots=True)
class BuiltDigest:
    recipient: str
    cadence: str
    subject: str
    papers: int  # all the papers it covers (shown or linked)
    messages: int  # outbox rows: 1 for email, 1+ for Slack
    digest_key: str

    def as_json(self) -> dict:
        return {"recipient": self.recipient, "cadence": self.cadence, "subject": self.subject,
                "papers": self.papers, "messages": self.messages, "digest_key": self.digest_key}


def signing_key(engine: Engine, settings: Settings) -> str:
    """DIGESTBOT_SECRET_KEY, or a random key made once and kept in the database."""
    if settings.secret_key:
        return settings.secret_key
    try:
        with Session(engine) as session, session.begin():
            found = session.get(Secret, "signing_key")
            if found is not None:
                return found.value
            session.add(Secret(name="signing_key", value=secrets.token_urlsafe(32)))
    except IntegrityError:
        pass  # another process made the key at the same moment: theirs is the one
    with Session(engine) as session:
        return session.get(Secret, "signing_key").value


class DigestBuilder:
    """Everything needed to turn matches into rendered outbox rows."""

    def __init__(self, engine: Engine, settings: Settings, renderer: Renderer | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine = engine
        self.clock = clock
        self.settings = settings
        self.renderer = renderer or Renderer()
        self.signer = LinkSigner(signing_key(engine, settings), settings.base_url)
        self.sender = Sender(settings.from_email, settings.from_name, settings.postal_address)

    # ---- what is due ----

    def due_groups(self, session: Session, now: datetime, cadence: str | None = None,
                   recipient: str | None = None, *, force: bool = False, recipient_id: int | None = None,
                   ) -> dict[tuple[int, str], list[tuple[Subscription, datetime]]]:
        """(recipient id, cadence) → [(subscription, slot)] for subscriptions whose window has passed.

        ``force`` treats every subscription as due (for previews); ``recipient_id`` reads only
        that recipient's subscriptions.
        """
        statement = (select(Subscription).join(Subscription.recipient)
                     .where(Subscription.active.is_(True), Recipient.suspended_at.is_(None)))
        if cadence is not None:
            statement = statement.where(Subscription.cadence == cadence)
        if recipient is not None:
            # A lookup: any stored address, whatever DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS says now.
            statement = statement.where(Recipient.address == parse_recipient(recipient, private_webhooks=True).address)
        if recipient_id is not None:
            statement = statement.where(Subscription.recipient_id == recipient_id)
        groups: dict[tuple[int, str], list[tuple[Subscription, datetime]]] = defaultdict(list)
        for sub in session.scalars(statement.order_by(Subscription.id)):
            if sub.cadence == "instant":
                slot = now
            else:
                slot = latest_slot(Schedule(sub.cadence, sub.send_at, sub.weekday, sub.timezone), now)
                covered = sub.digested_until or sub.created_at
                if slot <= covered and not force:
                    continue
            groups[(sub.recipient_id, sub.cadence)].append((sub, slot))
        return groups

    def pending(self, session: Session, recipient_id: int, cadence: str, subs: list[Subscription]
                ) -> dict[int, tuple[PaperRef, list[SubscriptionRef]]]:
        """Papers matched by these subscriptions and not yet in any digest of this cadence."""
        refs = {s.id: SubscriptionRef(s.id, s.name or s.query, _parsed_query(s.query)) for s in subs}
        already = exists().where(and_(
            DigestItem.recipient_id == recipient_id, DigestItem.cadence == cadence,
            DigestItem.paper_id == Match.paper_id,
        ))
        rows = session.execute(
            select(Match.subscription_id, Paper.id, Paper.title, Paper.abstract, Paper.authors_count,
                   Paper.upvotes, Paper.published, Paper.first_seen)
            .join(Paper, Paper.id == Match.paper_id)
            .where(Match.subscription_id.in_(list(refs)), ~already)
        ).all()
        found: dict[int, tuple[PaperRef, list[SubscriptionRef]]] = {}
        for sub_id, *paper in rows:
            if paper[0] not in found:
                found[paper[0]] = (PaperRef(*paper), [])
            found[paper[0]][1].append(refs[sub_id])
        return found

    # ---- rendering ----

    def compose(self, recipient: Recipient, cadence: str, subs_slots: list[tuple[Subscription, datetime]],
                matched: dict) -> Digest | None:
        first_sub, slot = subs_slots[0]
        return compose(
            recipient=recipient.address.removeprefix("slack:") if recipient.kind == "slack" else recipient.address,
            cadence=cadence, matched=matched, slot_local=slot.astimezone(ZoneInfo(first_sub.timezone)),
            max_papers=self.settings.digest_max_papers, paper_url=self.settings.paper_url,
        )

    def payloads(self, recipient: Recipient, digest: Digest, digest_key: str) -> list[dict]:
        links = Links(
            manage=self.signer.manage_url(recipient.id),
            unsubscribe=self.signer.unsubscribe_url(recipient.id, [s.id for s in digest.subscriptions]),
            per_subscription={s.id: self.signer.unsubscribe_url(recipient.id, [s.id]) for s in digest.subscriptions},
            see_all=self.signer.digest_url(recipient.id, digest_key),
        )
        target = parse_recipient(recipient.address, private_webhooks=True)  # checked when it was stored
        if target.kind == "email":
            key = f"{digest_key}-1"
            return [self.renderer.email(digest, links, self.sender, key=key,
                                        message_id=f"<{key}@{mail_domain(self.sender.email)}>",
                                        max_bytes=self.settings.max_email_bytes)]
        return self.renderer.slack(digest, links, channel=target.target, key=digest_key)

    # ---- building ----

    def build_due(self, now: datetime, cadence: str | None = None, recipient: str | None = None,
                  dry_run: bool = False) -> list[BuiltDigest]:
        """Queue every digest due at ``now``. Each digest is its own transaction."""
        if cadence is not None and cadence not in CADENCES:
            raise ValueError(cadence)
        with Session(self.engine) as session:
            keys = list(self.due_groups(session, now, cadence, recipient))
        built = []
        for recipient_id, group_cadence in keys:
            try:
                result = self._build_one(recipient_id, group_cadence, now, cadence, recipient, dry_run)
            except IntegrityError:
                continue  # another process built this digest at the same moment
            if result is not None:
                built.append(result)
        return built

    def _build_one(self, recipient_id: int, cadence: str, now: datetime, cadence_filter: str | None,
                   recipient_filter: str | None, dry_run: bool) -> BuiltDigest | None:
        with Session(self.engine) as session, session.begin():
            # Re-read inside the transaction: the window may have been taken meanwhile. Only this
            # recipient's subscriptions: reading everyone's for every digest made a run quadratic.
            group = self.due_groups(session, now, cadence, recipient_filter,
                                    recipient_id=recipient_id).get((recipient_id, cadence))
            if not group:
                return None
            subs = [s for s, _ in group]
            recipient = session.get(Recipient, recipient_id)
            matched = self.pending(session, recipient_id, cadence, subs)
            digest = self.compose(recipient, cadence, group, matched) if matched else None
            if not dry_run:
                for sub, slot in group:
                    if cadence != "instant":
                        sub.digested_until = slot
            if digest is None:
                return None
            digest_key = f"d{recipient_id}-{cadence[0]}-{uuid.uuid4().hex[:12]}"
            payloads = self.payloads(recipient, digest, digest_key)
            result = BuiltDigest(recipient.address, cadence, digest.subject, digest.total, len(payloads), digest_key)
            if dry_run:  # nothing was changed: the commit on leaving is empty
                return result
            # Bulk INSERTs (one statement each), not ORM objects: the unit of work was a good part
            # of a digest's build time. An IntegrityError now comes from here instead of the commit.
            session.execute(insert(DigestItem), [
                {"recipient_id": recipient_id, "cadence": cadence, "paper_id": paper_id, "digest_key": digest_key,
                 "created_at": now}
                for paper_id in matched
            ])
            session.execute(insert(OutboxMessage), [
                {"recipient_id": recipient_id, "channel": recipient.kind, "cadence": cadence, "digest_key": digest_key,
                 "part": part, "subject": digest.subject, "payload": json.dumps(payload, ensure_ascii=False),
                 # Sendable at once, even when built for a --now in the future.
                 "status": "pending", "attempts": 0, "next_attempt_at": min(now, self.clock()), "created_at": now}
                for part, payload in enumerate(payloads, start=1)
            ])
            return result

    def preview(self, recipient: str, now: datetime, cadence: str | None = None) -> tuple[Recipient, Digest, list[dict]] | None:
        """What ``recipient`` would get now (all its pending matches of one cadence), without queuing."""
        with Session(self.engine) as session:
            groups = self.due_groups(session, now, cadence, recipient, force=True)
            for wanted in ([cadence] if cadence else ["daily", "weekly", "instant"]):
                for (recipient_id, group_cadence), group in groups.items():
                    if group_cadence != wanted:
                        continue
                    row = session.get(Recipient, recipient_id)
                    matched = self.pending(session, recipient_id, group_cadence, [s for s, _ in group])
                    digest = self.compose(row, group_cadence, group, matched) if matched else None
                    if digest is not None:
                        session.expunge(row)
                        return row, digest, self.payloads(row, digest, f"preview-{uuid.uuid4().hex[:8]}")
        return None
