"""Build the digests that are due into the outbox: one message (or Slack messages) per
recipient per cadence window, with the record of which papers it covers, in one transaction."""

from __future__ import annotations

import secrets
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from digestbot.clock import Clock, utcnow
from digestbot.core.digest import Digest, PaperRef, SubscriptionRef, compose, keep_top
from digestbot.core.query import parse_stored_query
from digestbot.core.recipients import parse_recipient
from digestbot.core.schedule import CADENCES, Schedule, latest_slot
from digestbot.core.tokens import LinkSigner
from digestbot.render import Links, Renderer, Sender, mail_domain
from digestbot.services.likes import NOTHING, like_matches, ranked
from digestbot.services.relevance import RelevanceIndex
from digestbot.settings import Settings
from digestbot.errors import Conflict
from digestbot.store import NewMessage, Paper, Recipient, Store, Subscription, Transaction


def _tops(subs: list[Subscription]) -> dict[int, int]:
    """--top N of these subscriptions, by id (those with one)."""
    return {s.id: s.top for s in subs if s.top}


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


def signing_key(store: Store, settings: Settings) -> str:
    """DIGESTBOT_SECRET_KEY, or a random key made once and kept in the database."""
    if settings.secret_key:
        return settings.secret_key
    with store.transaction() as tx:
        return tx.secrets.kept("signing_key", lambda: secrets.token_urlsafe(32))


def digest_papers(store: Store, recipient_id: int, digest_key: str) -> list[Paper]:
    """The papers of one digest, for its page (the "see them all" link)."""
    with store.reading() as tx:
        return tx.outbox.digest_papers(recipient_id, digest_key)


class DigestBuilder:
    """Everything needed to turn matches into rendered outbox rows."""

    def __init__(self, store: Store, settings: Settings, renderer: Renderer, signer: LinkSigner, sender: Sender,
                 clock: Clock = utcnow, relevance: RelevanceIndex | None = None) -> None:
        self.store = store
        self.relevance = relevance  # None: no ranking, no like-subscriptions (issue 13)
        self.settings = settings
        self.renderer = renderer
        self.signer = signer
        self.sender = sender
        self.clock = clock

    # ---- what is due ----

    def due_groups(self, tx: Transaction, now: datetime, cadence: str | None = None,
                   recipient: str | None = None, *, force: bool = False, recipient_id: int | None = None,
                   ) -> dict[tuple[int, str], list[tuple[Subscription, datetime]]]:
        """(recipient id, cadence) → [(subscription, slot)] for subscriptions whose window has passed.

        ``force`` treats every subscription as due (for previews); ``recipient_id`` reads only
        that recipient's subscriptions. Each subscription comes with its recipient loaded.
        """
        # A lookup: any stored address, whatever DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS says now.
        address = parse_recipient(recipient, private_webhooks=True).address if recipient is not None else None
        groups: dict[tuple[int, str], list[tuple[Subscription, datetime]]] = defaultdict(list)
        for sub in tx.subscriptions.digest_subscriptions(cadence=cadence, address=address, recipient_id=recipient_id):
            if sub.cadence == "instant":
                slot = now
            else:
                slot = latest_slot(Schedule(sub.cadence, sub.send_at, sub.weekday, sub.timezone), now)
                covered = sub.digested_until or sub.created_at
                if slot <= covered and not force:
                    continue
            groups[(sub.recipient_id, sub.cadence)].append((sub, slot))
        return groups

    def pending(self, tx: Transaction, recipient_id: int, cadence: str, subs: list[Subscription]
                ) -> dict[int, tuple[PaperRef, list[SubscriptionRef]]]:
        """Papers matched by these subscriptions and not yet in any digest of this cadence."""
        refs = {s.id: SubscriptionRef(s.id, s.name or s.query, _parsed_query(s.query) if s.query else NOTHING)
                for s in subs}
        found: dict[int, tuple[PaperRef, list[SubscriptionRef]]] = {}
        for sub_id, *paper in tx.outbox.undigested(recipient_id, cadence, list(refs)):
            if paper[0] not in found:
                *fields, authors = paper
                found[paper[0]] = (PaperRef(*fields, tuple(authors) if authors is not None else None), [])
            found[paper[0]][1].append(refs[sub_id])
        return found

    # ---- rendering ----

    def compose(self, recipient: Recipient, cadence: str, subs_slots: list[tuple[Subscription, datetime]],
                matched: dict, scores: dict[int, float] | None = None) -> Digest | None:
        first_sub, slot = subs_slots[0]
        return compose(
            recipient=recipient.address.removeprefix("slack:") if recipient.kind == "slack" else recipient.address,
            cadence=cadence, matched=matched, slot_local=slot.astimezone(ZoneInfo(first_sub.timezone)),
            max_papers=self.settings.digest_max_papers, paper_url=self.settings.paper_url, scores=scores,
        )

    def payloads(self, recipient: Recipient, digest: Digest, digest_key: str) -> list[dict]:
        links = Links(
            manage=self.signer.manage_url(recipient.id),
            unsubscribe=self.signer.unsubscribe_url(recipient.id, [s.id for s in digest.subscriptions]),
            per_subscription={s.id: self.signer.unsubscribe_url(recipient.id, [s.id]) for s in digest.subscriptions},
            see_all=self.signer.digest_url(recipient.id, digest_key),
        )
        target = parse_recipient(recipient.address, private_webhooks=True)  # checked when it was stored
        vote = self.signer.vote_url if target.kind == "email" else self.signer.vote_token
        votes = {p.id: (vote(recipient.id, p.id, "up"), vote(recipient.id, p.id, "down")) for p in digest.papers}
        links = replace(links, **{"feedback" if target.kind == "email" else "buttons": votes})
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
        with self.store.reading() as tx:
            keys = list(self.due_groups(tx, now, cadence, recipient))
        loaded = self.relevance_loaded(now) if keys else None
        built = []
        for recipient_id, group_cadence in keys:
            try:
                result = self._build_one(recipient_id, group_cadence, now, recipient, dry_run, loaded)
            except Conflict:
                continue  # another process built this digest at the same moment
            if result is not None:
                built.append(result)
        return built

    def relevance_loaded(self, now: datetime):
        """The stored features, loaded before a digest's transaction opens, if any reader has likes
        or votes (else None: digests as before)."""
        if self.relevance is None:
            return None
        with self.store.reading() as tx:
            if not tx.votes.readers_with_votes():
                return None
        return self.relevance.current(self.store, now)

    def _relevant(self, tx: Transaction, recipient_id: int, cadence: str, group, matched: dict, loaded,
                  now: datetime) -> dict[int, float] | None:
        """Like-subscriptions' papers added to ``matched``, down votes dropped; the reader's scores."""
        if loaded is None:
            return None
        like_matches(tx, recipient_id, cadence, group, matched, loaded, now)
        return ranked(tx, recipient_id, matched, loaded, now)

    def _build_one(self, recipient_id: int, cadence: str, now: datetime, recipient_filter: str | None,
                   dry_run: bool, loaded=None) -> BuiltDigest | None:
        with self.store.transaction() as tx:
            # Re-read inside the transaction: the window may have been taken meanwhile. Only this
            # recipient's subscriptions: reading everyone's for every digest made a run quadratic.
            group = self.due_groups(tx, now, cadence, recipient_filter,
                                    recipient_id=recipient_id).get((recipient_id, cadence))
            if not group:
                return None
            subs = [s for s, _ in group]
            recipient = subs[0].recipient
            matched, passed = keep_top(self.pending(tx, recipient_id, cadence, subs), _tops(subs))
            scores = self._relevant(tx, recipient_id, cadence, group, matched, loaded, now)
            digest = self.compose(recipient, cadence, group, matched, scores) if matched else None
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
            tx.outbox.record_digest(recipient_id, cadence, [*matched, *passed], digest_key, now)
            tx.outbox.queue(
                [NewMessage(recipient_id, recipient.kind, cadence, digest_key, digest.subject, payload, part)
                 for part, payload in enumerate(payloads, start=1)],
                now=now, due=min(now, self.clock()),  # sendable at once, even when built for a --now in the future
            )
            return result

    def preview(self, recipient: str, now: datetime, cadence: str | None = None) -> tuple[Recipient, Digest, list[dict]] | None:
        """What ``recipient`` would get now (all its pending matches of one cadence), without queuing."""
        loaded = self.relevance_loaded(now)
        with self.store.reading() as tx:
            groups = self.due_groups(tx, now, cadence, recipient, force=True)
            for wanted in ([cadence] if cadence else ["daily", "weekly", "instant"]):
                for (recipient_id, group_cadence), group in groups.items():
                    if group_cadence != wanted:
                        continue
                    row = group[0][0].recipient
                    subs = [s for s, _ in group]
                    matched, _ = keep_top(self.pending(tx, recipient_id, group_cadence, subs), _tops(subs))
                    scores = self._relevant(tx, recipient_id, group_cadence, group, matched, loaded, now)
                    digest = self.compose(row, group_cadence, group, matched, scores) if matched else None
                    if digest is not None:
                        return row, digest, self.payloads(row, digest, f"preview-{uuid.uuid4().hex[:8]}")
        return None
