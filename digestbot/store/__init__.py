"""The store: the one place with SQL. ``Store`` and its ``Transaction`` (unit.py) give services
the repositories of each aggregate; the models are the tables; the schema is made only by the
Alembic migrations (``Store.migrate``, `digestbot init`)."""

from sqlalchemy import Engine  # what ``connect`` returns: entry points hand it to ``Store``

from digestbot.store.db import connect, ensure_current, migrate, schema_revision
from digestbot.store.models import (
    AdminAlert, Base, Counter, DigestItem, DumpFile, FetchState, JobRun, Lease, Match, MatchQuery, OutboxMessage,
    OutboxPayload, Paper, PaperSighting, QueryMatch, Recipient, Secret, Subscription, SubscriptionPause, WebhookEvent,
)
from digestbot.store.outbox import NewMessage
from digestbot.store.unit import Store, Transaction

__all__ = [
    "AdminAlert", "Base", "Counter", "DigestItem", "DumpFile", "Engine", "FetchState", "JobRun", "Lease", "Match",
    "MatchQuery", "NewMessage", "OutboxMessage", "OutboxPayload", "Paper", "PaperSighting", "QueryMatch", "Recipient",
    "Secret", "Store", "Subscription", "SubscriptionPause", "Transaction", "WebhookEvent", "connect", "ensure_current",
    "migrate", "schema_revision",
]
