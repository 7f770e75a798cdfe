"""What every command shares: the group, its one-line errors, the parts, and the output helpers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cached_property

import click
from rich.console import Console
from rich.text import Text

from digestbot.bootstrap import Parts, bootstrap
from digestbot.clock import utcnow
from digestbot.errors import DigestbotError, UsageError
from digestbot.settings import Settings

# markup=False: titles, queries and addresses are user data, never rich markup.
out = Console(highlight=False, soft_wrap=False, markup=False)
err = Console(stderr=True, highlight=False, markup=False)


def say_error(message: str, label: str = "error") -> None:
    """One line on stderr: a red label, then the message as plain text."""
    err.print(Text.assemble((f"{label}:", "red"), " ", message), soft_wrap=True)


def emit_json(value) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


class App:
    """What every command needs: the settings, and on first use the parts (on a current schema)."""

    def __init__(self, debug: bool) -> None:
        self.debug = debug

    @cached_property
    def settings(self) -> Settings:
        """Loaded on first use (so that `digestbot doctor` can report settings that do not parse)."""
        return Settings.load()

    @cached_property
    def parts(self) -> Parts:
        return bootstrap(self.settings)


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


@click.group(cls=DigestbotGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """digestbot: keyword alerts and digests of new research papers."""
    ctx.obj = App(debug)


pass_app = click.make_pass_decorator(App)

ROWS_AT_MOST = 2**63 - 1


def capped(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """A --limit as the database can take it: more rows than a 64-bit number counts is all of them."""
    return min(value, ROWS_AT_MOST)


def or_dash(value) -> str:
    return "–" if value is None else str(value)


# --now is a time digests are built at: schedules step a week either way from it, and datetime
# ends at the years 1 and 9999. These years leave room for that and cover any real use.
NOW_YEARS = (1970, 9998)


def when(value: str | None) -> datetime:
    """A --now option: the time it names, in UTC (default: the real time)."""
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
