"""The command line: a thin entry point over the services. Human output uses rich; --json is stable."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from digestbot.clock import utcnow
from digestbot.core.query import parse_query
from digestbot.core.schedule import CADENCES, parse_schedule
from digestbot.errors import DigestbotError, NotFound, UsageError
from digestbot.services.delivery import OutboxSender, outbox_counts, outbox_rows, retry
from digestbot.services.digests import DigestBuilder
from digestbot.services import subscriptions
from digestbot.services.search import search as search_papers
from digestbot.services.dump_files import expand_paths
from digestbot.services.ingest import FileResult, dump_limits, ingest_paths
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.status import paper_json, recent_papers, store_status
from digestbot.settings import Settings
from digestbot.store import Store, connect, ensure_current, migrate

# markup=False: titles, queries and addresses are user data, never rich markup.
out = Console(highlight=False, soft_wrap=False, markup=False)
err = Console(stderr=True, highlight=False, markup=False)


def say_error(message: str, label: str = "error") -> None:
    """One line on stderr: a red label, then the message as plain text."""
    err.print(Text.assemble((f"{label}:", "red"), " ", message), soft_wrap=True)


ROWS_AT_MOST = 2**63 - 1


def _capped(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """A --limit as the database can take it: more rows than a 64-bit number counts is all of them."""
    return min(value, ROWS_AT_MOST)


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

    @cached_property
    def store(self) -> Store:
        return Store(self.engine)


class DigestbotGroup(click.Group):
    """Turns digestbot's errors into one line on stderr and an exit code (tracebacks with --debug)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DigestbotError as exc:
            if ctx.obj is not None and ctx.obj.debug:
                raise
            say_error(str(exc))
            ctx.exit(exc.exit_code)
        except OperationalError as exc:
            if ctx.obj is not None and ctx.obj.debug:
                raise
            first = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
            say_error(f"database: {first}")
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
    store = app.store
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
            store, files, now=datetime.now(UTC), settle_seconds=app.settings.settle_seconds,
            matcher=SubscriptionMatcher(), limits=dump_limits(app.settings), sleep=time.sleep, on_file=advance,
        )
    if as_json:
        emit_json(report.as_json())
    else:
        table = Table("file", "status", "new", "updated", "unchanged", "matches", "note")
        for f in report.files:
            note = f.note or (f"{len(f.warnings)} warning(s): {f.warnings[0]}" if f.warnings else "")
            style = STATUS_STYLE[f.status]
            table.add_row(f.path, Text(f.status, style=style), str(f.new), str(f.updated), str(f.unchanged),
                          str(f.matches), note)
        out.print(table)
        out.print(f"{report.new} new, {report.updated} updated, {report.unchanged} unchanged papers"
                  f" from {len(report.files)} file(s); {len(report.failed)} failed; {report.matches} match(es)")
    for f in report.failed:
        if not as_json:
            say_error(f"{f.path}: {f.note}")
    sys.exit(1 if report.failed else 0)


@cli.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), callback=_capped,
              help="How many papers.")
@click.option("--json", "as_json", is_flag=True, help="Print the papers as JSON.")
@pass_app
def papers(app: App, limit: int, as_json: bool) -> None:
    """The newest papers, newest first."""
    found = recent_papers(app.store, limit)
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
    summary = store_status(app.store, utcnow())
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
@click.argument("recipient")
@click.argument("query")
@click.option("--cadence", type=click.Choice(CADENCES), default="daily", show_default=True,
              help="instant: an alert per ingest; daily or weekly: a digest.")
@click.option("--at", "at", default="08:00", show_default=True, help="Local send time, HH:MM.")
@click.option("--day", default="mon", show_default=True, help="Weekday of a weekly digest: mon … sun.")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone, e.g. Europe/Berlin.")
@click.option("--name", default=None, help="A name to show instead of the query.")
@click.option("--backfill", "backfill_days", default=0, type=click.IntRange(min=0),
              help=f"Also match papers first seen in the last DAYS days (at most {subscriptions.MAX_BACKFILL_DAYS}).")
@click.option("--json", "as_json", is_flag=True, help="Print the subscription as JSON.")
@pass_app
def subscribe(app: App, recipient: str, query: str, cadence: str, at: str, day: str, tz: str, name: str | None,
              backfill_days: int, as_json: bool) -> None:
    """Subscribe RECIPIENT (an email, slack:#channel or slack-webhook:URL) to papers matching QUERY."""
    schedule = parse_schedule(cadence, at, day, tz)
    sub, backfilled = subscriptions.subscribe(
        app.store, recipient, query, schedule=schedule, name=name, backfill_days=backfill_days,
        private_webhooks=app.settings.allow_private_webhooks, now=datetime.now(UTC),
    )
    result = subscriptions.subscription_json(sub) | {"backfilled": backfilled}
    when = subscriptions.schedule_label(sub)
    if as_json:
        emit_json(result)
        return
    out.print(f"subscription {result['id']}: {result['recipient']} gets papers matching {query!r} {when}")
    if backfill_days:
        out.print(f"{backfilled} paper(s) from the last {backfill_days} day(s) matched already")


@cli.command()
@click.argument("subscription_id", required=False, type=int)
@click.option("--recipient", default=None, help="Unsubscribe every subscription of this recipient.")
@click.option("--json", "as_json", is_flag=True, help="Print what was unsubscribed as JSON.")
@pass_app
def unsubscribe(app: App, subscription_id: int | None, recipient: str | None, as_json: bool) -> None:
    """Stop a subscription by ID, or all of a recipient's with --recipient."""
    if (subscription_id is None) == (recipient is None):
        raise UsageError("give a subscription ID or --recipient, not both")
    now = datetime.now(UTC)
    if recipient is not None:
        ended = subscriptions.unsubscribe_recipient(app.store, recipient, now)
    else:
        ended = [subscriptions.unsubscribe(app.store, subscription_id, now)]
    ids = [sub.id for sub in ended]
    if as_json:
        emit_json({"unsubscribed": ids})
    else:
        out.print(f"unsubscribed: {', '.join(map(str, ids))}")


@cli.command("subscriptions")
@click.option("--recipient", default=None, help="Only this recipient's.")
@click.option("--all", "include_inactive", is_flag=True, help="Include ended subscriptions.")
@click.option("--json", "as_json", is_flag=True, help="Print the subscriptions as JSON.")
@pass_app
def list_subscriptions(app: App, recipient: str | None, include_inactive: bool, as_json: bool) -> None:
    """The active subscriptions."""
    found = [subscriptions.subscription_json(s)
             for s in subscriptions.list_subscriptions(app.store, recipient, include_inactive)]
    if as_json:
        emit_json(found)
        return
    table = Table("id", "recipient", "query", "cadence", "when", "active")
    for s in found:
        when = "" if s["cadence"] == "instant" else (s["at"] + (f" {s['day']}" if s["cadence"] == "weekly" else ""))
        table.add_row(str(s["id"]), s["recipient"], s["name"] or s["query"], s["cadence"], f"{when} {s['tz']}",
                      "yes" if s["active"] else "no")
    out.print(table)


@cli.command("import-subscriptions")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def import_subscriptions(app: App, csv_file: Path, as_json: bool) -> None:
    """Import subscriptions from a CSV file: recipient,query[,cadence,at,day,tz,name]. Exit 1 if a row failed."""
    try:
        text = csv_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{csv_file} is not UTF-8 text") from None
    report = subscriptions.import_subscriptions(app.store, text, datetime.now(UTC),
                                                private_webhooks=app.settings.allow_private_webhooks)
    if as_json:
        emit_json(report.as_json())
    else:
        out.print(f"imported {report.imported} subscription(s); {len(report.errors)} row(s) refused")
        for line, reason in report.errors:
            err.print(f"{csv_file}:{line}: {reason}", soft_wrap=True)
    sys.exit(1 if report.errors else 0)


@cli.command()
@click.argument("query")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1), callback=_capped,
              help="How many papers.")
@click.option("--json", "as_json", is_flag=True, help="Print the papers as JSON.")
@pass_app
def search(app: App, query: str, limit: int, as_json: bool) -> None:
    """Papers among those stored that QUERY matches, best first: try a query before subscribing."""
    node = parse_query(query)
    found = [paper_json(h.paper) | {"score": h.score} for h in search_papers(app.store, node, limit)]
    if as_json:
        emit_json(found)
        return
    table = Table("id", "title", "score", "first seen")
    for p in found:
        table.add_row(str(p["id"]), p["title"], str(p["score"]), p["first_seen"][:10])
    out.print(table)
    out.print(f"{len(found)} paper(s)" + (" (use --limit for more)" if len(found) == limit else ""))


# --now is a time digests are built at: schedules step a week either way from it, and datetime
# ends at the years 1 and 9999. These years leave room for that and cover any real use.
NOW_YEARS = (1970, 9998)


def _when(value: str | None) -> datetime:
    if value is None:
        return utcnow()
    try:
        parsed = datetime.fromisoformat(value)
        parsed = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError:
        raise UsageError(f"--now must be an ISO 8601 time such as 2026-11-23T08:00:00+01:00, not {value!r}") from None
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the year 1 in UTC
        parsed = None
    if parsed is None or not NOW_YEARS[0] <= parsed.year <= NOW_YEARS[1]:
        raise UsageError(f"--now must be a time in the years {NOW_YEARS[0]} to {NOW_YEARS[1]}, not {value!r}")
    return parsed


@cli.command()
@click.option("--cadence", type=click.Choice(CADENCES), default=None, help="Only digests of this cadence.")
@click.option("--recipient", default=None, help="Only this recipient's digests.")
@click.option("--now", "now_text", default=None, help="Build what is due at this ISO 8601 time (default: now).")
@click.option("--dry-run", is_flag=True, help="Show what would be queued without queuing it.")
@click.option("--json", "as_json", is_flag=True, help="Print the digests as JSON.")
@pass_app
def digest(app: App, cadence: str | None, recipient: str | None, now_text: str | None, dry_run: bool,
           as_json: bool) -> None:
    """Build every digest due now (or at --now) into the outbox."""
    built = DigestBuilder(app.store, app.settings).build_due(_when(now_text), cadence, recipient, dry_run)
    if as_json:
        emit_json({"dry_run": dry_run, "digests": [b.as_json() for b in built]})
        return
    verb = "would queue" if dry_run else "queued"
    for b in built:
        out.print(f"{verb} {b.cadence} digest for {b.recipient}: {b.subject} ({b.messages} message(s))",
)
    out.print(f"{len(built)} digest(s) {verb}" + ("" if dry_run or not built else "; deliver with 'digestbot send'"))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def send(app: App, as_json: bool) -> None:
    """Deliver what waits in the outbox, retrying transient errors. Exit 1 if a message failed."""
    from digestbot.channels import channels_for  # the SDKs load only when something is sent

    sender = OutboxSender(app.store, channels_for(app.settings), app.settings)
    report = sender.send_all()
    if as_json:
        emit_json(report.as_json())
    else:
        out.print(f"sent {report.sent}, retrying {report.retrying}, failed {report.failed}")
        for failure in report.errors:
            say_error(f"outbox {failure['id']} ({failure['channel']}): {failure['error']}", "failed")
        if app.settings.email_channel == "file" or app.settings.slack_channel == "file":
            out.print(f"file backend: messages are in {app.settings.outbox_dir}/")
    sys.exit(1 if report.failed else 0)


def _outbox_json(row) -> dict:
    return {"id": row.id, "recipient": row.recipient_id, "channel": row.channel, "cadence": row.kind,
            "subject": row.subject, "part": row.part, "status": row.status, "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at.isoformat(), "last_error": row.last_error,
            "sent_at": row.sent_at.isoformat() if row.sent_at else None, "provider_id": row.provider_id}


@cli.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(["pending", "sending", "sent", "failed"]), default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), callback=_capped)
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
@click.pass_context
def outbox(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
    """Messages waiting, sent or failed, newest first ('outbox retry ID' puts a failed one back)."""
    if ctx.invoked_subcommand is not None:
        return
    app: App = ctx.obj
    rows = [_outbox_json(r) for r in outbox_rows(app.store, status, limit)]
    counts = outbox_counts(app.store)
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "channel", "cadence", "subject", "status", "attempts", "last error")
    for r in rows:
        table.add_row(str(r["id"]), r["channel"], r["cadence"], r["subject"], r["status"], str(r["attempts"]),
                      r["last_error"] or "")
    out.print(table)
    out.print(", ".join(f"{n} {s}" for s, n in counts.items()))


@outbox.command("retry")
@click.argument("message_id", type=int)
@pass_app
def outbox_retry(app: App, message_id: int) -> None:
    """Put failed message MESSAGE_ID back in line."""
    retry(app.store, message_id, utcnow())
    out.print(f"outbox message {message_id} is pending again; deliver with 'digestbot send'")


@cli.command()
@click.argument("recipient")
@click.option("--format", "fmt", type=click.Choice(["html", "text", "slack"]), default=None,
              help="Default: html for email recipients, slack for Slack ones.")
@click.option("--cadence", type=click.Choice(CADENCES), default=None, help="Default: the first with papers.")
@click.option("--now", "now_text", default=None, help="Render as at this ISO 8601 time.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
@pass_app
def preview(app: App, recipient: str, fmt: str | None, cadence: str | None, now_text: str | None,
            output: Path | None) -> None:
    """Render what RECIPIENT would get from its pending matches, without queuing anything."""
    found = DigestBuilder(app.store, app.settings).preview(recipient, _when(now_text), cadence)
    if found is None:
        raise NotFound(f"nothing to preview: {recipient} has no papers waiting for a digest")
    row, _, payloads = found
    fmt = fmt or ("html" if row.kind == "email" else "slack")
    if fmt == "slack":
        if row.kind == "email":
            raise UsageError("--format slack is for Slack recipients; use html or text")
        rendered = json.dumps(payloads, indent=2, ensure_ascii=False)
    else:
        if row.kind != "email":
            raise UsageError(f"--format {fmt} is for email recipients; use slack")
        rendered = payloads[0][fmt]
    if output is None:
        click.echo(rendered)
    else:
        output.write_text(rendered, encoding="utf-8")
        out.print(f"wrote {output}")


def _log_to_stderr(debug: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z")
    # Their debug lines carry what is sent: SQL parameters and request bodies hold messages,
    # and messages hold the tokens of their links (and webhook URLs, which are secrets).
    for noisy in ("alembic", "slack_sdk", "urllib3", "sqlalchemy", "python_http_client", "sendgrid"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "Task queue depth is N": requests waited for a free thread, which is what a queue is for.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # "skipped: maximum number of running instances reached" is max_instances=1 doing its job.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)


@cli.command()
@click.option("--once", is_flag=True, help="Run every job once and exit (for cron and CI).")
@pass_app
def run(app: App, once: bool) -> None:
    """Watch the dump folder, send alerts and digests on time, deliver; until SIGTERM or Ctrl-C."""
    from digestbot import runner

    _log_to_stderr(app.debug)
    sys.exit(runner.run(app.engine, app.settings, once=once))


@cli.command()
@pass_app
def worker(app: App) -> None:
    """Deliver from the outbox only (run any number beside one 'digestbot run' on PostgreSQL)."""
    from digestbot import runner

    _log_to_stderr(app.debug)
    sys.exit(runner.work(app.engine, app.settings))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Requests served at once.")
@pass_app
def serve(app: App, host: str, port: int, threads: int) -> None:
    """Serve the web pages: subscribe, confirm, manage, unsubscribe, /slack/commands, /sendgrid/events."""
    import waitress

    from digestbot.web import create_app

    _log_to_stderr(app.debug)
    web = create_app(app.settings, app.engine)
    logging.getLogger("digestbot").info("serving on http://%s:%d (links point at %s)", host, port,
                                        app.settings.base_url)
    waitress.serve(web, host=host, port=port, threads=threads, ident="digestbot")


def main() -> None:
    cli(prog_name="digestbot")
