"""recipients, subscriptions, matches

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digestbot.store.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "recipients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("address", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("address", name="uq_recipients_address"),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "recipient_id", sa.Integer,
            sa.ForeignKey("recipients.id", ondelete="CASCADE", name="fk_subscriptions_recipient_id"),
            nullable=False,
        ),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("name", sa.String(200)),
        sa.Column("cadence", sa.String(16), nullable=False),
        sa.Column("send_at", sa.String(5), nullable=False),
        sa.Column("weekday", sa.String(3), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("match_since", UTCDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_subscriptions_recipient_id", "subscriptions", ["recipient_id"])
    op.create_index("ix_subscriptions_version", "subscriptions", ["version"])
    op.create_table(
        "matches",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "subscription_id", sa.Integer,
            sa.ForeignKey("subscriptions.id", ondelete="CASCADE", name="fk_matches_subscription_id"),
            nullable=False,
        ),
        sa.Column(
            "paper_id", sa.Integer,
            sa.ForeignKey("papers.id", ondelete="CASCADE", name="fk_matches_paper_id"), nullable=False,
        ),
        sa.Column("matched_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("subscription_id", "paper_id", name="uq_matches_subscription_paper"),
    )
    op.create_index("ix_matches_paper_id", "matches", ["paper_id"])


def downgrade() -> None:
    op.drop_table("matches")
    op.drop_table("subscriptions")
    op.drop_table("recipients")
    op.drop_table("counters")
