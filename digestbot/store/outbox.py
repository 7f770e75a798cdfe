"""The Outbox repository: digest items, the outbox and admin alerts."""

from __future__ import annotations

from digestbot.store.repository import Repository


class Outbox(Repository):
    """SQL for digest items, the outbox and admin alerts."""
