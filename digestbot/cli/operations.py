"""Commands for the operator: doctor (is everything set up right?), prune (retention), backup."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.text import Text

from digestbot.bootstrap import bootstrap
from digestbot.cli.base import App, cli, emit_json, out, pass_app
from digestbot.clock import utcnow
from digestbot.errors import ConfigError
from digestbot.services.doctor import run_checks, settings_failed
from digestbot.services.retention import prune as prune_old
from digestbot.services.backup import backup as backup_database


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@pass_app
def doctor(app: App, as_json: bool) -> None:
    """Check the settings, database, folders, providers, base URL and clock; exit 1 if one fails."""
    try:
        checks = run_checks(app.settings)
    except ConfigError as exc:
        checks = [settings_failed(str(exc))]
    ok = all(c.ok for c in checks)
    if as_json:
        emit_json({"ok": ok, "checks": [c.as_json() for c in checks]})
    else:
        for c in checks:
            line = Text.assemble(("✓" if c.ok else "✗", "green" if c.ok else "red"), f" {c.name}: {c.detail}")
            if c.fix:
                line.append(f"\n    fix: {c.fix}")
            out.print(line, soft_wrap=True)
        out.print("everything looks right" if ok else f"{sum(not c.ok for c in checks)} problem(s)")
    sys.exit(0 if ok else 1)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Count what would be pruned, prune nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@pass_app
def prune(app: App, dry_run: bool, as_json: bool) -> None:
    """Prune what is older than DIGESTBOT_RETENTION_DAYS (the bot does it daily)."""
    report = prune_old(app.parts.store, app.settings, utcnow(), dry_run=dry_run)
    if as_json:
        emit_json(report.as_json())
        return
    verb = "would prune" if dry_run else "pruned"
    out.print(f"{verb}, older than {report.cutoff}: {report.payloads} sent message payload(s), "
              f"{report.job_runs} job run(s), {report.webhook_events} webhook event id(s), "
              f"{report.unconfirmed_subscriptions} unconfirmed subscription(s)", soft_wrap=True)


@cli.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def backup(app: App, path: Path) -> None:
    """Copy the SQLite database to PATH, safely while the bot runs (PostgreSQL: use pg_dump)."""
    parts = bootstrap(app.settings, check_schema=False)
    try:
        size = backup_database(parts.store, path)
    finally:
        parts.close()
    out.print(f"backed up to {path} ({size:,} bytes)")
