"""The Papers repository: papers, their sightings and the dump files they came from."""

from __future__ import annotations

from digestbot.store.repository import Repository


class Papers(Repository):
    """SQL for papers, their sightings and the dump files they came from."""
