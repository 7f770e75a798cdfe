"""The Secrets repository: values digestbot makes once and keeps (the link-signing key)."""

from __future__ import annotations

from digestbot.store.db import insert_ignoring_duplicates
from digestbot.store.models import Secret
from digestbot.store.repository import Repository


class Secrets(Repository):
    """SQL for values digestbot makes once and keeps (the link-signing key)."""

    def get(self, name: str) -> str | None:
        found = self.session.get(Secret, name)
        return found.value if found is not None else None

    def keep(self, name: str, value: str) -> str:
        """Store ``value`` under ``name`` unless a value is there already; the value kept.

        When two processes make one at the same moment, the first stored is everyone's.
        """
        self.session.execute(insert_ignoring_duplicates(self.dialect, Secret).values(name=name, value=value))
        return self.get(name)
