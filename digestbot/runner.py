"""`digestbot run` and `digestbot worker`: the bot as operators run it.

APScheduler 3 runs the jobs; each job is one call into a service and holds no logic of its
own. Only one scheduler may lead (APScheduler 3 cannot share a job store between processes):
leadership is a lease row renewed every few seconds, and a second `digestbot run` waits as a
hot standby until the lease runs out. Job runs are recorded in the database (``job_runs``).
Everything the jobs do is idempotent by design (files by content hash, digest windows by
``digested_until`` and ``digest_items``, the outbox by claims), so a crash at any moment
followed by a restart neither skips nor repeats work.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from digestbot.bootstrap import Parts
from digestbot.clock import utcnow
from digestbot.core.recipients import masked
from digestbot.errors import DigestbotError
from digestbot.services import leases
from digestbot.services.fetch import Fetcher
from digestbot.services.health import queue_admin_alerts
from digestbot.services.ingest import dump_limits
from digestbot.services import metrics
from digestbot.services.jobs import record_run
from digestbot.services.relevance import retrain_stale, update_changed, update_features
from digestbot.services.retention import prune
from digestbot.services.watch import Watcher
from digestbot.settings import Settings

log = logging.getLogger("digestbot")

LEASE_NAME = "scheduler"
LEASE_TTL = timedelta(seconds=20)
RENEW_EVERY = 5.0  # seconds; well inside the TTL


class Bot:
    """The jobs, each a thin call into a service, recorded in ``job_runs``."""

    def __init__(self, parts: Parts) -> None:
        self.store, self.settings, self.clock = parts.store, parts.settings, parts.clock
        self.watcher = Watcher(self.settings.watch_dir, self.settings.settle_seconds, dump_limits(self.settings),
                               matcher=parts.matcher)
        self.builder = parts.digests
        self.relevance_index = parts.relevance
        self.sender = parts.outbox_sender()
        self._delivery_lock = threading.Lock()  # the watch and deliver jobs both send
        self.fetcher = Fetcher(self.store, self.settings) if self.settings.fetch_minutes > 0 else None

    def _record(self, job: str, action: Callable[[], str]) -> None:
        started = self.clock()
        status, error, summary = "ok", None, ""
        try:
            summary = action()
        except Exception as exc:  # a job must never kill the scheduler; say what happened
            # digestbot's errors say what happened in words; anything else is a bug: name its class.
            said = str(exc) if isinstance(exc, DigestbotError) else f"{exc.__class__.__name__}: {exc}"
            status, error = "failed", (said.splitlines() or [exc.__class__.__name__])[0]
            log.error("%s failed: %s", job, error, exc_info=log.isEnabledFor(logging.DEBUG), extra={"job": job})
            metrics.JOB_FAILURES.labels(job).inc()
        metrics.JOB_RUNS.labels(job).inc()
        record_run(self.store, job, started, self.clock(), status, error, summary)

    # ---- the jobs ----

    def watch(self, sleep: Callable[[float], None] | None = None) -> None:
        """``sleep``: for a pass with no pass after it (see Watcher.scan)."""
        self._record("watch", lambda: self._watch(sleep))

    def _watch(self, sleep: Callable[[float], None] | None = None) -> str:
        report = self.watcher.scan(self.store, self.clock(), sleep)
        for f in report.files:
            if f.status == "ingested":
                log.info("ingested %s: %d new, %d updated, %d unchanged, %d matches",
                         f.path, f.new, f.updated, f.unchanged, f.matches, extra={"job": "watch", "file": f.path})
            elif f.status == "failed":
                log.warning("failed %s: %s", f.path, f.note, extra={"job": "watch", "file": f.path})
            elif f.status == "deferred":
                log.info("deferred %s: %s", f.path, f.note, extra={"job": "watch", "file": f.path})
        if report.new:
            self._vectorise()
        if report.matches:
            self._queue("instant")
            self._deliver()
        return f"{len(report.files)} file(s), {report.new} new paper(s), {report.matches} match(es)"

    def fetch(self) -> None:
        """The sources into the watch folder (the watch job ingests what is written)."""
        self._record("fetch", self._fetch)

    def _fetch(self) -> str:
        now = self.clock()
        report = self.fetcher.fetch(None, day=None, now=now)
        late = self.fetcher.fetch_late(now=now)
        results = report.sources + late.sources
        for s in results:
            if s.status == "written":
                log.info("fetched %s: %d papers into %s", s.source, s.papers, s.path,
                         extra={"job": "fetch", "file": s.path})
            elif s.status == "failed":
                log.warning("fetching %s failed: %s", s.source, s.error, extra={"job": "fetch"})
        failed = [s for s in results if s.status == "failed"]
        if failed:
            raise DigestbotError(f"{len(failed)} of {len(results)} fetch(es) failed: {failed[0].source}: {failed[0].error}")
        return f"{report.summary()}" + (f"; the day before: {late.summary()}" if late.sources else "")
    def _vectorise(self) -> None:
        """The relevance features of the papers just ingested (issue 13): computed once, now, so that
        no request or digest waits for them. A failure here is the relevance job's to report."""
        try:
            update_features(self.store, self.clock())
            update_changed(self.store)
        except Exception as exc:
            log.warning("relevance features not updated: %s", str(exc).splitlines()[0] if str(exc) else exc)

    def relevance(self) -> None:
        """Issue 13: features of new papers, and the models of readers whose likes or votes changed."""
        self._record("relevance", self._relevance)

    def _relevance(self) -> str:
        now = self.clock()
        papers = update_features(self.store, now) + update_changed(self.store)
        models = retrain_stale(self.store, self.relevance_index, now)
        return f"{papers} paper(s) vectorised, {models} reader model(s) retrained"

    def digests(self) -> None:
        self._record("digests", lambda: self._queue(None))

    def _queue(self, cadence: str | None) -> str:
        built = self.builder.build_due(self.clock(), cadence)
        for b in built:
            log.info("queued %s digest for %s", b.cadence, masked(b.recipient),
                     extra={"job": "digests", "recipient": masked(b.recipient), "cadence": b.cadence})
        return f"{len(built)} digest(s) queued"

    def deliver(self) -> None:
        self._record("deliver", self._deliver)

    def _deliver(self) -> str:
        with self._delivery_lock:
            report = self.sender.send_all(wait_for_retries=0)
        if report.sent or report.failed:
            log.info("sent %d message(s), %d failed, %d waiting", report.sent, report.failed, report.retrying,
                     extra={"job": "deliver"})
        for failure in report.errors:
            log.warning("message %s (%s) failed: %s", failure["id"], failure["channel"], failure["error"],
                        extra={"job": "deliver", "message_id": failure["id"], "channel": failure["channel"]})
        return f"{report.sent} sent, {report.failed} failed, {report.retrying} waiting"

    def prune(self) -> None:
        self._record("prune", self._prune)

    def _prune(self) -> str:
        report = prune(self.store, self.settings, self.clock())
        log.info("pruned %d payload(s), %d job run(s), %d webhook event id(s), %d unconfirmed subscription(s)",
                 report.payloads, report.job_runs, report.webhook_events, report.unconfirmed_subscriptions,
                 extra={"job": "prune"})
        return (f"{report.payloads} payload(s), {report.job_runs} job run(s), {report.webhook_events} event id(s), "
                f"{report.unconfirmed_subscriptions} unconfirmed subscription(s) pruned")

    def health(self) -> None:
        self._record("health", lambda: f"{queue_admin_alerts(self.store, self.settings, self.clock())} alert(s)")

    def run_once(self, sleep: Callable[[float], None] | None = None) -> None:
        """Every job once, in pipeline order (for cron and CI). ``sleep``: lets the watch pass wait
        to look twice at a file whose mtime is in the future, as no later pass will."""
        if self.fetcher is not None:
            self.fetch()
        self.watch(sleep)
        self.digests()
        self.health()
        self.deliver()

    def stop(self) -> None:
        self.sender.stopping.set()
        if self.fetcher is not None:
            self.fetcher.close()


def _schedule(bot: Bot, settings: Settings) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
    poll = settings.poll_seconds
    scheduler.add_job(bot.watch, IntervalTrigger(seconds=poll), id="watch", next_run_time=utcnow(),
                      misfire_grace_time=int(max(poll, 30)))
    # Every minute: a digest due at 08:00 local goes out in the minute after 08:00.
    scheduler.add_job(bot.digests, CronTrigger(second=5), id="digests", misfire_grace_time=120)
    scheduler.add_job(bot.deliver, IntervalTrigger(seconds=10), id="deliver", misfire_grace_time=60)
    scheduler.add_job(bot.relevance, IntervalTrigger(minutes=2), id="relevance", misfire_grace_time=600)
    scheduler.add_job(bot.health, IntervalTrigger(minutes=5), id="health", next_run_time=utcnow(),
                      misfire_grace_time=600)
    if bot.fetcher is not None:  # DIGESTBOT_FETCH_MINUTES=0: off
        minutes = settings.fetch_minutes
        scheduler.add_job(bot.fetch, IntervalTrigger(minutes=minutes), id="fetch", next_run_time=utcnow(),
                          misfire_grace_time=int(max(60 * minutes, 60)))
    # Daily, at a quiet hour (UTC): DIGESTBOT_RETENTION_DAYS.
    scheduler.add_job(bot.prune, CronTrigger(hour=3, minute=17), id="prune", misfire_grace_time=6 * 3600)
    return scheduler


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum, _frame) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run(parts: Parts, *, once: bool = False) -> int:
    """Lead (or wait to lead) and run the jobs until SIGTERM/SIGINT; returns the exit code."""
    store, settings = parts.store, parts.settings
    holder = f"run-{uuid.uuid4().hex[:12]}"
    stop = threading.Event()
    _stop_on_signals(stop)
    bot = Bot(parts)
    if once:
        if not leases.acquire(store, LEASE_NAME, holder, utcnow(), LEASE_TTL):
            log.error("another digestbot run leads; not running --once beside it")
            return 1
        try:
            bot.run_once(sleep=time.sleep)
        finally:
            bot.stop()
            leases.release(store, LEASE_NAME, holder)
        return 0

    scheduler: BackgroundScheduler | None = None
    announced_standby = False
    while not stop.is_set():
        leading = leases.acquire(store, LEASE_NAME, holder, utcnow(), LEASE_TTL)
        metrics.LEADER.set(1 if leading else 0)
        if leading and scheduler is None:
            log.info("leading as %s; watching %s every %gs", holder, settings.watch_dir, settings.poll_seconds)
            scheduler = _schedule(bot, settings)
            scheduler.start()
        elif not leading and scheduler is not None:
            log.warning("lost the lead (lease taken over): stopping jobs")
            scheduler.shutdown(wait=True)
            scheduler = None
        elif not leading and not announced_standby:
            log.info("another scheduler leads: waiting as a standby")
            announced_standby = True
        stop.wait(RENEW_EVERY)
    bot.stop()
    if scheduler is not None:
        scheduler.shutdown(wait=True)  # let running jobs finish; claimed rows are marked or released
        leases.release(store, LEASE_NAME, holder)
    metrics.LEADER.set(0)
    log.info("stopped")
    return 0


def work(parts: Parts) -> int:
    """Delivery only, beside one `digestbot run` (any number of these on PostgreSQL)."""
    stop = threading.Event()
    _stop_on_signals(stop)
    sender = parts.outbox_sender()
    log.info("delivering from the outbox as %s", sender.worker)
    while not stop.is_set():
        report = sender.send_all(wait_for_retries=0)
        if report.sent or report.failed:
            log.info("sent %d message(s), %d failed, %d waiting", report.sent, report.failed, report.retrying)
        stop.wait(2.0)
    log.info("stopped")
    return 0
