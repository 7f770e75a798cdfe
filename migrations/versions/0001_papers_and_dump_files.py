"""papers and dump files

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from digestbot.store.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dump_files",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("snapshot_date", sa.Date),
        sa.Column("entries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("new", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated", sa.Integer, nullable=False, server_default="0"),
        sa.Column("unchanged", sa.Integer, nullable=False, server_default="0"),
        sa.Column("warnings", sa.Text),
        sa.Column("processed_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("sha256", name="uq_dump_files_sha256"),
    )
    op.create_table(
        "papers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("title_key", sa.Text, nullable=False),
        sa.Column("abstract", sa.Text, nullable=False),
        sa.Column("abstract_fp", sa.String(32), nullable=False),
        sa.Column("authors_count", sa.Integer),
        sa.Column("upvotes", sa.Integer),
        sa.Column("published", sa.Date),
        sa.Column("first_seen", UTCDateTime, nullable=False),
        sa.Column("last_seen", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime),
        sa.Column(
            "first_dump_id", sa.Integer,
            sa.ForeignKey("dump_files.id", ondelete="SET NULL", name="fk_papers_first_dump_id"),
        ),
        sa.UniqueConstraint("title_key", name="uq_papers_title_key"),
    )
    op.create_index("ix_papers_abstract_fp", "papers", ["abstract_fp"])
    op.create_index("ix_papers_first_seen", "papers", ["first_seen"])


def downgrade() -> None:
    op.drop_table("papers")
    op.drop_table("dump_files")
