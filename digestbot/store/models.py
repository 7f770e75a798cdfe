"""SQLAlchemy 2.0 typed models. The schema itself is owned by the Alembic migrations."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import DateTime, ForeignKey, Integer, MetaData, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    # Named constraints, so that migrations (and batch mode on SQLite) can refer to them.
    metadata = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
    })


class DumpFile(Base):
    """A dump file seen by ingest, recorded by the SHA-256 of its content."""

    __tablename__ = "dump_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # ingested | failed
    error: Mapped[str | None] = mapped_column(Text)
    snapshot_date: Mapped[date | None]
    entries: Mapped[int] = mapped_column(default=0)
    new: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    warnings: Mapped[str | None] = mapped_column(Text)  # one per line
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Paper(Base):
    __tablename__ = "papers"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    title_key: Mapped[str] = mapped_column(Text, unique=True)
    abstract: Mapped[str] = mapped_column(Text)
    abstract_fp: Mapped[str] = mapped_column(String(32), index=True)
    authors_count: Mapped[int | None]
    upvotes: Mapped[int | None]
    published: Mapped[date | None]
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_dump_id: Mapped[int | None] = mapped_column(ForeignKey("dump_files.id", ondelete="SET NULL"))
