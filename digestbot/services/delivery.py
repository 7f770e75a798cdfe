"""Deliver the outbox: claim rows, send them through their channel, record the outcome.

Claims are atomic (see ``Outbox.claim``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
`digestbot send` processes never take the same row). A row is marked sent right after the
provider accepts it (in a short transaction shared with the rows that finished at the same
moment, see ``Outcomes``): a message can repeat only if the process dies in between. A row left ``sending`` by a dead process is
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
from datetime import datetime, timedelta

from digestbot.channels.base import Channel, PermanentDeliveryError, TransientDeliveryError
from digestbot.clock import Clock, utcnow
from digestbot.errors import NotFound, UsageError
from digestbot.services import metrics
from digestbot.settings import Settings
from digestbot.store import OutboxMessage, Store

LEASE = timedelta(minutes=10)  # a row 'sending' longer than this belongs to a dead process
MAX_DELAY = 15 * 60.0
CLAIM_BATCH = 200


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


def release_stale(store: Store, now: datetime) -> int:
    """Rows claimed by a process that died: back to pending."""
    with store.transaction() as tx:
        return tx.outbox.release_stale(now, LEASE)


def claim(store: Store, worker: str, now: datetime, limit: int = CLAIM_BATCH,
          kinds: tuple[str, ...] | None = None) -> list[OutboxMessage]:
    """Atomically take up to ``limit`` due pending rows (of these kinds only, if given) for this worker."""
    with store.transaction() as tx:
        return tx.outbox.claim(worker, now, limit, kinds)


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

    def __init__(self, store: Store, worker: str) -> None:
        self.store = store
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
        with self.store.transaction() as tx:
            tx.outbox.record_outcomes(self.worker, [(outcome.row_id, outcome.values) for outcome in batch])


@dataclass(slots=True)
class _Outcome:
    row_id: int
    values: dict
    error: BaseException | None = None


class OutboxSender:
    """Drains the outbox through the channels, with a bounded pool of threads."""

    def __init__(self, store: Store, channels: dict[str, Channel], settings: Settings,
                 clock: Clock = utcnow, sleep: Callable[[float], None] = time.sleep,
                 kinds: tuple[str, ...] | None = None) -> None:
        self.store = store
        self.kinds = kinds  # only messages of these kinds (None: all)
        self.channels = channels
        self.settings = settings
        self.clock = clock
        self.sleep = sleep
        self.worker = f"w-{uuid.uuid4().hex[:10]}"
        self.outcomes = Outcomes(store, self.worker)
        self.stopping = threading.Event()

    def send_all(self, wait_for_retries: float = 60.0) -> SendReport:
        """Send everything due; retries due within ``wait_for_retries`` seconds are waited for."""
        report = SendReport()
        release_stale(self.store, self.clock())
        with ThreadPoolExecutor(max_workers=self.settings.send_workers, thread_name_prefix="send") as pool:
            while not self.stopping.is_set():
                rows = claim(self.store, self.worker, self.clock(), kinds=self.kinds)
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
        with self.store.reading() as tx:
            report.retrying = tx.outbox.pending()
        return report

    def _next_retry_in(self) -> float | None:
        with self.store.reading() as tx:
            soonest = tx.outbox.next_due(self.kinds)
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
        started = time.perf_counter()
        try:
            try:
                provider_id = channel.send(json.loads(row.payload))
            finally:
                metrics.PROVIDER_LATENCY.labels(row.channel).observe(time.perf_counter() - started)
        except TransientDeliveryError as exc:
            if row.attempts >= self.settings.send_attempts:
                self._fail(row, f"gave up after {row.attempts} attempts: {exc}", report)
                return
            metrics.MESSAGES.labels(row.channel, "retrying").inc()
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
        metrics.MESSAGES.labels(row.channel, "sent").inc()
        with report._lock:
            report.sent += 1

    def _fail(self, row: OutboxMessage, reason: str, report: SendReport) -> None:
        self.outcomes.record(row.id, status="failed", last_error=reason)
        metrics.MESSAGES.labels(row.channel, "failed").inc()
        with report._lock:
            report.failed += 1
            report.errors.append({"id": row.id, "channel": row.channel, "error": reason})


def outbox_rows(store: Store, status: str | None = None, limit: int = 100) -> list[OutboxMessage]:
    """The newest messages (of one status), newest first: `digestbot outbox`."""
    with store.reading() as tx:
        return tx.outbox.newest(status, limit)


def outbox_counts(store: Store) -> dict[str, int]:
    with store.reading() as tx:
        return tx.outbox.counts()


def retry(store: Store, row_id: int, now: datetime) -> OutboxMessage:
    """Put a failed (or pending) message back in line, now, with a fresh attempt count."""
    with store.transaction() as tx:
        row = tx.outbox.message(row_id)
        if row is None:
            raise NotFound(f"no outbox message with id {row_id}")
        if row.status in ("sent", "sending"):
            raise UsageError(f"outbox message {row_id} is {row.status}; only failed or pending ones can be retried")
        tx.outbox.put_back(row, now)
        return row
