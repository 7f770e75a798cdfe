"""The store: SQLAlchemy models, the engine, and the schema (created only by Alembic migrations)."""

from sqlalchemy import Engine  # what ``connect`` returns: entry points hand it to ``Store``

from digestbot.store.db import DatabaseError, DuplicateKey, connect, ensure_current, migrate, schema_revision
from digestbot.store.unit import Store, Transaction
from digestbot.store.outbox import NewMessage
from digestbot.store.repository import Conflict
from digestbot.store.models import (
    AdminAlert, Base, Counter, DigestItem, DumpFile, Match, MatchQuery, OutboxMessage, Paper, PaperSighting, QueryMatch,
    Recipient, Secret, Subscription, SubscriptionPause, JobRun, Lease, WebhookEvent,
)

__all__ = [
    "MatchQuery", "PaperSighting", "QueryMatch", "SubscriptionPause",
    "AdminAlert", "JobRun", "Lease", "Conflict", "DatabaseError", "DuplicateKey", "Engine", "NewMessage",
    "Base", "Counter", "DigestItem", "DumpFile", "Match", "OutboxMessage", "Paper", "Recipient", "Secret",
    "Store", "Subscription", "Transaction", "WebhookEvent", "connect", "ensure_current", "migrate", "schema_revision"]
