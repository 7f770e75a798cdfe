"""The Papers repository: papers, their sightings and the dump files they came from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from digestbot.store.models import DumpFile, Paper
from digestbot.store.repository import Repository


class Papers(Repository):
    """SQL for papers, their sightings and the dump files they came from."""

    # ---- what `digestbot status`, `digestbot papers` and the admin alerts read ----
    # Minimal versions (a-delivery), for services/status.py and services/health.py: the papers
    # helper's repository has the full set; the lead keeps theirs.

    def count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(Paper)) or 0

    def newest_first_seen(self) -> datetime | None:
        return self.session.scalar(select(func.max(Paper.first_seen)))

    def newest(self, limit: int) -> list[Paper]:
        """Newest first: by when digestbot first saw them, then by id (the order within a dump)."""
        return list(self.session.scalars(select(Paper).order_by(Paper.first_seen.desc(), Paper.id.desc()).limit(limit)))

    def last_ingested_file(self) -> DumpFile | None:
        return self.session.scalar(
            select(DumpFile).where(DumpFile.status == "ingested")
            .order_by(DumpFile.processed_at.desc(), DumpFile.id.desc()).limit(1))

    def failed_files(self) -> list[DumpFile]:
        """Files that could not be ingested, latest first."""
        return list(self.session.scalars(
            select(DumpFile).where(DumpFile.status == "failed").order_by(DumpFile.processed_at.desc())))

    def files_by_status(self) -> dict[str, int]:
        return dict(self.session.execute(select(DumpFile.status, func.count()).group_by(DumpFile.status)).all())
