"""The Subscriptions repository: recipients, subscriptions, their pauses and the subscriptions version."""

from __future__ import annotations

from digestbot.store.repository import Repository


class Subscriptions(Repository):
    """SQL for recipients, subscriptions, their pauses and the subscriptions version."""
