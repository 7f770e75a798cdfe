"""`digestbot backup`: a consistent copy of a SQLite database, safe while the bot runs."""

from __future__ import annotations

from pathlib import Path

from digestbot.store import Store
from digestbot.store.backup import backup_sqlite


def backup(store: Store, target: Path) -> int:
    """Copy the database to ``target`` (a new file); returns its size. PostgreSQL: a UsageError
    saying to use pg_dump."""
    return backup_sqlite(store.engine, target)
