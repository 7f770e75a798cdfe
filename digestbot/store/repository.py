"""What every repository shares: the session of the transaction it works in."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

Model = TypeVar("Model")
# Ids are 64-bit integers at most: a larger number names nothing (and SQLite cannot even bind it).
MAX_ID = 2**63 - 1


class Repository:
    """SQL for one aggregate, inside the caller's transaction (see ``digestbot.store.unit``)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``: where a statement differs, the repository branches on this."""
        return self.session.get_bind().dialect.name

    def _by_id(self, model: type[Model], row_id: int, **options: Any) -> Model | None:
        """The row of ``model`` with this id, or None (also for an id no column can hold)."""
        return self.session.get(model, row_id, **options) if 0 < row_id <= MAX_ID else None
