"""last_seen moves to its own narrow table

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digestbot.store.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paper_sightings",
        sa.Column("paper_id", sa.Integer,
                  sa.ForeignKey("papers.id", ondelete="CASCADE", name="fk_paper_sightings_paper_id"),
                  primary_key=True),
        sa.Column("last_seen", UTCDateTime, nullable=False),
    )
    op.execute("INSERT INTO paper_sightings (paper_id, last_seen) SELECT id, last_seen FROM papers")
    with op.batch_alter_table("papers") as batch:
        batch.drop_column("last_seen")


def downgrade() -> None:
    with op.batch_alter_table("papers") as batch:
        batch.add_column(sa.Column("last_seen", UTCDateTime))
    op.execute(
        "UPDATE papers SET last_seen = (SELECT last_seen FROM paper_sightings WHERE paper_id = papers.id)"
    )
    op.drop_table("paper_sightings")
