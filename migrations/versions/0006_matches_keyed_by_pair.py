"""matches keyed by (subscription, paper), WITHOUT ROWID on SQLite

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digestbot.store.models import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A new table, the rows copied over, then the swap: changing a primary key in place is
    # not something SQLite can do.
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
    op.drop_table("matches")
    op.rename_table("matches_keyed", "matches")


def downgrade() -> None:
    op.create_table(
        "matches_old",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("subscription_id", sa.Integer,
                  sa.ForeignKey("subscriptions.id", ondelete="CASCADE", name="fk_matches_subscription_id"),
                  nullable=False),
        sa.Column("paper_id", sa.Integer,
                  sa.ForeignKey("papers.id", ondelete="CASCADE", name="fk_matches_paper_id"), nullable=False),
        sa.Column("matched_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("subscription_id", "paper_id", name="uq_matches_subscription_paper"),
    )
    op.execute(
        "INSERT INTO matches_old (subscription_id, paper_id, matched_at) "
        "SELECT subscription_id, paper_id, matched_at FROM matches"
    )
    op.drop_table("matches")
    op.rename_table("matches_old", "matches")
    op.create_index("ix_matches_paper_id", "matches", ["paper_id"])
