"""A copy of a SQLite database taken with SQLite's online backup API: consistent, and safe while
the bot writes (the copy is taken a few pages at a time; a write in between restarts it)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine

from digestbot.errors import UsageError

PAGES_A_STEP = 1024  # pages copied before the lock is let go for the bot's writers


def backup_sqlite(engine: Engine, target: Path) -> int:
    """Copy the database behind ``engine`` to ``target`` (a new file); returns its size in bytes.

    :raises UsageError: the database is not SQLite, or ``target`` exists
    """
    if engine.dialect.name != "sqlite":
        raise UsageError("digestbot backup copies SQLite databases; back up PostgreSQL with pg_dump "
                         "(e.g. pg_dump -Fc -d DBNAME -f digestbot.dump)")
    if target.exists():
        raise UsageError(f"{target} exists already: name a new file")
    partial = target.with_name(target.name + ".partial")
    raw = engine.raw_connection()
    try:
        source = raw.driver_connection
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy, pages=PAGES_A_STEP)
        finally:
            copy.close()
    finally:
        raw.close()
    partial.replace(target)  # a finished copy only: never a half-written file under the name asked for
    return target.stat().st_size
