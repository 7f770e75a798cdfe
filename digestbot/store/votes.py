"""The Votes repository (issue 13): readers' votes on papers and the examples of "more like these"
subscriptions, the training data of relevance."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import and_, delete, exists, func, select

from digestbot.store.models import DigestItem, Paper, PaperVote, Subscription, SubscriptionLike
from digestbot.store.repository import Repository


class Votes(Repository):
    """SQL for paper_votes and subscription_likes."""

    # ---- votes ----

    def vote(self, recipient_id: int) -> dict[int, int]:
        """paper id → +1 or -1, this reader's votes."""
        return dict(self.session.execute(
            select(PaperVote.paper_id, PaperVote.vote).where(PaperVote.recipient_id == recipient_id)).all())

    def listed(self, recipient_id: int) -> list[tuple[PaperVote, Paper]]:
        """This reader's votes with their papers, newest first."""
        return list(self.session.execute(
            select(PaperVote, Paper).join(Paper, Paper.id == PaperVote.paper_id)
            .where(PaperVote.recipient_id == recipient_id)
            .order_by(PaperVote.voted_at.desc(), PaperVote.paper_id)).all())

    def set(self, recipient_id: int, paper_id: int, vote: int, now: datetime) -> bool:
        """Record (or change) a vote; True if anything changed."""
        row = self.session.get(PaperVote, (recipient_id, paper_id))
        if row is None:
            self.session.add(PaperVote(recipient_id=recipient_id, paper_id=paper_id, vote=vote, voted_at=now))
            self.session.flush()
            return True
        if row.vote == vote:
            return False
        row.vote, row.voted_at = vote, now
        return True

    def clear(self, recipient_id: int, paper_id: int) -> bool:
        """Forget a vote; True if there was one."""
        result = self.session.execute(delete(PaperVote).where(
            PaperVote.recipient_id == recipient_id, PaperVote.paper_id == paper_id))
        return bool(result.rowcount)

    def down_voted(self, recipient_id: int) -> set[int]:
        return set(self.session.scalars(select(PaperVote.paper_id).where(
            PaperVote.recipient_id == recipient_id, PaperVote.vote < 0)))

    def readers_with_votes(self) -> list[int]:
        """Recipients with any vote or like: those whose digests are ranked."""
        voted = select(PaperVote.recipient_id)
        liked = (select(Subscription.recipient_id).join(SubscriptionLike, SubscriptionLike.subscription_id == Subscription.id)
                 .where(Subscription.active.is_(True)))
        return sorted(set(self.session.scalars(voted.union(liked))))

    # ---- likes: the examples of subscriptions ----

    def add_likes(self, subscription_id: int, paper_ids: Iterable[int]) -> None:
        for paper_id in dict.fromkeys(paper_ids):
            self.session.add(SubscriptionLike(subscription_id=subscription_id, paper_id=paper_id))
        self.session.flush()

    def likes_of(self, subscription_ids: Iterable[int]) -> dict[int, list[int]]:
        """subscription id → its example papers' ids."""
        ids = list(subscription_ids)
        found: dict[int, list[int]] = {i: [] for i in ids}
        if ids:
            for sub_id, paper_id in self.session.execute(
                    select(SubscriptionLike.subscription_id, SubscriptionLike.paper_id)
                    .where(SubscriptionLike.subscription_id.in_(ids))
                    .order_by(SubscriptionLike.subscription_id, SubscriptionLike.paper_id)):
                found[sub_id].append(paper_id)
        return found

    def liked_by(self, recipient_id: int) -> set[int]:
        """The examples of this recipient's active subscriptions: positives of its model."""
        return set(self.session.scalars(
            select(SubscriptionLike.paper_id).join(Subscription, Subscription.id == SubscriptionLike.subscription_id)
            .where(Subscription.recipient_id == recipient_id, Subscription.active.is_(True))))

    def has_training(self, recipient_id: int) -> bool:
        """Does this reader have any vote or like (is its digest ranked)?"""
        voted = self.session.scalar(select(func.count()).select_from(PaperVote)
                                    .where(PaperVote.recipient_id == recipient_id))
        return bool(voted) or bool(self.liked_by(recipient_id))

    def undigested_since(self, recipient_id: int, cadence: str, since: datetime) -> list[tuple]:
        """(id, title, abstract, authors_count, upvotes, published, first_seen, arxiv_id, authors) of papers first seen
        at or after ``since`` that no digest of this cadence to this recipient has covered."""
        already = exists().where(and_(DigestItem.recipient_id == recipient_id, DigestItem.cadence == cadence,
                                      DigestItem.paper_id == Paper.id))
        return [tuple(r) for r in self.session.execute(
            select(Paper.id, Paper.title, Paper.abstract, Paper.authors_count, Paper.upvotes, Paper.published,
                   Paper.first_seen, Paper.arxiv_id, Paper.authors).where(Paper.first_seen >= since, ~already))]

    def titled(self, key_part: str, limit: int) -> list[Paper]:
        """Papers whose title key contains ``key_part``, newest first (the "papers like…" search box)."""
        return list(self.session.scalars(
            select(Paper).where(Paper.title_key.contains(key_part, autoescape=True))
            .order_by(Paper.first_seen.desc(), Paper.id.desc()).limit(limit)))
