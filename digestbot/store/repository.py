"""What every repository shares: the session of the transaction it works in."""

from __future__ import annotations

from sqlalchemy.orm import Session


class Conflict(Exception):
    """Another transaction stored the same key first (two processes did the same work at once).

    The caller's transaction cannot go on: let the exception leave the ``with`` block, which
    rolls it back, and treat the work as done by the other process.
    """


class Repository:
    """SQL for one aggregate, inside the caller's transaction (see ``digestbot.store.unit``)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``: where a statement differs, the repository branches on this."""
        return self.session.get_bind().dialect.name
