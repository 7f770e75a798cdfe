"""SQLAlchemy 2.0 typed models. The schema itself is owned by the Alembic migrations."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Text, TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


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
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    first_dump_id: Mapped[int | None] = mapped_column(ForeignKey("dump_files.id", ondelete="SET NULL"))
    # From the sources that give them (migration 0010): the arXiv id without its version, and the
    # author names (a JSON list; None when unknown, as for a paper known only from a text dump).
    arxiv_id: Mapped[str | None] = mapped_column(String(40), unique=True, index=True)
    authors: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))

    sighting: Mapped[PaperSighting | None] = relationship(lazy="joined")

    @property
    def last_seen(self) -> datetime:
        return self.sighting.last_seen if self.sighting is not None else self.first_seen


class PaperSighting(Base):
    """When a paper was last seen in a dump. A narrow table of its own: every re-ingest touches
    every known paper, and rewriting a 2 KB paper row to move one timestamp is what made that slow."""

    __tablename__ = "paper_sightings"

    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime)


class Counter(Base):
    """Named counters. ``subscriptions`` orders subscription changes for incremental index sync."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(default=0)


class Recipient(Base):
    __tablename__ = "recipients"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(512), unique=True)  # alice@x.org, slack:#ch, slack-webhook:https://…
    kind: Mapped[str] = mapped_column(String(16))  # email | slack | slack-webhook
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # bounces, spam reports: no more mail
    suspended_reason: Mapped[str | None] = mapped_column(Text)  # e.g. "bounce: 550 5.1.1 user unknown"

    subscriptions: Mapped[list[Subscription]] = relationship(back_populates="recipient")


class Subscription(Base):
    __tablename__ = "subscriptions"
    # The digest pass reads the due subscriptions in (next_due_at, id) order: an index range, not a scan.
    __table_args__ = (Index("ix_subscriptions_next_due_at", "next_due_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), index=True)
    query: Mapped[str] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(String(200))
    cadence: Mapped[str] = mapped_column(String(16))  # instant | daily | weekly
    send_at: Mapped[str] = mapped_column(String(5))  # HH:MM, local time
    weekday: Mapped[str] = mapped_column(String(3))  # mon … sun, for weekly
    timezone: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    # Made on the web page and waiting for the address's owner to click the confirmation link
    # (double opt-in): inactive until then, and nothing is ever sent for it.
    pending: Mapped[bool] = mapped_column(default=False)
    # Deleted on the manage page: kept (inactive) so that matchers see the change, never shown again.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Papers first seen at or after this match: the creation time, or earlier with --backfill.
    match_since: Mapped[datetime] = mapped_column(UTCDateTime)
    # Stamped from the "subscriptions" counter on every change; matchers sync what is newer.
    version: Mapped[int] = mapped_column(index=True)
    # The latest scheduled digest slot already covered (None: none yet).
    digested_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # --top N: each digest keeps its N most upvoted papers of the window (None: all of them).
    top: Mapped[int | None]
    # "More like these" (issue 13): papers of the window among the top like_top, or scoring at
    # least like_threshold, against the examples in subscription_likes. None: not a like-subscription.
    like_top: Mapped[int | None] = mapped_column(Integer)
    like_threshold: Mapped[float | None] = mapped_column(Float)
    # When its next digest is due (schedule.next_due): kept by the store on every change, so that
    # the digest pass reads only the due ones. None: inactive, or an instant one with nothing new.
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    recipient: Mapped[Recipient] = relationship(back_populates="subscriptions")


class MatchQuery(Base):
    """A subscription query text that has matched papers: matches are stored per query, not per subscriber."""

    __tablename__ = "match_queries"

    id: Mapped[int] = mapped_column(primary_key=True)
    query: Mapped[str] = mapped_column(Text, unique=True)  # as stored in subscriptions.query


class QueryMatch(Base):
    """A paper matched by a query, stored once however many subscriptions share the query.

    The pair is the primary key and, on SQLite, the table is WITHOUT ROWID: one B-tree to
    write per match instead of a row table plus two indexes. Matches are the bulkiest writes,
    hence no foreign keys either (see migration 0008): the matches view joins papers and queries.
    """

    __tablename__ = "query_matches"
    __table_args__ = {"sqlite_with_rowid": False}

    query_id: Mapped[int] = mapped_column(primary_key=True)  # match_queries.id
    paper_id: Mapped[int] = mapped_column(primary_key=True)  # papers.id


class SubscriptionPause(Base):
    """A time during which a subscription was inactive (paused, ended, not yet confirmed): papers
    first seen from ``paused_at`` until ``resumed_at`` (open-ended if None) are not its matches.
    Recorded by the matcher when it first sees the change, i.e. before any ingest it missed."""

    __tablename__ = "subscription_pauses"

    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True)
    paused_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    resumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Match(Base):
    """A paper matched by a subscription: a read-only VIEW (migration 0008) over ``query_matches``.

    A subscription's matches are its query's matches of the papers first seen at or after its
    ``match_since``, outside its pauses. ``matched_at`` is when the paper was first seen, or when
    the subscription was created if that is later (a backfill). Write matches with
    ``digestbot.store.matches.Matches`` (``tx.matches``).
    """

    __tablename__ = "matches"
    __table_args__ = {"info": {"is_view": True}}

    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"), primary_key=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id"), primary_key=True)
    matched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DigestItem(Base):
    """A paper that went into a recipient's digest of one cadence: never sent twice in that cadence."""

    __tablename__ = "digest_items"
    __table_args__ = (
        UniqueConstraint("recipient_id", "cadence", "paper_id", name="uq_digest_items_recipient_cadence_paper"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    cadence: Mapped[str] = mapped_column(String(16))
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"))
    digest_key: Mapped[str] = mapped_column(String(64), index=True)  # groups the outbox rows of one digest
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OutboxMessage(Base):
    """One message to deliver (an email, or one Slack message), rendered, with its delivery state."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # email | slack | slack-webhook
    # What the message is: a digest of a cadence (instant, daily, weekly), a notice (confirm,
    # manage) or an admin alert. Delivery can be limited to kinds (the web's courier sends notices).
    kind: Mapped[str] = mapped_column(String(16))
    digest_key: Mapped[str] = mapped_column(String(64), index=True)
    part: Mapped[int] = mapped_column(default=1)  # Slack digests may take several messages
    subject: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending | sending | sent | failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # The rendered payload lives in a table of its own, written once: status updates never rewrite it.
    stored_payload: Mapped[OutboxPayload | None] = relationship(lazy="joined", cascade="all, delete-orphan")

    @property
    def payload(self) -> str | None:
        """JSON: what the channel sends (None once retention has dropped a sent message's payload)."""
        return self.stored_payload.payload if self.stored_payload is not None else None

    @payload.setter
    def payload(self, value: str) -> None:
        self.stored_payload = OutboxPayload(payload=value)


class OutboxPayload(Base):
    """The rendered payload of an outbox message (about 25 KB for an email digest), stored once."""

    __tablename__ = "outbox_payloads"

    message_id: Mapped[int] = mapped_column(ForeignKey("outbox.id", ondelete="CASCADE"), primary_key=True)
    payload: Mapped[str] = mapped_column(Text)  # JSON


class Secret(Base):
    """Values digestbot generates once and keeps, e.g. the link-signing key when none is configured."""

    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class JobRun(Base):
    """The scheduler's own state: when each job last ran and how it went (survives restarts)."""

    __tablename__ = "job_runs"

    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[str | None] = mapped_column(String(16))  # ok | failed
    last_error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)  # one line: what the last run did


class Lease(Base):
    """A named lease: the scheduler's leadership. Whoever holds an unexpired lease leads."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AdminAlert(Base):
    """An alert sent to DIGESTBOT_ADMIN, by a key that makes each condition alert once."""

    __tablename__ = "admin_alerts"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookEvent(Base):
    """An event received from a provider (SendGrid event id, Slack request signature): seen once."""

    __tablename__ = "webhook_events"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)  # sendgrid | slack
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class FetchState(Base):
    """What a source answered last (`digestbot fetch`), for conditional requests: its validators
    (ETag, Last-Modified) and the SHA-256 of the answer written, by source key (e.g. hf-daily:2026-12-03)."""

    __tablename__ = "fetch_state"

    source: Mapped[str] = mapped_column(String(200), primary_key=True)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
# ---- relevance (issue 13) ----

class SubscriptionLike(Base):
    """An example paper of a "more like these" subscription."""

    __tablename__ = "subscription_likes"

    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True)


class PaperVote(Base):
    """A reader's vote on a paper: +1 (more like this) or -1 (less like this). Cleared = no row."""

    __tablename__ = "paper_votes"

    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), primary_key=True)
    paper_id: Mapped[int] = mapped_column(ForeignKey("papers.id", ondelete="CASCADE"), primary_key=True)
    vote: Mapped[int] = mapped_column(Integer)
    voted_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RelevanceVocabulary(Base):
    """A fitted vocabulary (terms and IDF): a generation of the stored features."""

    __tablename__ = "relevance_vocabularies"

    generation: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    papers: Mapped[int] = mapped_column(Integer)  # how many papers it was fitted on
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RelevanceFeatures(Base):
    """The vectors of a run of papers (ids up to last_paper_id), in a vocabulary's generation."""

    __tablename__ = "relevance_features"

    id: Mapped[int] = mapped_column(primary_key=True)
    generation: Mapped[int] = mapped_column(
        ForeignKey("relevance_vocabularies.generation", ondelete="CASCADE"), index=True)
    last_paper_id: Mapped[int] = mapped_column(Integer)
    # Papers changed (papers.updated_at) up to this time are in this generation's vectors.
    updated_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ReaderModel(Base):
    """A reader's trained weights, and the fingerprint of the votes and likes they came from."""

    __tablename__ = "reader_models"

    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    trained_at: Mapped[datetime] = mapped_column(UTCDateTime)
