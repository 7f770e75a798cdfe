"""web pages: pending (double opt-in) and deleted subscriptions, suspension reasons, webhook events seen

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digestbot.store.models import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("deleted_at", UTCDateTime))
    with op.batch_alter_table("recipients") as batch:
        batch.add_column(sa.Column("suspended_reason", sa.Text))
    op.create_table(
        "webhook_events",
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("source", "event_id", name="pk_webhook_events"),
    )
    op.create_index("ix_webhook_events_received_at", "webhook_events", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_events_received_at", table_name="webhook_events")
    op.drop_table("webhook_events")
    with op.batch_alter_table("recipients") as batch:
        batch.drop_column("suspended_reason")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("pending")
