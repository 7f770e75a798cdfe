"""Read-only views of the store: recent papers and the health summary behind `digestbot status`."""

from __future__ import annotations

from datetime import datetime

from digestbot.core.digest import LINK_TITLE_MAX, paper_link
from digestbot.services.health import next_digests
from digestbot.settings import Settings
from digestbot.store import Paper, Store


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def paper_json(paper: Paper, paper_url: str = Settings.paper_url) -> dict:
    """A paper as every --json output shows it (``paper_url``: DIGESTBOT_PAPER_URL, for ``url``)."""
    return {
        "id": paper.id, "title": paper.title, "abstract": paper.abstract,
        "authors_count": paper.authors_count, "upvotes": paper.upvotes, "published": _iso(paper.published),
        "first_seen": _iso(paper.first_seen), "last_seen": _iso(paper.last_seen),
        "arxiv_id": paper.arxiv_id, "authors": list(paper.authors or []),
        "url": paper_link(paper_url, paper.title[:LINK_TITLE_MAX + 1], paper.arxiv_id),
    }


def recent_papers(store: Store, limit: int) -> list[Paper]:
    """Newest first: by when digestbot first saw them, then by id (the order within a dump)."""
    with store.reading() as tx:
        return tx.papers.newest(limit)


def store_status(store: Store, now: datetime) -> dict:
    """Papers, dump files, jobs, the outbox and the next digests, as `digestbot status --json` shows them."""
    with store.reading() as tx:
        files_by_status = tx.papers.files_by_status()
        last = tx.papers.last_ingested_file()
        return {
            "papers": tx.papers.count(),
            "newest_paper_seen": _iso(tx.papers.newest_first_seen()),
            "dump_files": {"ingested": files_by_status.get("ingested", 0), "failed": files_by_status.get("failed", 0)},
            "last_ingest": None if last is None else {
                "path": last.path, "at": _iso(last.processed_at), "snapshot_date": _iso(last.snapshot_date),
                "new": last.new, "updated": last.updated, "unchanged": last.unchanged,
            },
            "failed_files": [{"path": f.path, "error": f.error, "at": _iso(f.processed_at)}
                             for f in tx.papers.failed_files()],
            "jobs": {
                run.job: {"last_run": _iso(run.last_finished_at), "status": run.last_status, "error": run.last_error,
                          "summary": run.summary}
                for run in tx.jobs.runs()
            },
            "outbox": tx.outbox.counts(),
            "next_digests": next_digests(tx, now),
        }
