"""Build the digests that are due into the outbox: one message (or Slack messages) per
recipient per cadence window, with the record of which papers it covers, in one transaction."""

from __future__ import annotations

import secrets
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
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
from digestbot.services import metrics
from digestbot.services.likes import NOTHING, like_matches, ranked
from digestbot.services.relevance import RelevanceIndex
from digestbot.settings import Settings
from digestbot.errors import Conflict
from digestbot.store import NewMessage, Paper, Recipient, Store, Subscription, Transaction


PAGE = 500  # due subscriptions a transaction: memory stays bounded, commits stay few


def _slot(sub: Subscription, now: datetime) -> datetime:
    """The digest window a due subscription's digest closes: the latest slot, or now if instant."""
    if sub.cadence == "instant":
        return now
    return latest_slot(Schedule(sub.cadence, sub.send_at, sub.weekday, sub.timezone), now)


def _tops(subs: list[Subscription]) -> dict[int, int]:
    """--top N of these subscriptions, by id (those with one)."""
    return {s.id: s.top for s in subs if s.top}


def _ref(sub: Subscription) -> SubscriptionRef:
    # A "more like these" subscription may have no query: it matches through its examples only.
    return SubscriptionRef(sub.id, sub.name or sub.query, _parsed_query(sub.query) if sub.query else NOTHING)


def _count(built: list[BuiltDigest]) -> None:
    for b in built:
        metrics.DIGESTS.labels(b.cadence).inc()


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
            if not force and (sub.next_due_at is None or sub.next_due_at > now):
                continue
            groups[(sub.recipient_id, sub.cadence)].append((sub, _slot(sub, now)))
        return groups

    def pending(self, tx: Transaction, recipient_id: int, cadence: str, subs: list[Subscription]
                ) -> dict[int, tuple[PaperRef, list[SubscriptionRef]]]:
        """Papers matched by these subscriptions and not yet in any digest of this cadence."""
        refs = {s.id: _ref(s) for s in subs}
        found: dict[int, tuple[PaperRef, list[SubscriptionRef]]] = {}
        for sub_id, *paper in tx.outbox.undigested(recipient_id, cadence, list(refs)):
            if paper[0] not in found:
                found[paper[0]] = (PaperRef.of_row(paper), [])
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
        ids = [s.id for s in digest.subscriptions]
        unsubscribe = self.signer.unsubscribe_url(recipient.id, ids)
        links = Links(
            manage=self.signer.manage_url(recipient.id),
            unsubscribe=unsubscribe,
            per_subscription={i: unsubscribe if len(ids) == 1 else self.signer.unsubscribe_url(recipient.id, [i])
                              for i in ids},
            see_all=self.signer.digest_url(recipient.id, digest_key),
        )
        vote = self.signer.vote_url if recipient.kind == "email" else self.signer.vote_token
        votes = {p.id: (vote(recipient.id, p.id, "up"), vote(recipient.id, p.id, "down")) for p in digest.papers}
        links = replace(links, **{"feedback" if recipient.kind == "email" else "buttons": votes})
        if recipient.kind == "email":  # its address was checked when it was stored
            key = f"{digest_key}-1"
            return [self.renderer.email(digest, links, self.sender, key=key,
                                        message_id=f"<{key}@{mail_domain(self.sender.email)}>",
                                        max_bytes=self.settings.max_email_bytes)]
        target = parse_recipient(recipient.address, private_webhooks=True)  # checked when it was stored
        return self.renderer.slack(digest, links, channel=target.target, key=digest_key)

    # ---- building ----

    def build_due(self, now: datetime, cadence: str | None = None, recipient: str | None = None,
                  dry_run: bool = False) -> list[BuiltDigest]:
        """Queue every digest due at ``now``."""
        return list(self.build_due_pages(now, cadence, recipient, dry_run))

    def count_due(self, now: datetime, cadence: str | None = None) -> int:
        """Subscriptions due at ``now`` (what a pass goes through; for a progress bar)."""
        with self.store.reading() as tx:
            return tx.subscriptions.count_due(now, cadence)

    def build_due_pages(self, now: datetime, cadence: str | None = None, recipient: str | None = None,
                        dry_run: bool = False, progress: Callable[[int], None] | None = None
                        ) -> Iterator[BuiltDigest]:
        """The digests due at ``now``, queued a page of subscriptions at a time (each page one
        transaction), yielded as they are built. Only the due subscriptions are read (by
        ``next_due_at``), a page at a time: memory stays bounded however many there are.
        ``progress`` is called with the number of due subscriptions each page went through."""
        if cadence is not None and cadence not in CADENCES:
            raise ValueError(cadence)
        with self.store.reading() as tx:
            if not tx.subscriptions.due_page(now, cadence=cadence, after=None, limit=1):
                return  # nothing due: no features loaded, no page read
        loaded = self.relevance_loaded(now)
        if recipient is not None:  # one recipient's: few rows, one digest a transaction
            with self.store.reading() as tx:
                keys = list(self.due_groups(tx, now, cadence, recipient))
            for recipient_id, group_cadence in keys:
                result = self._build_one_safely(recipient_id, group_cadence, now, recipient, dry_run, loaded)
                if result is not None:
                    if not dry_run:
                        _count([result])
                    yield result
            return
        after: tuple[datetime, int] | None = None
        done: set[tuple[int, str]] = set()  # only a dry run needs it: a real one moves what it built out of reach
        while True:
            groups: dict = {}
            try:
                with self.store.transaction() as tx:
                    page = tx.subscriptions.due_page(now, cadence=cadence, after=after, limit=PAGE)
                    if not page:
                        return
                    after = (page[-1].next_due_at, page[-1].id)
                    groups = self._complete_groups(tx, page, now, cadence, done)
                    built = self._build_page(tx, groups, now, dry_run, loaded)
            except Conflict:  # another process built one of these meanwhile (all rolled back): one by one
                built = None
            if built is None:
                built = [r for key in groups
                         if (r := self._build_one_safely(*key, now, None, dry_run, loaded)) is not None]
            if dry_run:
                done.update(groups)
            else:
                _count(built)
            if progress is not None:
                progress(len(page))
            yield from built

    def _complete_groups(self, tx: Transaction, page: list[Subscription], now: datetime, cadence: str | None,
                         done: set[tuple[int, str]]) -> dict[tuple[int, str], list[tuple[Subscription, datetime]]]:
        """(recipient id, cadence) → [(subscription, slot)] for the page's recipients: with their
        due subscriptions beyond the page, so that each digest is built whole, once."""
        recipients = sorted({sub.recipient_id for sub in page})
        groups: dict[tuple[int, str], list[tuple[Subscription, datetime]]] = defaultdict(list)
        for sub in tx.subscriptions.due_of_recipients(recipients, now, cadence):
            key = (sub.recipient_id, sub.cadence)
            if key not in done:
                groups[key].append((sub, _slot(sub, now)))
        return groups

    def relevance_loaded(self, now: datetime):
        """The stored features, loaded before a digest's transaction opens, if any reader has likes
        or votes (else None: digests as before)."""
        if self.relevance is None:
            return None
        with self.store.reading() as tx:
            if not tx.votes.readers_with_votes():
                return None
        return self.relevance.current(self.store, now)

    def _chosen(self, tx: Transaction, recipient_id: int, cadence: str, group, matched: dict, loaded,
                now: datetime) -> tuple[dict, list[int], dict[int, float] | None]:
        """What a digest shows: the --top N most upvoted of the keyword matches (the rest, ``passed``,
        covered and never sent later), the like-subscriptions' papers added, down votes dropped;
        and the reader's scores that order it (None: today's order)."""
        matched, passed = keep_top(matched, _tops([s for s, _ in group]))
        if loaded is None:
            return matched, passed, None
        like_matches(tx, recipient_id, cadence, group, matched, loaded, now)
        return matched, passed, ranked(tx, recipient_id, matched, loaded, now)

    def _build_page(self, tx: Transaction, groups: dict, now: datetime, dry_run: bool, loaded
                    ) -> list[BuiltDigest]:
        """Build these digests in the caller's transaction: one read of their pending papers, one
        write of their items and one of their messages.

        :raises Conflict: another process recorded one of these digests first
        """
        pending = self._pending_of_groups(tx, groups)
        built, items, messages = [], [], []
        if not dry_run:
            tx.subscriptions.advance([(sub, None if cadence == "instant" else slot)
                                      for (_, cadence), group in groups.items() for sub, slot in group])
        for (recipient_id, cadence), group in groups.items():
            matched, passed, scores = self._chosen(tx, recipient_id, cadence, group,
                                                   pending.get((recipient_id, cadence), {}), loaded, now)
            if not matched:
                continue
            recipient = group[0][0].recipient
            digest = self.compose(recipient, cadence, group, matched, scores)
            if digest is None:
                continue
            digest_key = f"d{recipient_id}-{cadence[0]}-{uuid.uuid4().hex[:12]}"
            payloads = self.payloads(recipient, digest, digest_key)
            built.append(BuiltDigest(recipient.address, cadence, digest.subject, digest.total, len(payloads),
                                     digest_key))
            items.append((recipient_id, cadence, [*matched, *passed], digest_key))
            messages += [NewMessage(recipient_id, recipient.kind, cadence, digest_key, digest.subject, payload, part)
                         for part, payload in enumerate(payloads, start=1)]
        if not dry_run:
            tx.outbox.record_digests(items, now)
            tx.outbox.queue(messages, now=now, due=min(now, self.clock()))
        return built

    def _pending_of_groups(self, tx: Transaction, groups: dict) -> dict[tuple[int, str], dict]:
        """(recipient id, cadence) → the papers pending for that group, as ``pending`` gives them."""
        refs = {s.id: _ref(s) for group in groups.values() for s, _ in group}
        key_of = {s.id: key for key, group in groups.items() for s, _ in group}
        found: dict[tuple[int, str], dict[int, tuple[PaperRef, list[SubscriptionRef]]]] = defaultdict(dict)
        for sub_id, *paper in tx.outbox.undigested_of(list(refs)):
            group = found[key_of[sub_id]]
            if paper[0] not in group:
                group[paper[0]] = (PaperRef.of_row(paper), [])
            group[paper[0]][1].append(refs[sub_id])
        return found

    @staticmethod
    def _advance(group: list[tuple[Subscription, datetime]], cadence: str, dry_run: bool) -> None:
        """The group's window is taken: its next due time moves on (the store works it out)."""
        if dry_run:
            return
        for sub, slot in group:
            if cadence == "instant":
                sub.next_due_at = None  # until its query matches again (or it changes)
            else:
                sub.digested_until = slot

    def _build_one_safely(self, recipient_id: int, cadence: str, now: datetime, recipient_filter: str | None,
                          dry_run: bool, loaded=None) -> BuiltDigest | None:
        try:
            return self._build_one(recipient_id, cadence, now, recipient_filter, dry_run, loaded)
        except Conflict:
            return None  # another process built this digest at the same moment

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
            matched, passed, scores = self._chosen(tx, recipient_id, cadence, group,
                                                   self.pending(tx, recipient_id, cadence, subs), loaded, now)
            digest = self.compose(recipient, cadence, group, matched, scores) if matched else None
            self._advance(group, cadence, dry_run)
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
                    matched, _, scores = self._chosen(tx, recipient_id, group_cadence, group,
                                                      self.pending(tx, recipient_id, group_cadence,
                                                                   [s for s, _ in group]), loaded, now)
                    digest = self.compose(row, group_cadence, group, matched, scores) if matched else None
                    if digest is not None:
                        return row, digest, self.payloads(row, digest, f"preview-{uuid.uuid4().hex[:8]}")
        return None
