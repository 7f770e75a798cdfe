"""The store: SQLAlchemy models, the engine, and the schema (created only by Alembic migrations)."""

from digestbot.store.db import connect, ensure_current, migrate, schema_revision
from digestbot.store.models import (
    AdminAlert, Base, Counter, DigestItem, DumpFile, Match, OutboxMessage, Paper, PaperSighting, Recipient, Secret, Subscription,
    JobRun, Lease, WebhookEvent,
)

__all__ = [
    "PaperSighting",
    "AdminAlert", "JobRun", "Lease",
    "Base", "Counter", "DigestItem", "DumpFile", "Match", "OutboxMessage", "Paper", "Recipient", "Secret",
    "Subscription", "WebhookEvent", "connect", "ensure_current", "migrate", "schema_revision"]
