"""Read-only views of the store: recent papers and the health summary behind `digestbot status`."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digestbot.services.delivery import outbox_counts
from digestbot.services.health import next_digests
from digestbot.store import Store
from digestbot.store.models import DumpFile, JobRun, Paper


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def paper_json(paper: Paper) -> dict:
    return {
        "id": paper.id, "title": paper.title, "abstract": paper.abstract,
        "authors_count": paper.authors_count, "upvotes": paper.upvotes, "published": _iso(paper.published),
        "first_seen": _iso(paper.first_seen), "last_seen": _iso(paper.last_seen),
    }


def recent_papers(store: Store, limit: int) -> list[Paper]:
    """Newest first: by when digestbot first saw them, then by id (the order within a dump)."""
    with store.reading() as tx:
        return tx.papers.newest(limit)


def store_status(session: Session, now: datetime | None = None) -> dict:
    files_by_status = dict(session.execute(select(DumpFile.status, func.count()).group_by(DumpFile.status)).all())
    last = session.scalar(
        select(DumpFile).where(DumpFile.status == "ingested").order_by(DumpFile.processed_at.desc(), DumpFile.id.desc()).limit(1)
    )
    failed = session.scalars(
        select(DumpFile).where(DumpFile.status == "failed").order_by(DumpFile.processed_at.desc())
    )
    newest: datetime | None = session.scalar(select(func.max(Paper.first_seen)))
    return {
        "papers": session.scalar(select(func.count()).select_from(Paper)) or 0,
        "newest_paper_seen": _iso(newest),
        "dump_files": {"ingested": files_by_status.get("ingested", 0), "failed": files_by_status.get("failed", 0)},
        "last_ingest": None if last is None else {
            "path": last.path, "at": _iso(last.processed_at), "snapshot_date": _iso(last.snapshot_date),
            "new": last.new, "updated": last.updated, "unchanged": last.unchanged,
        },
        "failed_files": [{"path": f.path, "error": f.error, "at": _iso(f.processed_at)} for f in failed],
        "jobs": {
            run.job: {"last_run": _iso(run.last_finished_at), "status": run.last_status, "error": run.last_error,
                      "summary": run.summary}
            for run in session.scalars(select(JobRun).order_by(JobRun.job))
        },
        "outbox": outbox_counts(session),
        "next_digests": next_digests(session, now or datetime.now(UTC)),
    }
