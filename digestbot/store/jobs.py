"""The Jobs repository: job runs and leases."""

from __future__ import annotations

from digestbot.store.repository import Repository


class Jobs(Repository):
    """SQL for job runs and leases."""
