"""The Jobs repository: job runs and leases."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update

from digestbot.store.db import insert_ignoring_duplicates
from digestbot.store.models import JobRun, Lease
from digestbot.store.repository import Repository

EXPIRED = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


class Jobs(Repository):
    """SQL for job runs and leases."""

    # ---- job runs ----

    def record_run(self, job: str, started: datetime, finished: datetime, status: str, error: str | None,
                   summary: str) -> None:
        """How the latest run of ``job`` went (one row per job, replaced)."""
        row = self.session.get(JobRun, job)
        if row is None:
            row = JobRun(job=job)
            self.session.add(row)
        row.last_started_at, row.last_finished_at = started, finished
        row.last_status, row.last_error, row.summary = status, error, summary

    def runs(self) -> list[JobRun]:
        """The latest run of each job, by job name."""
        return list(self.session.scalars(select(JobRun).order_by(JobRun.job)))

    def forget_runs_before(self, before: datetime, *, dry_run: bool = False) -> int:
        """Delete the records of jobs that have not run since ``before`` (no longer scheduled); how many."""
        old = or_(JobRun.last_started_at < before, JobRun.last_started_at.is_(None))
        if dry_run:
            return self.session.scalar(select(func.count()).select_from(JobRun).where(old)) or 0
        return self.session.execute(delete(JobRun).where(old)).rowcount or 0

    def last_ok(self, job: str) -> datetime | None:
        """When ``job`` last finished well, if its latest run did (job_runs keeps only the latest)."""
        return self.session.scalar(select(JobRun.last_finished_at).where(JobRun.job == job, JobRun.last_status == "ok"))

    # ---- leases ----

    def take_lease(self, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take or renew the lease ``name`` for ``holder`` until ``now + ttl``; False if another holds it.

        One conditional UPDATE (ours, or expired), else the first INSERT: two processes can never
        both believe they hold it. A concurrent INSERT of the same name waits for the other's
        commit and then does nothing.
        """
        taken = self.session.execute(
            update(Lease)
            .where(Lease.name == name, or_(Lease.holder == holder, Lease.expires_at < now))
            .values(holder=holder, expires_at=now + ttl)
        ).rowcount
        if taken:
            return True
        created = insert_ignoring_duplicates(self.dialect, Lease).values(name=name, holder=holder, expires_at=now + ttl)
        # RETURNING, not rowcount: psycopg reports -1 for an INSERT … ON CONFLICT.
        return self.session.scalar(created.returning(Lease.name)) is not None

    def release_lease(self, name: str, holder: str) -> None:
        """Expire the lease now, if ``holder`` holds it."""
        self.session.execute(
            update(Lease).where(Lease.name == name, Lease.holder == holder).values(expires_at=EXPIRED))

    def lease_holder(self, name: str, now: datetime) -> str | None:
        """Who holds an unexpired lease ``name``."""
        lease = self.session.get(Lease, name)
        return lease.holder if lease is not None and lease.expires_at >= now else None
