"""The command line: a thin entry point over the services. Human output uses rich; --json is stable."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from digestbot.errors import DigestbotError
from digestbot.services.ingest import FileResult, expand_paths, ingest_paths
from digestbot.services.status import paper_json, recent_papers, store_status
from digestbot.settings import Settings
from digestbot.store import connect, ensure_current, migrate

out = Console(highlight=False, soft_wrap=False)
err = Console(stderr=True, highlight=False)


class App:
    """What every command needs: the settings and, on first use, a checked database engine."""

    def __init__(self, debug: bool) -> None:
        self.debug = debug
        self.settings = Settings.load()

    @cached_property
    def raw_engine(self) -> Engine:
        return connect(self.settings.database_url)

    @cached_property
    def engine(self) -> Engine:
        ensure_current(self.raw_engine)
        return self.raw_engine


class DigestbotGroup(click.Group):
    """Turns digestbot's errors into one line on stderr and an exit code (tracebacks with --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DigestbotError as exc:
            if ctx.obj is not None and ctx.obj.debug:
                raise
            err.print(f"[red]error:[/] {exc}", markup=True, soft_wrap=True)
            ctx.exit(exc.exit_code)
        except OperationalError as exc:
            if ctx.obj is not None and ctx.obj.debug:
                raise
            first = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
            err.print(f"[red]error:[/] database: {first}", markup=True, soft_wrap=True)
            ctx.exit(1)


def emit_json(value) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group(cls=DigestbotGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """digestbot: keyword alerts and digests of new research papers."""
    ctx.obj = App(debug)


pass_app = click.make_pass_decorator(App)


@cli.command()
@pass_app
def init(app: App) -> None:
    """Create or upgrade the database schema (safe to run again)."""
    before, after = migrate(app.raw_engine)
    if before == after:
        out.print(f"schema is up to date (revision {after})")
    else:
        out.print(f"schema {'created' if before is None else 'upgraded from ' + before} at revision {after}")


STATUS_STYLE = {"ingested": "green", "skipped": "dim", "deferred": "yellow", "failed": "red"}


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def ingest(app: App, paths: tuple[Path, ...], as_json: bool) -> None:
    """Ingest dump files (folders: every file inside, by name). Exit 1 if any file failed."""
    engine = app.engine
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
            engine, files, now=datetime.now(UTC), settle_seconds=app.settings.settle_seconds, on_file=advance
        )
    if as_json:
        emit_json(report.as_json())
    else:
        table = Table("file", "status", "new", "updated", "unchanged", "note")
        for f in report.files:
            note = f.error or (f"{len(f.warnings)} warning(s): {f.warnings[0]}" if f.warnings else "")
            style = STATUS_STYLE[f.status]
            table.add_row(f.path, f"[{style}]{f.status}[/]", str(f.new), str(f.updated), str(f.unchanged), note)
        out.print(table)
        out.print(f"{report.new} new, {report.updated} updated, {report.unchanged} unchanged papers"
                  f" from {len(report.files)} file(s); {len(report.failed)} failed")
    for f in report.failed:
        if not as_json:
            err.print(f"[red]error:[/] {f.path}: {f.error}", soft_wrap=True)
    sys.exit(1 if report.failed else 0)


@cli.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), help="How many papers.")
@click.option("--json", "as_json", is_flag=True, help="Print the papers as JSON.")
@pass_app
def papers(app: App, limit: int, as_json: bool) -> None:
    """The newest papers, newest first."""
    with Session(app.engine) as session:
        found = recent_papers(session, limit)
        if as_json:
            emit_json([paper_json(p) for p in found])
            return
        table = Table("id", "title", "authors", "published", "upvotes", "first seen")
        for p in found:
            table.add_row(
                str(p.id), p.title, _or_dash(p.authors_count), _or_dash(p.published), _or_dash(p.upvotes),
                p.first_seen.strftime("%Y-%m-%d %H:%M"),
            )
        out.print(table)


def _or_dash(value) -> str:
    return "–" if value is None else str(value)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Papers and dump files in the store, the last ingest, and files that failed."""
    with Session(app.engine) as session:
        summary = store_status(session)
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


def main() -> None:
    cli(prog_name="digestbot")
