"""subscriptions.next_due_at (the digest pass reads only the due ones); outbox payloads stored apart

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

Finding the due digests read every subscription and worked out its schedule: 101 s for 100,000
subscriptions. Each subscription now carries when its next digest is due, indexed with its id
(the pass's order), filled here for the rows there are. The outbox kept each rendered payload
(about 25 KB) in its row, rewritten by every status update; it moves to ``outbox_payloads``,
written once, dropped by retention once the message is sent.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from digestbot.core.schedule import Schedule, next_due
from digestbot.store.models import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_BATCH = 5_000


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("next_due_at", UTCDateTime(), nullable=True))
    op.create_index("ix_subscriptions_next_due_at", "subscriptions", ["next_due_at", "id"])
    _fill_next_due()
    op.create_table(
        "outbox_payloads",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["outbox.id"], name="fk_outbox_payloads_message_id",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_id", name="pk_outbox_payloads"),
    )
    op.execute("INSERT INTO outbox_payloads (message_id, payload) SELECT id, payload FROM outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("payload")


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("payload", sa.Text(), nullable=False, server_default="{}"))
    op.execute("UPDATE outbox SET payload = (SELECT p.payload FROM outbox_payloads p WHERE p.message_id = outbox.id) "
               "WHERE id IN (SELECT message_id FROM outbox_payloads)")
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("payload", server_default=None, existing_type=sa.Text(), existing_nullable=False)
    op.drop_table("outbox_payloads")
    op.drop_index("ix_subscriptions_next_due_at", table_name="subscriptions")
    # Not in batch mode: recreating subscriptions on SQLite would break the matches view over it.
    op.execute("ALTER TABLE subscriptions DROP COLUMN next_due_at")


def _fill_next_due() -> None:
    """next_due_at of every subscription there is, as the store keeps it from now on."""
    connection = op.get_bind()
    column = UTCDateTime()
    table = sa.table("subscriptions", sa.column("id", sa.Integer()), sa.column("next_due_at", column))
    rows = connection.execute(sa.text(
        "SELECT id, cadence, send_at, weekday, timezone, active, digested_until, created_at FROM subscriptions")
    ).all()
    updates = []
    for sub_id, cadence, send_at, weekday, tz, active, digested_until, created_at in rows:
        covered = _aware(digested_until if digested_until is not None else created_at)
        due = next_due(Schedule(cadence, send_at, weekday, tz), covered, active=bool(active))
        updates.append({"sub_id": sub_id, "due": due})
    # Core, with the version kept as it is: next_due_at is bookkeeping no matcher reads.
    statement = (sa.update(table).where(table.c.id == sa.bindparam("sub_id"))
                 .values(next_due_at=sa.bindparam("due", type_=column)))
    for start in range(0, len(updates), _BATCH):
        connection.execute(statement, updates[start:start + _BATCH])


def _aware(value):
    """A stored time as an aware UTC datetime (SQLite hands back text or a naive datetime)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
