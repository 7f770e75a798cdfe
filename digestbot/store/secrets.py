"""The Secrets repository: values digestbot makes once and keeps (the link-signing key)."""

from __future__ import annotations

from digestbot.store.repository import Repository


class Secrets(Repository):
    """SQL for values digestbot makes once and keeps (the link-signing key)."""
