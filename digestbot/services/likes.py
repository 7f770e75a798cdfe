""""More like these" subscriptions and ranked digests (issue 13), as digests use them.

A like-subscription has example papers (``subscription_likes``), a top K and a threshold. At
digest time, the papers of its window (those its query matched, if it has a query; else every
paper first seen in the window) are scored by their cosine to the centroid of the examples:
those scoring at least the threshold, and the K best, go into the digest, each labelled with the
example it is most like. Then a reader with likes or votes gets its digest ordered by its
model's score, and papers it voted down are dropped.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from digestbot.core import relevance as rel
from digestbot.core.digest import LIKE_REASON, PaperRef, SubscriptionRef, cut
from digestbot.core.query_tree import Or
from digestbot.errors import UsageError
from digestbot.services.relevance import reader_scores, resolve_papers
from digestbot.settings import Settings
from digestbot.store import Subscription, Transaction

NOTHING = Or(())  # the query node of a subscription without a query: highlights nothing
LABEL_TITLE = 80  # characters of an example's title in "like “…”"
# The defaults of DIGESTBOT_LIKE_TOP_PER_WEEK and DIGESTBOT_LIKE_THRESHOLD; entry points pass the set values.
DEFAULT_TOP_PER_WEEK = Settings.like_top_per_week
DEFAULT_THRESHOLD = Settings.like_threshold
WINDOW = {"instant": timedelta(days=1), "daily": timedelta(days=1), "weekly": timedelta(days=7)}


def default_top(cadence: str, per_week: int) -> int:
    """K of a window: per week for weekly digests, a seventh (at least 1) for daily, none for instant
    alerts (they send what passes the threshold)."""
    if cadence == "weekly":
        return per_week
    if cadence == "daily":
        return max(1, math.ceil(per_week / 7)) if per_week else 0
    return 0


def like_name(titles: list[str]) -> str:
    more = f" and {len(titles) - 1} more" if len(titles) > 1 else ""
    return f"papers like \u201c{cut(titles[0], LABEL_TITLE)}\u201d{more}"


def like_titles(tx: Transaction, subscription_ids: list[int]) -> dict[int, list[str]]:
    """The titles of each subscription's examples (for `subscriptions --json`)."""
    likes = tx.votes.likes_of(subscription_ids)
    papers = tx.features.papers(sorted({p for ids in likes.values() for p in ids}))
    return {s: [papers[p].title for p in ids if p in papers] for s, ids in likes.items()}


def _window_start(sub: Subscription, now: datetime) -> datetime:
    if sub.cadence == "instant":
        return max(sub.match_since, now - WINDOW["instant"])
    return max(sub.match_since, sub.digested_until or sub.match_since)


def like_matches(tx: Transaction, recipient_id: int, cadence: str, group: list[tuple[Subscription, datetime]],
                 matched: dict[int, tuple[PaperRef, list[SubscriptionRef]]], loaded, now: datetime) -> None:
    """Put the papers the group's like-subscriptions choose into ``matched`` (in place); a
    like-subscription with a query keeps only the matches it chooses."""
    likes_of = tx.votes.likes_of([s.id for s, _ in group if s.like_top is not None])
    if not likes_of or loaded is None:
        return
    _generation, _vocabulary, matrix = loaded
    down = tx.votes.down_voted(recipient_id)
    for sub, _slot in group:
        examples = likes_of.get(sub.id)
        if sub.like_top is None or not examples:
            continue
        example_rows = matrix.positions(examples)
        node = NOTHING
        if sub.query:
            pool = {pid: ref for pid, (ref, subs) in matched.items() if any(s.id == sub.id for s in subs)}
            node = next((s.node for pid in pool for s in matched[pid][1] if s.id == sub.id), NOTHING)
        else:
            pool = {row[0]: PaperRef.of_row(row) for row in tx.votes.undigested_since(
                recipient_id, cadence, _window_start(sub, now))}
        for pid in pool:  # a query's match not chosen below is dropped from this subscription
            if pid in matched:
                refs = [s for s in matched[pid][1] if s.id != sub.id]
                if refs:
                    matched[pid] = (matched[pid][0], refs)
                else:
                    del matched[pid]
        candidates = [pid for pid in pool if pid not in down and pid not in examples]
        rows = matrix.positions(candidates)
        if not len(rows) or not len(example_rows):
            continue
        example_vectors = matrix.rows[example_rows]
        scores = np.asarray(matrix.rows[rows] @ rel.centroid(example_vectors)).ravel()
        order = np.lexsort((matrix.ids[rows], -scores))
        chosen = [i for rank, i in enumerate(order) if rank < (sub.like_top or 0) or scores[i] >= (sub.like_threshold or 1.0)]
        if not chosen:
            continue
        nearest = np.asarray((matrix.rows[rows[chosen]] @ example_vectors.T).todense()).argmax(axis=1).ravel()
        titles = tx.features.papers([int(matrix.ids[r]) for r in example_rows])
        for i, near in zip(chosen, nearest):
            pid = int(matrix.ids[rows[i]])
            example = titles.get(int(matrix.ids[example_rows[near]]))
            reason = f"{LIKE_REASON}{cut(example.title, LABEL_TITLE)}\u201d" if example else None
            ref = SubscriptionRef(sub.id, sub.name or sub.query or "papers like these", node, reason)
            if pid in matched:
                matched[pid][1].append(ref)
            else:
                matched[pid] = (pool[pid], [ref])


def ranked(tx: Transaction, recipient_id: int, matched: dict, loaded, now: datetime) -> dict[int, float] | None:
    """The reader's scores of the matched papers (None: no likes or votes, today's order); papers
    it voted down are taken out of ``matched``."""
    if loaded is None or not matched:
        return None
    scores = reader_scores(tx, recipient_id, loaded, list(matched), now)
    if scores is None:
        return None
    for pid in tx.votes.down_voted(recipient_id) & set(matched):
        del matched[pid]
    return scores


def check_like_options(likes, like_top: int | None, like_threshold: float | None) -> None:
    """:raises UsageError: a top K or threshold without examples, or out of range"""
    if not likes and (like_top is not None or like_threshold is not None):
        raise UsageError("--like-top and --like-threshold are options of a subscription with --like examples")
    if like_top is not None and like_top < 0:
        raise UsageError(f"--like-top takes a number of papers from 0, not {like_top}")
    if like_threshold is not None and not 0 <= like_threshold <= 1:
        raise UsageError(f"--like-threshold takes a score from 0 to 1, not {like_threshold}")


def add_likes(tx: Transaction, sub: Subscription, examples: list[str], like_top: int | None,
              like_threshold: float | None, *, named: bool) -> None:
    """Make ``sub`` a "more like these" subscription of these examples (stored titles).

    :raises UsageError: an example names no stored paper
    """
    papers = resolve_papers(tx, examples)
    tx.votes.add_likes(sub.id, [p.id for p in papers])
    sub.like_top = like_top if like_top is not None else default_top(sub.cadence, DEFAULT_TOP_PER_WEEK)
    sub.like_threshold = like_threshold if like_threshold is not None else DEFAULT_THRESHOLD
    if not named and not sub.query:
        sub.name = like_name([p.title for p in papers])
