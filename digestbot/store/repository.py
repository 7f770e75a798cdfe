"""What every repository shares: the session of the transaction it works in."""

from __future__ import annotations

from sqlalchemy.orm import Session


class Repository:
    """SQL for one aggregate, inside the caller's transaction (see ``digestbot.store.unit``)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``: where a statement differs, the repository branches on this."""
        return self.session.get_bind().dialect.name
