"""Commands about what is sent: digest, send, outbox (and outbox retry), preview."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from digestbot.cli.base import App, capped, cli, emit_json, err, out, pass_app, say_error, when
from digestbot.clock import utcnow
from digestbot.core.recipients import shown
from digestbot.core.schedule import CADENCES
from digestbot.errors import NotFound, UsageError
from digestbot.services.delivery import outbox_counts, outbox_rows, retry


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
    builder, now = app.parts.digests, when(now_text)
    # On stderr and only on a terminal: the output (and --json) stays what it was.
    with Progress(TextColumn("building digests"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task("digests", total=builder.count_due(now, cadence) if err.is_terminal else None)
        built = list(builder.build_due_pages(now, cadence, recipient, dry_run,
                                             progress=lambda done: progress.advance(task, done)))
    if as_json:
        emit_json({"dry_run": dry_run, "digests": [b.as_json() | {"recipient": shown(b.recipient)} for b in built]})
        return
    verb = "would queue" if dry_run else "queued"
    for b in built:
        out.print(f"{verb} {b.cadence} digest for {shown(b.recipient)}: {b.subject} ({b.messages} message(s))")
    out.print(f"{len(built)} digest(s) {verb}" + ("" if dry_run or not built else "; deliver with 'digestbot send'"))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def send(app: App, as_json: bool) -> None:
    """Deliver what waits in the outbox, retrying transient errors. Exit 1 if a message failed."""
    report = app.parts.outbox_sender().send_all()
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
    # "cadence": the name this key had before the column became ``kind`` (it holds notices and alerts too).
    return {"id": row.id, "recipient": row.recipient_id, "channel": row.channel, "cadence": row.kind,
            "subject": row.subject, "part": row.part, "status": row.status, "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at.isoformat(), "last_error": row.last_error,
            "sent_at": row.sent_at.isoformat() if row.sent_at else None, "provider_id": row.provider_id}


@cli.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(["pending", "sending", "sent", "failed"]), default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), callback=capped)
@click.option("--json", "as_json", is_flag=True, help="Print the messages as JSON.")
@click.pass_context
def outbox(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
    """Messages waiting, sent or failed, newest first ('outbox retry ID' puts a failed one back)."""
    if ctx.invoked_subcommand is not None:
        return
    store = ctx.obj.parts.store
    rows = [_outbox_json(r) for r in outbox_rows(store, status, limit)]
    if as_json:
        emit_json(rows)
        return
    table = Table("id", "channel", "cadence", "subject", "status", "attempts", "last error")
    for r in rows:
        table.add_row(str(r["id"]), r["channel"], r["cadence"], r["subject"], r["status"], str(r["attempts"]),
                      r["last_error"] or "")
    out.print(table)
    out.print(", ".join(f"{n} {s}" for s, n in outbox_counts(store).items()))


@outbox.command("retry")
@click.argument("message_id", type=int)
@pass_app
def outbox_retry(app: App, message_id: int) -> None:
    """Put failed message MESSAGE_ID back in line."""
    retry(app.parts.store, message_id, utcnow())
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
    found = app.parts.digests.preview(recipient, when(now_text), cadence)
    if found is None:
        raise NotFound(f"nothing to preview: {shown(recipient)} has no papers waiting for a digest")
    row, _, payloads = found
    fmt = fmt or ("html" if row.kind == "email" else "slack")
    if fmt == "slack":
        if row.kind == "email":
            raise UsageError("--format slack is for Slack recipients; use html or text")
        if row.kind == "slack-webhook":  # its channel is the webhook's URL, a credential
            payloads = [p | {"channel": shown(f"slack-webhook:{p['channel']}")} for p in payloads]
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
