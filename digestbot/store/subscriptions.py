"""The Subscriptions repository: recipients, subscriptions, their pauses and the subscriptions version.

Change tracking that cannot be forgotten. A matcher keeps the active subscriptions compiled and
syncs by version: each subscription row carries the value the ``subscriptions`` counter had
when the row last changed, and a matcher reads the rows newer than the last version it saw.
So every change must move the counter, and no caller is trusted to do it:

- a subscription made or changed through the ORM is stamped with a new version when the session
  flushes (``_stamp_changes``, a ``before_flush`` listener on every Session), whoever changed it;
- the bulk statements (the import's INSERT) are this repository's, and stamp what they write;
- any other UPDATE of ``subscriptions`` that sets no ``version`` (unless it sets only the
  bookkeeping columns of ``UNVERSIONED``), and any DELETE, is refused before it reaches the
  database (``_refuse_unversioned``, on every Engine): a row that is gone is a change no matcher
  can see, so subscriptions are never deleted.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import Engine, bindparam, event, exists, func, inspect, insert, select, tuple_, update
from sqlalchemy.orm import Session, contains_eager, joinedload

from digestbot.core.schedule import CHECK_NOW, Schedule, next_due
from digestbot.store.db import insert_ignoring_duplicates
from digestbot.store.models import Counter, Recipient, Subscription, SubscriptionPause
from digestbot.store.repository import Repository

VERSION_COUNTER = "subscriptions"
# Columns no matcher reads, changed by digests on every send: a change of these alone needs no version.
UNVERSIONED = frozenset({"digested_until", "next_due_at"})
# What next_due_at is worked out from: a change of any of these moves it (``_schedule_changes``).
_SCHEDULED = ("cadence", "send_at", "weekday", "timezone", "active", "digested_until", "created_at", "query",
              "match_since")
CHUNK = 500  # ids or addresses per IN (...)


class UnversionedChange(RuntimeError):
    """A write to subscriptions that matchers could not see (a programming error, not bad input)."""


class SubscriptionChange(NamedTuple):
    """What a matcher needs of a subscription that changed."""

    id: int
    query: str
    active: bool
    match_since: datetime
    version: int
    cadence: str = "daily"


class Subscriptions(Repository):
    """SQL for recipients, subscriptions, their pauses and the subscriptions version."""

    # ---- recipients ----

    def recipient(self, recipient_id: int) -> Recipient | None:
        return self._by_id(Recipient, recipient_id)

    def recipient_at(self, address: str, kind: str | None = None) -> Recipient | None:
        """The recipient with this (normalised) address, of this kind if given."""
        statement = select(Recipient).where(Recipient.address == address)
        if kind is not None:
            statement = statement.where(Recipient.kind == kind)
        return self.session.scalar(statement)

    def recipient_for(self, address: str, kind: str, now: datetime) -> Recipient:
        """The recipient with this address, added first if there is none."""
        row = self.recipient_at(address)
        if row is None:
            row = Recipient(address=address, kind=kind, created_at=now)
            self.session.add(row)
            self.session.flush()
        return row

    def recipient_ids(self, addresses: list[str], kind: str | None = None) -> dict[str, int]:
        """address → id, for those of ``addresses`` that are stored (of this kind if given)."""
        found: dict[str, int] = {}
        for start in range(0, len(addresses), CHUNK):
            chunk = addresses[start:start + CHUNK]
            statement = select(Recipient.address, Recipient.id).where(Recipient.address.in_(chunk))
            if kind is not None:
                statement = statement.where(Recipient.kind == kind)
            found.update(self.session.execute(statement).all())
        return found

    def recipients(self, ids: list[int]) -> dict[int, Recipient]:
        """id → recipient, for those of ``ids`` that are stored."""
        found: dict[int, Recipient] = {}
        for start in range(0, len(ids), CHUNK):
            found.update((r.id, r) for r in self.session.scalars(
                select(Recipient).where(Recipient.id.in_(ids[start:start + CHUNK]))))
        return found

    def add_recipients(self, rows: list[dict]) -> None:
        """Insert recipients in bulk (``address``, ``kind``, ``created_at``), in one executemany."""
        if rows:
            self.session.execute(insert(Recipient), rows)

    # ---- subscriptions ----

    def add(self, sub: Subscription) -> Subscription:
        """A new subscription, given its id now (and its version, as every change: see the module)."""
        self.session.add(sub)
        self.session.flush()
        return sub

    def add_many(self, rows: list[dict]) -> int:
        """Insert subscriptions in bulk, in one executemany, all stamped with one new version."""
        if not rows:
            return 0
        version = self.next_version()
        self.session.execute(insert(Subscription), [{**row, "version": version, "next_due_at": _due_of_row(row)}
                                                    for row in rows])
        return len(rows)

    def get(self, subscription_id: int) -> Subscription | None:
        """The subscription with this id (its recipient loaded), or None."""
        return self._by_id(Subscription, subscription_id, options=[joinedload(Subscription.recipient)])

    def listed(self, address: str | None = None, include_inactive: bool = False) -> list[Subscription]:
        """Subscriptions not deleted, oldest first (their recipients loaded): this address's, active ones only
        unless ``include_inactive``."""
        statement = select(Subscription).join(Subscription.recipient).options(contains_eager(Subscription.recipient))
        if address is not None:
            statement = statement.where(Recipient.address == address)
        if not include_inactive:
            statement = statement.where(Subscription.active.is_(True))
        return list(self.session.scalars(statement.where(Subscription.deleted_at.is_(None)).order_by(Subscription.id)))

    def of_recipient(self, recipient_id: int, ids: list[int] | None = None) -> list[Subscription]:
        """A recipient's subscriptions, deleted ones left out, oldest first; only those of ``ids`` if given
        (as a link names them: others' ids name nothing here)."""
        statement = (select(Subscription).options(joinedload(Subscription.recipient))
                     .where(Subscription.recipient_id == recipient_id, Subscription.deleted_at.is_(None)))
        if ids is not None:
            statement = statement.where(Subscription.id.in_(ids))
        return list(self.session.scalars(statement.order_by(Subscription.id)))

    def queries(self, subscription_ids: list[int]) -> dict[int, str]:
        """id → query text of these subscriptions."""
        found: dict[int, str] = {}
        for start in range(0, len(subscription_ids), CHUNK):
            found.update(self.session.execute(
                select(Subscription.id, Subscription.query)
                .where(Subscription.id.in_(subscription_ids[start:start + CHUNK]))).all())
        return found

    # ---- for matchers ----

    def digest_subscriptions(self, *, cadence: str | None = None, address: str | None = None,
                             recipient_id: int | None = None) -> list[Subscription]:
        """Active subscriptions of recipients who are not suspended, by id, with their recipient
        loaded: the subscriptions digests are built for (optionally of one cadence or recipient)."""
        statement = (select(Subscription).join(Subscription.recipient).options(contains_eager(Subscription.recipient))
                     .where(Subscription.active.is_(True), Recipient.suspended_at.is_(None)))
        if cadence is not None:
            statement = statement.where(Subscription.cadence == cadence)
        if address is not None:
            statement = statement.where(Recipient.address == address)
        if recipient_id is not None:
            statement = statement.where(Subscription.recipient_id == recipient_id)
        return list(self.session.scalars(statement.order_by(Subscription.id)))

    # ---- the digest pass: by next_due_at, an index range (see Subscription.next_due_at) ----

    def _due(self, now: datetime, cadence: str | None):
        statement = (select(Subscription).join(Subscription.recipient).options(contains_eager(Subscription.recipient))
                     .where(Subscription.next_due_at <= now, Subscription.active.is_(True),
                            Recipient.suspended_at.is_(None)))
        return statement if cadence is None else statement.where(Subscription.cadence == cadence)

    def due_page(self, now: datetime, *, cadence: str | None = None, after: tuple[datetime, int] | None = None,
                 limit: int = 500) -> list[Subscription]:
        """Up to ``limit`` subscriptions due at ``now`` (active, recipient not suspended), in
        (next_due_at, id) order after ``after``, their recipients loaded."""
        statement = self._due(now, cadence)
        if after is not None:
            statement = statement.where(tuple_(Subscription.next_due_at, Subscription.id) > tuple_(*after))
        statement = statement.order_by(Subscription.next_due_at, Subscription.id).limit(limit)
        if self.dialect == "postgresql":  # a second builder (a `digestbot digest` beside the bot) waits
            statement = statement.with_for_update(of=Subscription)
        return list(self.session.scalars(statement))

    def due_of_recipients(self, recipient_ids: list[int], now: datetime, cadence: str | None = None
                          ) -> list[Subscription]:
        """Every subscription of these recipients due at ``now``, by id, their recipients loaded."""
        found: list[Subscription] = []
        for start in range(0, len(recipient_ids), CHUNK):
            statement = self._due(now, cadence).where(Subscription.recipient_id.in_(recipient_ids[start:start + CHUNK]))
            if self.dialect == "postgresql":
                statement = statement.with_for_update(of=Subscription)
            found += self.session.scalars(statement.order_by(Subscription.id))
        return found

    def soonest_scheduled(self, limit: int) -> list[Subscription]:
        """Up to ``limit`` daily and weekly subscriptions digests are built for, soonest due first."""
        return list(self.session.scalars(
            self._due(datetime.max.replace(tzinfo=UTC), None).where(Subscription.cadence != "instant")
            .order_by(Subscription.next_due_at, Subscription.id).limit(limit)))

    def count_due(self, now: datetime, cadence: str | None = None) -> int:
        """How many subscriptions are due at ``now`` (for a progress bar)."""
        statement = select(func.count()).select_from(Subscription).where(Subscription.next_due_at <= now,
                                                                          Subscription.active.is_(True))
        if cadence is not None:
            statement = statement.where(Subscription.cadence == cadence)
        return self.session.scalar(statement) or 0

    def advance(self, windows: list[tuple[Subscription, datetime | None]]) -> None:
        """These subscriptions' digests are built: each covers its window up to the slot given
        (None: an instant one, due again when its query matches), and its next due time moves on.
        One executemany through the table, for the digest pass (objects given are not refreshed)."""
        rows = []
        for sub, slot in windows:
            covered = sub.digested_until if slot is None else slot
            due = None if sub.cadence == "instant" else next_due(
                Schedule(sub.cadence, sub.send_at, sub.weekday, sub.timezone), covered or sub.created_at,
                active=bool(sub.active))
            rows.append({"sub_id": sub.id, "covered": covered, "due": due})
        if rows:
            table = Subscription.__table__
            self.session.execute(
                update(table).where(table.c.id == bindparam("sub_id"))
                .values(digested_until=bindparam("covered", type_=table.c.digested_until.type),
                        next_due_at=bindparam("due", type_=table.c.next_due_at.type)), rows)

    def unconfirmed_before(self, before: datetime, limit: int = CHUNK) -> list[Subscription]:
        """Up to ``limit`` subscriptions still waiting for their confirmation (not deleted), made or
        last changed before ``before``."""
        return list(self.session.scalars(
            select(Subscription).where(Subscription.pending.is_(True), Subscription.deleted_at.is_(None),
                                       Subscription.updated_at < before).order_by(Subscription.id).limit(limit)))

    def wake_instant(self, subscription_ids: list[int]) -> int:
        """Those of these subscriptions that are instant and active are due at the next pass (their
        query matched new papers); returns how many were woken."""
        woken = 0
        for start in range(0, len(subscription_ids), CHUNK):
            woken += self.session.execute(
                update(Subscription).where(Subscription.id.in_(subscription_ids[start:start + CHUNK]),
                                           Subscription.cadence == "instant", Subscription.active.is_(True),
                                           Subscription.next_due_at.is_(None))
                .values(next_due_at=CHECK_NOW).execution_options(synchronize_session=False)
            ).rowcount or 0
        return woken

    def changed_since(self, version: int) -> list[SubscriptionChange]:
        """Every subscription changed after ``version`` (active or not), in version order."""
        rows = self.session.execute(
            select(Subscription.id, Subscription.query, Subscription.active, Subscription.match_since,
                   Subscription.version, Subscription.cadence)
            .where(Subscription.version > version).order_by(Subscription.version))
        return [SubscriptionChange(*row) for row in rows]

    def version(self) -> int:
        """The version of the latest change (0 before any)."""
        return self.session.scalar(select(Counter.value).where(Counter.name == VERSION_COUNTER)) or 0

    def next_version(self) -> int:
        """Bump and return the subscriptions version. Only this repository calls it (see the module).

        The counter row stays locked until commit, so versions become visible in order: a matcher
        that has seen version N has seen every change up to N.
        """
        connection = self.session.connection()  # Core, not the ORM: this runs inside a flush too
        bumped = connection.execute(_BUMP).scalar()
        if bumped is None:  # a new database: the first change makes the counter
            connection.execute(insert_ignoring_duplicates(self.dialect, Counter.__table__)
                               .values(name=VERSION_COUNTER, value=0))
            bumped = connection.execute(_BUMP).scalar_one()
        return bumped

    def record_pauses(self) -> None:
        """Open a pause for every inactive subscription without one, close the pause of every active one.

        A pause starts or ends at the subscription's ``updated_at`` (when it was paused or resumed).
        Matchers do this before every ingest matches, so that it holds for every paper matched while
        inactive; reconciled from the subscriptions themselves, so a rolled-back ingest loses nothing.
        """
        open_pause = exists().where(SubscriptionPause.subscription_id == Subscription.id,
                                    SubscriptionPause.resumed_at.is_(None))
        self.session.execute(
            insert_ignoring_duplicates(self.dialect, SubscriptionPause).from_select(
                ["subscription_id", "paused_at"],
                select(Subscription.id, Subscription.updated_at).where(Subscription.active.is_(False), ~open_pause))
        )
        resumed = self.session.execute(
            select(Subscription.id, Subscription.updated_at).where(Subscription.active.is_(True), open_pause)
        ).all()
        for subscription_id, resumed_at in resumed:
            self.session.execute(
                update(SubscriptionPause).where(SubscriptionPause.subscription_id == subscription_id,
                                                SubscriptionPause.resumed_at.is_(None)).values(resumed_at=resumed_at)
            )


def _due_of_row(row: dict) -> datetime | None:
    schedule = Schedule(row["cadence"], row["send_at"], row["weekday"], row["timezone"])
    return next_due(schedule, row.get("digested_until") or row["created_at"], active=row.get("active", True))


def due_of(sub: Subscription) -> datetime | None:
    """When this subscription's next digest is due (see ``Subscription.next_due_at``)."""
    schedule = Schedule(sub.cadence, sub.send_at, sub.weekday, sub.timezone)
    return next_due(schedule, sub.digested_until or sub.created_at, active=bool(sub.active))


@event.listens_for(Session, "before_flush")
def _schedule_changes(session: Session, _context, _instances) -> None:
    """Every subscription the flush inserts, or changes in what its due time depends on, gets it
    worked out again: no caller can forget to (as with the version)."""
    for sub in session.new:
        if isinstance(sub, Subscription):
            sub.next_due_at = due_of(sub)
    for sub in session.dirty:
        if isinstance(sub, Subscription):
            attrs = inspect(sub).attrs
            if any(attrs[key].history.has_changes() for key in _SCHEDULED):
                sub.next_due_at = due_of(sub)


_BUMP = (update(Counter.__table__).where(Counter.name == VERSION_COUNTER).values(value=Counter.value + 1)
         .returning(Counter.value))
_VERSIONED = tuple(attr.key for attr in inspect(Subscription).column_attrs
                   if attr.key not in UNVERSIONED | {"version"})


def _needs_version(sub: Subscription) -> bool:
    """Whether a column a matcher may read has a net change (setting a value it had is none)."""
    attrs = inspect(sub).attrs
    return any(attrs[key].history.has_changes() for key in _VERSIONED)


@event.listens_for(Session, "before_flush")
def _stamp_changes(session: Session, _context, _instances) -> None:
    """Every subscription the flush inserts or changes gets one new version (see the module)."""
    changed = [obj for obj in session.new if isinstance(obj, Subscription)]
    changed += [obj for obj in session.dirty if isinstance(obj, Subscription) and _needs_version(obj)]
    if changed:
        version = Subscriptions(session).next_version()
        for sub in changed:
            sub.version = version


_WRITE = re.compile(r'\s*(UPDATE|DELETE\s+FROM)\s+(?:"?\w+"?\.)?"?subscriptions"?(?![\w.])', re.IGNORECASE)
_SET = re.compile(r"\bSET\b(.*?)(?:\bWHERE\b|\bRETURNING\b|\bFROM\b|$)", re.IGNORECASE | re.DOTALL)
_ASSIGNED = re.compile(r'"?(\w+)"?\s*=')


@event.listens_for(Engine, "before_cursor_execute")
def _refuse_unversioned(_connection, _cursor, statement: str, _parameters, _context, _executemany) -> None:
    """Refuse, before the database sees it, a write to subscriptions that no matcher would see.

    Read from the SQL itself, so that it holds for every way of sending one (the ORM's flush,
    a Core statement, text). An INSERT needs no check: ``version`` is NOT NULL.
    """
    found = _WRITE.match(statement)
    if found is None:
        return
    if found.group(1).upper() != "UPDATE":
        raise UnversionedChange("subscriptions are never deleted (no matcher could see it): set deleted_at")
    assigned = _SET.search(statement)
    columns = set(_ASSIGNED.findall(assigned.group(1))) if assigned else set()
    if not columns or ("version" not in columns and not columns <= UNVERSIONED):
        raise UnversionedChange(
            f"an UPDATE of subscriptions ({', '.join(sorted(columns))}) that sets no version: matchers would "
            "never see it; change subscriptions through the ORM or a Subscriptions method")
