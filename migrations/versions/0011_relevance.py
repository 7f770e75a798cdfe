"""relevance: votes, "more like these" examples and thresholds, stored features and reader models

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digestbot.store.models import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("like_top", sa.Integer))
    op.add_column("subscriptions", sa.Column("like_threshold", sa.Float))
    op.create_table(
        "subscription_likes",
        sa.Column("subscription_id", sa.Integer,
                  sa.ForeignKey("subscriptions.id", ondelete="CASCADE", name="fk_subscription_likes_subscription_id"),
                  nullable=False),
        sa.Column("paper_id", sa.Integer,
                  sa.ForeignKey("papers.id", ondelete="CASCADE", name="fk_subscription_likes_paper_id"), nullable=False),
        sa.PrimaryKeyConstraint("subscription_id", "paper_id", name="pk_subscription_likes"),
    )
    op.create_table(
        "paper_votes",
        sa.Column("recipient_id", sa.Integer,
                  sa.ForeignKey("recipients.id", ondelete="CASCADE", name="fk_paper_votes_recipient_id"), nullable=False),
        sa.Column("paper_id", sa.Integer,
                  sa.ForeignKey("papers.id", ondelete="CASCADE", name="fk_paper_votes_paper_id"), nullable=False),
        sa.Column("vote", sa.Integer, nullable=False),
        sa.Column("voted_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("recipient_id", "paper_id", name="pk_paper_votes"),
    )
    op.create_table(
        "relevance_vocabularies",
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("papers", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("generation", name="pk_relevance_vocabularies"),
    )
    op.create_table(
        "relevance_features",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("generation", sa.Integer, sa.ForeignKey(
            "relevance_vocabularies.generation", ondelete="CASCADE", name="fk_relevance_features_generation"),
            nullable=False),
        sa.Column("last_paper_id", sa.Integer, nullable=False),
        sa.Column("updated_until", UTCDateTime),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_relevance_features"),
    )
    op.create_index("ix_relevance_features_generation", "relevance_features", ["generation"])
    op.create_table(
        "reader_models",
        sa.Column("recipient_id", sa.Integer,
                  sa.ForeignKey("recipients.id", ondelete="CASCADE", name="fk_reader_models_recipient_id"),
                  nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("trained_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("recipient_id", name="pk_reader_models"),
    )


def downgrade() -> None:
    op.drop_table("reader_models")
    op.drop_index("ix_relevance_features_generation", table_name="relevance_features")
    op.drop_table("relevance_features")
    op.drop_table("relevance_vocabularies")
    op.drop_table("paper_votes")
    op.drop_table("subscription_likes")
    # Plain ALTERs (SQLite >= 3.35 drops columns itself): a batch would rebuild the table under
    # the matches view, which SQLite refuses.
    op.execute("ALTER TABLE subscriptions DROP COLUMN like_threshold")
    op.execute("ALTER TABLE subscriptions DROP COLUMN like_top")
