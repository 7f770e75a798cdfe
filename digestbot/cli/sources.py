"""`digestbot fetch`: the real sources into the watch folder."""

from __future__ import annotations

from datetime import date

import click
from rich.text import Text

from digestbot.cli.base import App, cli, emit_json, out, pass_app
from digestbot.clock import utcnow
from digestbot.errors import UsageError
from digestbot.services.fetch import fetch_sources

STATUS_STYLE = {"written": "green", "unchanged": "dim", "failed": "red"}


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--date must be a day such as 2026-12-03, not {value!r}") from None


@cli.command()
@click.argument("sources", nargs=-1)
@click.option("--date", "day", metavar="YYYY-MM-DD", help="The day of hf-daily (default: today in UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def fetch(app: App, sources: tuple[str, ...], day: str | None, as_json: bool) -> None:
    """Fetch sources (default: DIGESTBOT_SOURCES) into the watch folder: hf-daily, arxiv:cs.CL+cs.LG.
    Exit 1 if any source failed; the others are still fetched."""
    report = fetch_sources(app.parts.store, app.settings, sources or None, day=_day(day), now=utcnow())
    if as_json:
        emit_json(report.as_json())
    else:
        for s in report.sources:
            said = s.path if s.status == "written" else s.error if s.status == "failed" else s.note
            count = f" ({s.papers} papers)" if s.status == "written" else ""
            out.print(Text.assemble((f"{s.status:9}", STATUS_STYLE[s.status]), f" {s.source}{count}: {said or ''}"))
    if report.failed:
        raise SystemExit(1)
