"""The Secrets repository: values digestbot makes once and keeps (the link-signing key)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from digestbot.store.db import insert_ignoring_duplicates
from digestbot.store.models import Secret
from digestbot.store.repository import Repository


class Secrets(Repository):
    """SQL for values digestbot makes once and keeps (the link-signing key)."""

    def kept(self, name: str, make: Callable[[], str]) -> str:
        """The value kept under ``name``, made by ``make`` and kept first if there is none.

        Two processes making one at once both get the first one kept (the other insert is ignored).
        """
        statement = select(Secret.value).where(Secret.name == name)
        value = self.session.scalar(statement)
        if value is None:
            self.session.execute(insert_ignoring_duplicates(self.dialect, Secret).values(name=name, value=make()))
            value = self.session.scalar(statement)
        return value
