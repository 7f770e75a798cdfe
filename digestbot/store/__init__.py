"""The store: SQLAlchemy models, the engine, and the schema (created only by Alembic migrations)."""

from digestbot.store.db import connect, ensure_current, migrate, schema_revision
from digestbot.store.models import Base, Counter, DumpFile, Match, Paper, Recipient, Subscription

__all__ = [
    "Base", "Counter", "DumpFile", "Match", "Paper", "Recipient", "Subscription", "connect", "ensure_current", "migrate", "schema_revision"]
