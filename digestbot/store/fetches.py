"""The Fetches repository: what each source answered last (``fetch_state``), for conditional requests."""

from __future__ import annotations

from datetime import datetime

from digestbot.store.models import FetchState
from digestbot.store.repository import Repository


class Fetches(Repository):
    """SQL for the fetch state of sources."""

    def state(self, source: str) -> FetchState | None:
        """What ``source`` (a key such as ``hf-daily:2026-12-03``) answered last, if it was fetched."""
        return self.session.get(FetchState, source)

    def record(self, source: str, *, etag: str | None, last_modified: str | None, sha256: str | None,
               now: datetime, changed: bool) -> None:
        """The validators and content hash of ``source``'s latest answer; ``changed``: it was written."""
        row = self.session.get(FetchState, source)
        if row is None:
            row = FetchState(source=source)
            self.session.add(row)
        if etag is not None or last_modified is not None or changed:
            row.etag, row.last_modified = etag, last_modified
        if sha256 is not None:
            row.sha256 = sha256
        row.checked_at = now
        if changed:
            row.changed_at = now
