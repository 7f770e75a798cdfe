"""Every Prometheus metric digestbot exposes, in one place (prometheus_client, its default registry).

Counters and the histogram move where the work happens (the services' and channels' edges:
ingest, the digest pass, delivery, webhooks, the runner's jobs, the web's requests). The gauges
that describe the database (outbox depth, seconds since the last ingest and fetch) are read
from it when /metrics is scraped, by ``DatabaseCollector``, so every process shows the same.

Each process has its own counters: `serve` shows them at its own /metrics, `run` and `worker`
on DIGESTBOT_METRICS_PORT (a port per process; Prometheus sums across them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from digestbot.clock import Clock, utcnow
from digestbot.store import Store

DUMP_FILES = Counter("digestbot_dump_files", "Dump files looked at, by outcome", ["status"])
PAPERS = Counter("digestbot_papers", "Papers read from dumps, by what they were to the store", ["kind"])
MATCHES = Counter("digestbot_matches", "(subscription, paper) matches made by ingests")
DIGESTS = Counter("digestbot_digests_built", "Digests built and queued, by cadence", ["cadence"])
MESSAGES = Counter("digestbot_messages", "Delivery attempts by channel and outcome (sent, retrying, failed)",
                   ["channel", "outcome"])
PROVIDER_LATENCY = Histogram("digestbot_provider_latency_seconds", "Time a provider took to answer a send",
                             ["channel"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
JOB_RUNS = Counter("digestbot_job_runs", "Scheduler job runs, by job", ["job"])
JOB_FAILURES = Counter("digestbot_job_failures", "Scheduler job runs that failed, by job", ["job"])
LEADER = Gauge("digestbot_leader", "1 while this process leads the scheduler, else 0")
WEBHOOK_EVENTS = Counter("digestbot_webhook_events", "Webhook events received, by source and type",
                         ["source", "type"])
WEB_REQUESTS = Counter("digestbot_web_requests", "Web requests by route pattern and status", ["route", "status"])

# SendGrid's event types (others, and malformed events, count as "other": labels stay few).
SENDGRID_EVENTS = frozenset({"processed", "dropped", "delivered", "deferred", "bounce", "open", "click",
                             "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe"})
OUTBOX_STATUSES = ("pending", "sending", "sent", "failed")


class DatabaseCollector(Collector):
    """The gauges read from the database at scrape time (the store bound last; none before)."""

    def __init__(self) -> None:
        self.store: Store | None = None
        self.clock: Clock = utcnow
        self._lock = threading.Lock()

    def bind(self, store: Store, clock: Clock = utcnow) -> None:
        with self._lock:
            self.store, self.clock = store, clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            store, clock = self.store, self.clock
        if store is None:
            return
        depth = GaugeMetricFamily("digestbot_outbox_messages", "Outbox messages by status", labels=["status"])
        up = GaugeMetricFamily("digestbot_database_up", "1 when the database answered this scrape")
        try:
            with store.reading() as tx:
                counts = tx.outbox.counts()
                last_file = tx.papers.last_ingested_file()
                last_ingest = last_file.processed_at if last_file is not None else None
                last_fetch = tx.jobs.last_ok("fetch")
        except Exception:  # a scrape must answer even when the database does not
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for status in OUTBOX_STATUSES:
            depth.add_metric([status], counts.get(status, 0))
        yield depth
        now = clock()
        for name, last, what in (("ingest", last_ingest, "dump file ingested"),
                                 ("fetch", last_fetch, "successful fetch job (absent before the first)")):
            if last is not None:
                yield GaugeMetricFamily(f"digestbot_seconds_since_last_{name}", f"Seconds since the last {what}",
                                        value=_seconds(now, last))


def _seconds(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


DATABASE = DatabaseCollector()
REGISTRY.register(DATABASE)
LEADER.set(0)


def exposition() -> tuple[bytes, str]:
    """The text format of every metric, and its content type: what /metrics answers."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def count_ingest(files) -> None:
    """An ingest report's files (each with ``status``, ``new``, ``updated``, ``unchanged``, ``matches``)."""
    for f in files:
        DUMP_FILES.labels(f.status).inc()
        if f.status == "ingested":
            PAPERS.labels("new").inc(f.new)
            PAPERS.labels("updated").inc(f.updated)
            PAPERS.labels("unchanged").inc(f.unchanged)
            MATCHES.inc(f.matches)
