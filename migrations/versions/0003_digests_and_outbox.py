"""digests and the outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digestbot.store.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Batch mode: SQLite cannot ALTER TABLE ADD COLUMN with everything; Alembic copies the table.
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("digested_until", UTCDateTime))
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("suspended_at", UTCDateTime))
    op.create_table(
        "digest_items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("recipient_id", sa.Integer,
                  sa.ForeignKey("recipients.id", ondelete="CASCADE", name="fk_digest_items_recipient_id"),
                  nullable=False),
        sa.Column("cadence", sa.String(16), nullable=False),
        sa.Column("paper_id", sa.Integer,
                  sa.ForeignKey("papers.id", ondelete="CASCADE", name="fk_digest_items_paper_id"), nullable=False),
        sa.Column("digest_key", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("recipient_id", "cadence", "paper_id", name="uq_digest_items_recipient_cadence_paper"),
    )
    op.create_index("ix_digest_items_digest_key", "digest_items", ["digest_key"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("recipient_id", sa.Integer,
                  sa.ForeignKey("recipients.id", ondelete="CASCADE", name="fk_outbox_recipient_id"), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("cadence", sa.String(16), nullable=False),
        sa.Column("digest_key", sa.String(64), nullable=False),
        sa.Column("part", sa.Integer, nullable=False, server_default="1"),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("claimed_at", UTCDateTime),
        sa.Column("claimed_by", sa.String(64)),
        sa.Column("last_error", sa.Text),
        sa.Column("provider_id", sa.String(200)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime),
    )
    op.create_index("ix_outbox_recipient_id", "outbox", ["recipient_id"])
    op.create_index("ix_outbox_digest_key", "outbox", ["digest_key"])
    op.create_index("ix_outbox_status", "outbox", ["status"])
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("secrets")
    op.drop_table("outbox")
    op.drop_table("digest_items")
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("suspended_at")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("digested_until")
