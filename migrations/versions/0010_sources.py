"""real sources: papers gain their arXiv id and author names; subscriptions a top-N limit; fetch state

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digestbot.store.models import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN, which SQLite does in place: a batch copy of either table would
    # break the matches view (migration 0008) that reads them.
    op.add_column("papers", sa.Column("arxiv_id", sa.String(40)))
    op.add_column("papers", sa.Column("authors", sa.JSON))
    op.create_index("ix_papers_arxiv_id", "papers", ["arxiv_id"], unique=True)
    op.add_column("subscriptions", sa.Column("top", sa.Integer))
    op.create_table(
        "fetch_state",
        sa.Column("source", sa.String(200), primary_key=True),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("sha256", sa.String(64)),
        sa.Column("checked_at", UTCDateTime, nullable=False),
        sa.Column("changed_at", UTCDateTime),
    )


def downgrade() -> None:
    op.drop_table("fetch_state")
    op.drop_column("subscriptions", "top")
    op.drop_index("ix_papers_arxiv_id", table_name="papers")
    op.drop_column("papers", "authors")
    op.drop_column("papers", "arxiv_id")
