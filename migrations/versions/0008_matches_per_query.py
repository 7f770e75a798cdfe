"""matches stored once per distinct query; ``matches`` becomes the per-subscription view

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

Many subscribers share a query, and storing one row per (subscription, paper) made storing
95 % of an ingest's matching time. Now a match is stored once per (query text, paper) in
``query_matches``, two integers a row, and ``matches`` is a view that gives each subscription
its query's matches of the papers first seen since its ``match_since``, except while it was
paused or ended (``subscription_pauses``, recorded by the matcher when it sees the change).
A match was made when its paper was first seen (the ingest that brought it), or, for a
backfill, when the subscription was created: the view derives ``matched_at`` so.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digestbot.store.models import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Written out here rather than imported: a migration is a snapshot of the schema at its revision.
MATCHES_VIEW = """
CREATE VIEW matches AS
SELECT s.id AS subscription_id, qm.paper_id AS paper_id,
       CASE WHEN p.first_seen > s.created_at THEN p.first_seen ELSE s.created_at END AS matched_at
FROM subscriptions s
JOIN match_queries q ON q.query = s.query
JOIN query_matches qm ON qm.query_id = q.id
JOIN papers p ON p.id = qm.paper_id
WHERE p.first_seen >= s.match_since
  AND NOT EXISTS (
    SELECT 1 FROM subscription_pauses sp
    WHERE sp.subscription_id = s.id AND sp.paused_at <= p.first_seen
      AND (sp.resumed_at IS NULL OR p.first_seen < sp.resumed_at))
"""


def upgrade() -> None:
    op.create_table(
        "match_queries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("query", sa.Text, nullable=False),
        sa.UniqueConstraint("query", name="uq_match_queries_query"),
    )
    op.create_table(
        "query_matches",
        # No foreign keys: checking them per row was three quarters of the time to store matches
        # on SQLite. Rows are written only with ids just read; nothing deletes papers or queries,
        # and the matches view joins both, so a row whose paper is gone never shows.
        sa.Column("query_id", sa.Integer, nullable=False),
        sa.Column("paper_id", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("query_id", "paper_id", name="pk_query_matches"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "subscription_pauses",
        sa.Column("subscription_id", sa.Integer,
                  sa.ForeignKey("subscriptions.id", ondelete="CASCADE", name="fk_subscription_pauses_subscription_id"),
                  nullable=False),
        sa.Column("paused_at", UTCDateTime, nullable=False),
        sa.Column("resumed_at", UTCDateTime),
        sa.PrimaryKeyConstraint("subscription_id", "paused_at", name="pk_subscription_pauses"),
    )
    op.execute(
        "INSERT INTO match_queries (query) "
        "SELECT DISTINCT s.query FROM matches m JOIN subscriptions s ON s.id = m.subscription_id"
    )
    op.execute(
        "INSERT INTO query_matches (query_id, paper_id) "
        "SELECT DISTINCT q.id, m.paper_id FROM matches m "
        "JOIN subscriptions s ON s.id = m.subscription_id JOIN match_queries q ON q.query = s.query"
    )
    # A subscription inactive now matched nothing since it was last changed: paused from then.
    op.execute(
        "INSERT INTO subscription_pauses (subscription_id, paused_at) "
        "SELECT id, updated_at FROM subscriptions WHERE NOT active"
    )
    op.drop_table("matches")
    op.execute(MATCHES_VIEW)


def downgrade() -> None:
    op.create_table(
        "matches_keyed",
        sa.Column("subscription_id", sa.Integer,
                  sa.ForeignKey("subscriptions.id", ondelete="CASCADE", name="fk_matches_subscription_id"),
                  nullable=False),
        sa.Column("paper_id", sa.Integer,
                  sa.ForeignKey("papers.id", ondelete="CASCADE", name="fk_matches_paper_id"), nullable=False),
        sa.Column("matched_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("subscription_id", "paper_id", name="pk_matches"),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO matches_keyed (subscription_id, paper_id, matched_at) "
        "SELECT subscription_id, paper_id, matched_at FROM matches"
    )
    op.execute("DROP VIEW matches")
    op.drop_table("subscription_pauses")
    op.drop_table("query_matches")
    op.drop_table("match_queries")
    op.rename_table("matches_keyed", "matches")
