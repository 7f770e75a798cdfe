"""Readers' votes on papers (issue 13): "more like this" (up), "less like this" (down), cleared.

From the command line (a recipient and a paper title), from a signed feedback link in an email
(recipient and paper ids), or from a Slack button (the channel). A vote for a paper the reader
never received is allowed: it is still a signal. Each vote changes the reader's training data,
so its model is retrained (once) the next time it is needed.
"""

from __future__ import annotations

from datetime import datetime

from digestbot.errors import UsageError
from digestbot.services.feedback import first_time
from digestbot.services.relevance import recipient_id_of, resolve_paper
from digestbot.services.status import paper_json
from digestbot.store import Store, Transaction

ACTIONS = ("up", "down", "clear")
VALUE = {"up": 1, "down": -1}


def vote_in(tx: Transaction, recipient_id: int, paper_id: int, action: str, now: datetime) -> bool:
    """Record ``action`` (up, down, clear) by a reader on a paper; True if anything changed."""
    if action not in ACTIONS:
        raise UsageError(f"a vote is up, down or clear, not {action!r}")
    if action == "clear":
        return tx.votes.clear(recipient_id, paper_id)
    return tx.votes.set(recipient_id, paper_id, VALUE[action], now)


def vote(store: Store, recipient: str, paper: str, action: str, now: datetime) -> dict:
    """`digestbot feedback RECIPIENT PAPER up|down|clear`.

    :raises UsageError: unknown recipient or paper, or another action
    """
    if action not in ACTIONS:
        raise UsageError(f"a vote is up, down or clear, not {action!r}")
    with store.transaction() as tx:
        recipient_id = recipient_id_of(tx, recipient)
        found = resolve_paper(tx, paper)
        changed = vote_in(tx, recipient_id, found.id, action, now)
        return {"recipient": recipient.strip(), "paper": paper_json(found), "vote": action, "changed": changed}


def vote_by_ids(store: Store, recipient_id: int, paper_id: int, action: str, now: datetime) -> bool:
    """A vote from a signed link or a Slack button: ids already checked by the signature.

    :raises UsageError: the recipient or the paper is gone
    """
    with store.transaction() as tx:
        if tx.subscriptions.recipient(recipient_id) is None or tx.papers.get(paper_id) is None:
            raise UsageError("this paper or this reader is no longer known")
        return vote_in(tx, recipient_id, paper_id, action, now)


def list_votes(store: Store, recipient: str) -> list[dict]:
    """`digestbot feedback RECIPIENT --json`: the reader's votes, newest first."""
    with store.reading() as tx:
        recipient_id = recipient_id_of(tx, recipient)
        return [{"paper": paper_json(paper), "vote": "up" if row.vote > 0 else "down",
                 "voted_at": row.voted_at.isoformat()} for row, paper in tx.votes.listed(recipient_id)]


def slack_vote(store: Store, signature: str, recipient_id: int, paper_id: int, action: str, now: datetime
               ) -> bool | None:
    """A verified Slack button click: the vote, once per request (by its signature); None for a replay.

    :raises UsageError: the recipient or the paper is gone
    """
    with store.transaction() as tx:
        if not first_time(tx, "slack", signature, now):
            return None
        if tx.subscriptions.recipient(recipient_id) is None or tx.papers.get(paper_id) is None:
            raise UsageError("this paper or this channel is no longer known")
        return vote_in(tx, recipient_id, paper_id, action, now)


def paper_title(store: Store, paper_id: int) -> str | None:
    with store.reading() as tx:
        paper = tx.papers.get(paper_id)
        return paper.title if paper is not None else None
