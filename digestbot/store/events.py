"""The Events repository: webhook events seen once (SendGrid event ids, Slack request signatures)."""

from __future__ import annotations

from digestbot.store.repository import Repository


class Events(Repository):
    """SQL for webhook events seen once (SendGrid event ids, Slack request signatures)."""
