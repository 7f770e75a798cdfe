"""Deliver the outbox: claim rows, send them through their channel, record the outcome.

Claims are atomic: on PostgreSQL ``FOR UPDATE SKIP LOCKED`` inside an ``UPDATE … RETURNING``
(so several `digestbot send` processes never take the same row), on SQLite the same UPDATE
under ``BEGIN IMMEDIATE``. A row is marked sent right after the provider accepts it (in a short
transaction shared with the rows that finished at the same moment, see ``Outcomes``): a message
can repeat only if the process dies in between. A row left ``sending`` by a dead process is
released after a lease and sent again.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, bindparam, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from digestbot.channels.base import Channel, PermanentDeliveryError, TransientDeliveryError
from digestbot.errors import NotFound, UsageError
from digestbot.settings import Settings
from digestbot.store.models import OutboxMessage

LEASE = timedelta(minutes=10)  # a row 'sending' longer than this belongs to a dead process
MAX_DELAY = 15 * 60.0
CLAIM_BATCH = 200


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class SendReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    errors: list[dict] = field(default_factory=list)  # {"id", "recipient", "error"} of failures
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_json(self) -> dict:
        return {"sent": self.sent, "retrying": self.retrying, "failed": self.failed, "errors": self.errors}


def backoff(attempt: int, base: float, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; never sooner than the provider asked."""
    delay = min(MAX_DELAY, base * 2 ** max(0, attempt - 1)) * random.uniform(0.5, 1.0)
    return max(delay, retry_after or 0.0)


def release_stale(engine: Engine, now: datetime) -> int:
    """Rows claimed by a process that died: back to pending."""
    with Session(engine) as session, session.begin():
        result = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.status == "sending", OutboxMessage.claimed_at < now - LEASE)
            .values(status="pending", claimed_at=None, claimed_by=None)
        )
        return result.rowcount or 0


def claim(engine: Engine, worker: str, now: datetime, limit: int = CLAIM_BATCH,
          cadences: tuple[str, ...] | None = None) -> list[OutboxMessage]:
    """Atomically take up to ``limit`` due pending rows (of these cadences only, if given) for this worker."""
    earlier = aliased(OutboxMessage)
    # The parts of a Slack digest go out in order, even across workers: a part is claimable
    # only once every earlier part of its digest is sent or has failed for good.
    waiting_for_earlier_part = (
        select(earlier.id)
        .where(earlier.digest_key == OutboxMessage.digest_key, earlier.part < OutboxMessage.part,
               earlier.status.in_(("pending", "sending")))
        .exists()
    )
    # A first part waits for nothing: saying so spares the check for every email and most Slack
    # messages. (Without it, a PostgreSQL planner that has no statistics yet for a freshly built
    # outbox ran the check for every pending row before taking the first ones: quadratic.)
    due = (
        select(OutboxMessage.id)
        .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now,
               or_(OutboxMessage.part == 1, ~waiting_for_earlier_part))
        .order_by(OutboxMessage.id).limit(limit)
        .with_for_update(skip_locked=True)  # PostgreSQL; SQLite serialises writers instead
    )
    if cadences is not None:
        due = due.where(OutboxMessage.cadence.in_(cadences))
    with Session(engine, expire_on_commit=False) as session, session.begin():
        ids = list(session.scalars(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(due.scalar_subquery()), OutboxMessage.status == "pending")
            .values(status="sending", claimed_at=now, claimed_by=worker, attempts=OutboxMessage.attempts + 1)
            .returning(OutboxMessage.id)
        ))
        if not ids:
            return []
        rows = list(session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(ids)).order_by(OutboxMessage.id)))
    return rows


class Outcomes:
    """Records what became of claimed rows, by group commit.

    ``record`` returns once the row's new values are committed, as a transaction per row would,
    so the window in which a crash repeats a message stays the time from the provider's answer
    to that commit. But while one thread commits, the outcomes that arrive meanwhile queue up,
    and the next thread commits all of them in one transaction: under load a transaction covers
    several rows, and no outcome ever waits for a batch to fill or a timer to fire. The sending
    threads of a process take turns on a lock handed over at once, rather than in SQLite's busy
    handler, which sleeps and polls (1, 2, 5, 10… ms) while the write lock is taken.
    """

    def __init__(self, engine: Engine, worker: str) -> None:
        self.engine = engine
        self.worker = worker
        self._queue: list[_Outcome] = []
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()

    def record(self, row_id: int, **values) -> None:
        """Set these values on a row this worker claimed (and release the claim); committed on return."""
        outcome = _Outcome(row_id, values)
        with self._queue_lock:
            self._queue.append(outcome)
        with self._commit_lock:
            with self._queue_lock:
                batch, self._queue = self._queue, []
            if batch:  # else another thread committed ours while we waited for the lock
                try:
                    self._commit(batch)
                except BaseException as exc:
                    for failed in batch:
                        failed.error = exc
                    raise
        if outcome.error is not None:  # committed by a thread whose transaction failed
            raise outcome.error

    def _commit(self, batch: list[_Outcome]) -> None:
        table = OutboxMessage.__table__
        shapes: dict[tuple[str, ...], list[dict]] = defaultdict(list)
        for outcome in batch:
            shapes[tuple(sorted(outcome.values))].append(
                {"row_id": outcome.row_id, **{f"new_{k}": v for k, v in outcome.values.items()}})
        with self.engine.begin() as connection:
            for names, params in shapes.items():
                connection.execute(
                    update(table)
                    .where(table.c.id == bindparam("row_id"), table.c.claimed_by == self.worker)
                    .values(claimed_at=None, claimed_by=None,
                            **{name: bindparam(f"new_{name}", type_=table.c[name].type) for name in names}),
                    params,
                )


@dataclass(slots=True)
class _Outcome:
    row_id: int
    values: dict
    error: BaseException | None = None


class OutboxSender:
    """Drains the outbox through the channels, with a bounded pool of threads."""

    def __init__(self, engine: Engine, channels: dict[str, Channel], settings: Settings,
                 clock: Callable[[], datetime] = utcnow, sleep: Callable[[float], None] = time.sleep,
                 cadences: tuple[str, ...] | None = None) -> None:
        self.engine = engine
        self.cadences = cadences  # only these outbox cadences (None: all)
        self.channels = channels
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.worker = f"w-{uuid.uuid4().hex[:10]}"
        self.outcomes = Outcomes(engine, self.worker)
        self.stopping = threading.Event()

    def send_all(self, wait_for_retries: float = 60.0) -> SendReport:
        """Send everything due; retries due within ``wait_for_retries`` seconds are waited for."""
        report = SendReport()
        release_stale(self.engine, self.clock())
        with ThreadPoolExecutor(max_workers=self.settings.send_workers, thread_name_prefix="send") as pool:
            while not self.stopping.is_set():
                rows = claim(self.engine, self.worker, self.clock(), cadences=self.cadences)
                if rows:
                    # One lane per destination: the parts of a Slack digest go out in order and
                    # Slack's per-channel pace holds; emails are independent lanes.
                    lanes: dict[tuple[str, str], list[OutboxMessage]] = defaultdict(list)
                    for row in rows:
                        lane = (row.channel, json.loads(row.payload).get("channel", "")) if row.channel != "email" else ("email", str(row.id))
                        lanes[lane].append(row)
                    # Each thread takes lanes until none is left: a task per thread, not per lane
                    # (a task costs a future and a thread wake-up, a fair part of a send's CPU).
                    queue = deque(lanes.values())
                    threads = min(self.settings.send_workers, len(queue))
                    for _ in pool.map(lambda _: self._send_lanes(queue, report), range(threads)):
                        pass
                    continue
                wait = self._next_retry_in()
                if wait is None or wait > wait_for_retries:
                    break
                self.sleep(max(wait, 0.05))
        with Session(self.engine) as session:
            report.retrying = session.scalar(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status == "pending")
            ) or 0
        return report

    def _next_retry_in(self) -> float | None:
        statement = select(func.min(OutboxMessage.next_attempt_at)).where(OutboxMessage.status == "pending")
        if self.cadences is not None:
            statement = statement.where(OutboxMessage.cadence.in_(self.cadences))
        with Session(self.engine) as session:
            soonest = session.scalar(statement)
        return None if soonest is None else (soonest - self.clock()).total_seconds()

    def _send_lanes(self, lanes: deque[list[OutboxMessage]], report: SendReport) -> None:
        while True:
            try:
                lane = lanes.popleft()
            except IndexError:
                return
            self._send_lane(lane, report)

    def _send_lane(self, rows: list[OutboxMessage], report: SendReport) -> None:
        for row in rows:
            self._send_one(row, report)

    def _send_one(self, row: OutboxMessage, report: SendReport) -> None:
        channel = self.channels[row.channel]
        try:
            provider_id = channel.send(json.loads(row.payload))
        except TransientDeliveryError as exc:
            if row.attempts >= self.settings.send_attempts:
                self._fail(row, f"gave up after {row.attempts} attempts: {exc}", report)
                return
            delay = backoff(row.attempts, self.settings.retry_base_seconds, exc.retry_after)
            self.outcomes.record(row.id, status="pending", last_error=str(exc),
                                 next_attempt_at=self.clock() + timedelta(seconds=delay))
            return
        except PermanentDeliveryError as exc:
            self._fail(row, str(exc), report)
            return
        except Exception as exc:  # a bug or an unexpected library error: keep the message, say why
            self._fail(row, f"unexpected {exc.__class__.__name__}: {exc}", report)
            return
        self.outcomes.record(row.id, status="sent", sent_at=self.clock(), last_error=None,
                             provider_id=(provider_id or "")[:200] or None)
        with report._lock:
            report.sent += 1

    def _fail(self, row: OutboxMessage, reason: str, report: SendReport) -> None:
        self.outcomes.record(row.id, status="failed", last_error=reason)
        with report._lock:
            report.failed += 1
            report.errors.append({"id": row.id, "channel": row.channel, "error": reason})


def outbox_rows(session: Session, status: str | None = None, limit: int = 100) -> list[OutboxMessage]:
    statement = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if status is not None:
        statement = statement.where(OutboxMessage.status == status)
    return list(session.scalars(statement))


def outbox_counts(session: Session) -> dict[str, int]:
    counts = dict(session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
    return {status: counts.get(status, 0) for status in ("pending", "sending", "sent", "failed")}


def retry(session: Session, row_id: int, now: datetime) -> OutboxMessage:
    """Put a failed (or pending) message back in line, now, with a fresh attempt count."""
    row = session.get(OutboxMessage, row_id) if 0 < row_id < 2**63 else None  # SQLite cannot bind a larger one
    if row is None:
        raise NotFound(f"no outbox message with id {row_id}")
    if row.status in ("sent", "sending"):
        raise UsageError(f"outbox message {row_id} is {row.status}; only failed or pending ones can be retried")
    row.status, row.attempts, row.next_attempt_at, row.last_error = "pending", 0, now, None
    return row
