"""The scheduler's record of its jobs (``job_runs``): when each last ran and how it went."""

from __future__ import annotations

from datetime import datetime

from digestbot.store import Store


def record_run(store: Store, job: str, started: datetime, finished: datetime, status: str, error: str | None,
               summary: str) -> None:
    """Keep how the latest run of ``job`` went (``status``: ok | failed; ``summary``: one line)."""
    with store.transaction() as tx:
        tx.jobs.record_run(job, started, finished, status, error, summary)
