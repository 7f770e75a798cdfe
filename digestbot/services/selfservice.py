"""What subscribers do for themselves, on the web pages and with the Slack command: each use
case one transaction, for the recipient the caller proved it acts for (a signed token, a
verified Slack request).

The subscription rules themselves are in services/subscriptions.py; these functions put them
in a transaction and return what the page or the answer shows (objects stay readable after it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from digestbot.core.identity import title_key
from digestbot.core.query_tree import Node
from digestbot.core.schedule import Schedule, parse_schedule
from digestbot.core.slash import parse_command
from digestbot.errors import DigestbotError, NotFound, UsageError
from digestbot.services import subscriptions
from digestbot.services.feedback import first_time
from digestbot.services.relevance import resolve_papers
from digestbot.services.search import Hit, RecentPapers
from digestbot.store import Paper, Recipient, Store, Subscription

ACTIONS = ("pause", "resume", "confirm", "delete", "edit")


def named(store: Store, recipient_id: int, subscription_ids: list[int]) -> tuple[Recipient | None, list[Subscription]]:
    """The recipient and those of the subscriptions a link names that are its own (confirm and unsubscribe pages)."""
    with store.reading() as tx:
        return tx.subscriptions.recipient(recipient_id), tx.subscriptions.of_recipient(recipient_id, subscription_ids)


def owned(store: Store, recipient_id: int) -> tuple[Recipient | None, list[Subscription]]:
    """The recipient and its subscriptions, deleted ones left out (the manage page)."""
    with store.reading() as tx:
        recipient = tx.subscriptions.recipient(recipient_id)
        if recipient is None:
            return None, []
        return recipient, tx.subscriptions.of_recipient(recipient_id)


def change(store: Store, recipient_id: int, subscription_id: int, action: str, now: datetime, *,
           query: str | None = None, schedule: Schedule | None = None) -> Subscription:
    """One of the manage page's buttons (``ACTIONS``) on one of the recipient's subscriptions.

    Raises NotFound when it is not theirs (or is deleted), UsageError when the change is refused.
    """
    if action in ("pause", "resume"):
        return subscriptions.set_paused(store, recipient_id, subscription_id, action == "pause", now)
    if action == "confirm":  # the manage link reached the address's owner: proof enough
        subscriptions.owned_subscription(store, recipient_id, subscription_id)  # NotFound if not theirs
        return subscriptions.confirm(store, recipient_id, [subscription_id], now)[0]
    if action == "delete":
        return subscriptions.delete(store, recipient_id, subscription_id, now)
    if action == "edit":
        if query is None or schedule is None:
            raise UsageError("an edit needs the query and the schedule")
        return subscriptions.edit(store, recipient_id, subscription_id, query=query, schedule=schedule, now=now)
    raise NotFound(f"no action {action!r}")


def unsubscribe(store: Store, recipient_id: int, subscription_ids: list[int], now: datetime
                ) -> tuple[Recipient | None, list[Subscription]]:
    """The unsubscribe link: stop the named subscriptions of this recipient (others' are ignored)."""
    subs = subscriptions.unsubscribe_owned(store, recipient_id, subscription_ids, now)
    with store.reading() as tx:
        return tx.subscriptions.recipient(recipient_id), subs


def preview(store: Store, recent: RecentPapers, node: Node, now: datetime) -> tuple[list[Hit], int]:
    """The subscribe page's as-you-type preview: matches among the recent papers, and how many were looked at."""
    return recent.search(store, node, now)


# ---- the Slack command ----

@dataclass
class SlashOutcome:
    """What a `/digest` command did, for the answer to say."""

    action: str
    subscription: Subscription | None = None  # subscribed or unsubscribed
    subscriptions: list[Subscription] = field(default_factory=list)  # listed
    error: DigestbotError | None = None  # refused, with the reason to show


def slash_command(store: Store, signature: str, text: str, channel: str, now: datetime) -> SlashOutcome | None:
    """Run a verified `/digest` command (its ``text``) for ``channel`` (``slack:C…``); None when
    this request (by its signature) was already received: a replay.

    One short transaction: the signature is recorded whether or not the command is refused.
    """
    with store.transaction() as tx:
        if not first_time(tx, "slack", signature, now):
            return None
        action = "help"
        try:
            command = parse_command(text)
            action = command.action
            if command.action == "help":
                return SlashOutcome("help")
            if command.action == "subscribe":
                sub, _ = subscriptions.subscribe_in(tx, channel, command.query,
                                                    schedule=parse_schedule(command.cadence), now=now)
                return SlashOutcome("subscribe", subscription=sub)
            if command.action == "list":
                return SlashOutcome("list", subscriptions=subscriptions.list_subscriptions_in(tx, channel))
            sub_ids = [sub.id for sub in subscriptions.list_subscriptions_in(tx, channel)]
            if command.subscription_id not in sub_ids:
                raise NotFound(f"this channel has no subscription {command.subscription_id}: see /digest list")
            return SlashOutcome("unsubscribe", subscription=subscriptions.unsubscribe_in(tx, command.subscription_id,
                                                                                         now))
        except DigestbotError as exc:
            return SlashOutcome(action, error=exc)


# ---- "papers like…" on the subscribe page (issue 13) ----

FOUND_TITLES = 10


def check_likes(store: Store, likes: tuple[str, ...]) -> None:
    """:raises UsageError: one of these titles names no stored paper"""
    if likes:
        with store.reading() as tx:
            resolve_papers(tx, list(likes))


def papers_titled(store: Store, text: str) -> list[Paper]:
    """Stored papers whose title holds ``text`` (as a title key: case and punctuation aside), newest first."""
    key = title_key(text)[:200] if text.strip() else ""
    if len(key) < 3:
        return []
    with store.reading() as tx:
        return tx.votes.titled(key, FOUND_TITLES)
