"""The Papers repository: papers, their sightings and the dump files they came from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Row, select

from digestbot.store.models import Paper
from digestbot.store.repository import Repository


class Papers(Repository):
    """SQL for papers, their sightings and the dump files they came from."""

    def first_seen_since(self, since: datetime) -> list[Row]:
        """(id, title, abstract, first_seen) of every paper first seen at or after ``since`` (a backfill's papers)."""
        return list(self.session.execute(
            select(Paper.id, Paper.title, Paper.abstract, Paper.first_seen).where(Paper.first_seen >= since)))
