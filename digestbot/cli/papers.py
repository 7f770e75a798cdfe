"""Commands about the store and its papers: init, ingest, papers, status, search."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from digestbot.bootstrap import bootstrap
from digestbot.cli.base import App, capped, cli, emit_json, err, or_dash, out, pass_app, say_error
from digestbot.clock import utcnow
from digestbot.core.digest import author_names
from digestbot.core.query import parse_query
from digestbot.services.dump_files import expand_paths
from digestbot.services.ingest import FileResult, dump_limits, ingest_paths
from digestbot.services.search import search as search_papers
from digestbot.services.status import paper_json, recent_papers, store_status

STATUS_STYLE = {"ingested": "green", "skipped": "dim", "deferred": "yellow", "failed": "red"}


@cli.command()
@pass_app
def init(app: App) -> None:
    """Create or upgrade the database schema (safe to run again)."""
    parts = bootstrap(app.settings, check_schema=False)
    try:
        before, after = parts.store.migrate()
    finally:
        parts.close()
    if before == after:
        out.print(f"schema is up to date (revision {after})")
    else:
        out.print(f"schema {'created' if before is None else 'upgraded from ' + before} at revision {after}")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def ingest(app: App, paths: tuple[Path, ...], as_json: bool) -> None:
    """Ingest dump files (folders: every file inside, by name). Exit 1 if any file failed."""
    parts = app.parts
    files = list(expand_paths(paths))
    show_progress = not as_json and err.is_terminal and len(files) > 1
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, disable=not show_progress,
    ) as progress:
        task = progress.add_task("ingesting", total=len(files))

        def advance(result: FileResult) -> None:
            progress.update(task, advance=1, description=Path(result.path).name)

        report = ingest_paths(
            parts.store, files, now=utcnow(), settle_seconds=app.settings.settle_seconds,
            matcher=parts.matcher, limits=dump_limits(app.settings), sleep=time.sleep, on_file=advance,
        )
    if as_json:
        emit_json(report.as_json())
    else:
        table = Table("file", "status", "new", "updated", "unchanged", "matches", "note")
        for f in report.files:
            note = f.note or (f"{len(f.warnings)} warning(s): {f.warnings[0]}" if f.warnings else "")
            table.add_row(f.path, Text(f.status, style=STATUS_STYLE[f.status]), str(f.new), str(f.updated),
                          str(f.unchanged), str(f.matches), note)
        out.print(table)
        out.print(f"{report.new} new, {report.updated} updated, {report.unchanged} unchanged papers"
                  f" from {len(report.files)} file(s); {len(report.failed)} failed; {report.matches} match(es)")
        for f in report.failed:
            say_error(f"{f.path}: {f.note}")
    sys.exit(1 if report.failed else 0)


@cli.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), callback=capped,
              help="How many papers.")
@click.option("--json", "as_json", is_flag=True, help="Print the papers as JSON.")
@pass_app
def papers(app: App, limit: int, as_json: bool) -> None:
    """The newest papers, newest first."""
    found = recent_papers(app.parts.store, limit)
    if as_json:
        emit_json([paper_json(p, app.settings.paper_url) for p in found])
        return
    table = Table("id", "title", "authors", "published", "upvotes", "first seen")
    for p in found:
        names = author_names(tuple(p.authors or ()), p.authors_count) or None  # three names, else the count
        table.add_row(str(p.id), p.title, or_dash(names), or_dash(p.published), or_dash(p.upvotes),
                      p.first_seen.strftime("%Y-%m-%d %H:%M"))
    out.print(table)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Papers and dump files in the store, the last ingest, and files that failed."""
    summary = store_status(app.parts.store, utcnow())
    if as_json:
        emit_json(summary)
        return
    files = summary["dump_files"]
    out.print(f"papers: {summary['papers']}  (newest first seen {summary['newest_paper_seen'] or 'never'})")
    out.print(f"dump files: {files['ingested']} ingested, {files['failed']} failed")
    last = summary["last_ingest"]
    out.print("last ingest: never" if last is None else
              f"last ingest: {last['path']} at {last['at']} ({last['new']} new, {last['updated']} updated, "
              f"{last['unchanged']} unchanged)")
    if summary["failed_files"]:
        table = Table("failed file", "reason", "at", title="failed files")
        for f in summary["failed_files"]:
            table.add_row(f["path"], f["error"], f["at"])
        out.print(table)
    watch = summary["jobs"].get("watch")
    out.print("last watch pass: never" if watch is None else
              f"last watch pass: {watch['last_run']} ({watch['status']}: {watch['error'] or watch['summary']})")
    out.print("outbox: " + ", ".join(f"{n} {s}" for s, n in summary["outbox"].items()))
    if summary["next_digests"]:
        table = Table("next digest", "cadence", "recipient", title="next due digests")
        for d in summary["next_digests"]:
            table.add_row(d["at"], d["cadence"], d["recipient"])
        out.print(table)


@cli.command()
@click.argument("query")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), callback=capped,
              help="How many papers.")
@click.option("--json", "as_json", is_flag=True, help="Print the papers as JSON.")
@pass_app
def search(app: App, query: str, limit: int, as_json: bool) -> None:
    """Papers among those stored that QUERY matches, best first: try a query before subscribing."""
    node = parse_query(query)
    found = [paper_json(h.paper, app.settings.paper_url) | {"score": h.score}
             for h in search_papers(app.parts.store, node, limit)]
    if as_json:
        emit_json(found)
        return
    table = Table("id", "title", "score", "first seen")
    for p in found:
        table.add_row(str(p["id"]), p["title"], str(p["score"]), p["first_seen"][:10])
    out.print(table)
    out.print(f"{len(found)} paper(s)" + (" (use --limit for more)" if len(found) == limit else ""))
