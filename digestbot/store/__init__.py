"""The store: SQLAlchemy models, the engine, and the schema (created only by Alembic migrations)."""

from digestbot.store.db import connect, ensure_current, migrate, schema_revision
from digestbot.store.models import Base, DumpFile, Paper

__all__ = ["Base", "DumpFile", "Paper", "connect", "ensure_current", "migrate", "schema_revision"]
