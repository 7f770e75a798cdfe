"""Retention: what digestbot keeps only for a while (DIGESTBOT_RETENTION_DAYS), pruned daily.

Pruned: the payloads of messages sent before the cut-off (about 25 KB each; the narrow outbox row
stays, for the operator's history), records of jobs that have not run since, webhook event ids
(kept only to recognise a provider's retry), and subscriptions never confirmed whose link has
expired (marked deleted: a subscription is never removed, see ``digestbot.store.subscriptions``).
Never pruned: digest items and matches, which are what keeps a paper from being sent twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from digestbot.core.tokens import TIMED
from digestbot.settings import Settings
from digestbot.store import Store

BATCH = 5_000  # rows a transaction: each stays short beside the running bot


@dataclass
class PruneReport:
    cutoff: str
    dry_run: bool
    payloads: int = 0  # of sent messages
    job_runs: int = 0
    webhook_events: int = 0
    unconfirmed_subscriptions: int = 0

    def as_json(self) -> dict:
        return asdict(self)


def prune(store: Store, settings: Settings, now: datetime, *, dry_run: bool = False) -> PruneReport:
    """Prune what is older than DIGESTBOT_RETENTION_DAYS (or count it, with ``dry_run``)."""
    cutoff = now - timedelta(days=settings.retention_days)
    # A confirmation link stops working after its lifetime: the subscription can never be confirmed.
    unconfirmed = now - timedelta(seconds=TIMED["confirm"])
    report = PruneReport(cutoff.isoformat(), dry_run)
    if dry_run:
        with store.reading() as tx:
            report.payloads = tx.outbox.count_sent_payloads(cutoff)
            report.job_runs = tx.jobs.forget_runs_before(cutoff, dry_run=True)
            report.webhook_events = tx.events.count_older(cutoff)
            report.unconfirmed_subscriptions = len(tx.subscriptions.unconfirmed_before(unconfirmed, limit=10**9))
        return report
    while True:
        with store.transaction() as tx:
            dropped = tx.outbox.drop_sent_payloads(cutoff, BATCH)
        report.payloads += dropped
        if dropped < BATCH:
            break
    while True:
        with store.transaction() as tx:
            forgotten = tx.events.forget_older(cutoff, BATCH)
        report.webhook_events += forgotten
        if forgotten < BATCH:
            break
    with store.transaction() as tx:
        report.job_runs = tx.jobs.forget_runs_before(cutoff)
    while True:
        with store.transaction() as tx:
            subs = tx.subscriptions.unconfirmed_before(unconfirmed, BATCH)
            for sub in subs:
                sub.deleted_at = sub.updated_at = now  # through the ORM: matchers see it (inactive already)
        report.unconfirmed_subscriptions += len(subs)
        if len(subs) < BATCH:
            break
    return report
