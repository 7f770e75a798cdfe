"""Commands about subscriptions: subscribe, unsubscribe, subscriptions, import-subscriptions."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from digestbot.cli.base import App, cli, emit_json, err, out, pass_app
from digestbot.clock import utcnow
from digestbot.core.schedule import CADENCES, parse_schedule
from digestbot.errors import UsageError
from digestbot.services import subscriptions
from digestbot.services.likes import default_top


@cli.command()
@click.argument("recipient")
@click.argument("query", required=False, default="")
@click.option("--like", "likes", multiple=True, metavar="PAPER",
              help="A stored paper's title: send papers like it (repeat for more examples; QUERY then optional).")
@click.option("--like-top", "like_top", type=int, default=None,
              help="With --like: the best K papers of each digest window (default DIGESTBOT_LIKE_TOP_PER_WEEK a week).")
@click.option("--like-threshold", "like_threshold", type=float, default=None,
              help="With --like: also send any paper scoring at least this (0-1; default DIGESTBOT_LIKE_THRESHOLD).")
@click.option("--cadence", type=click.Choice(CADENCES), default="daily", show_default=True,
              help="instant: an alert per ingest; daily or weekly: a digest.")
@click.option("--at", "at", default="08:00", show_default=True, help="Local send time, HH:MM.")
@click.option("--day", default="mon", show_default=True, help="Weekday of a weekly digest: mon … sun.")
@click.option("--tz", default="UTC", show_default=True, help="IANA time zone, e.g. Europe/Berlin.")
@click.option("--name", default=None, help="A name to show instead of the query.")
@click.option("--backfill", "backfill_days", default=0, type=click.IntRange(min=0),
              help=f"Also match papers first seen in the last DAYS days (at most {subscriptions.MAX_BACKFILL_DAYS}).")
@click.option("--top", "top", default=None, type=click.IntRange(min=1, max=subscriptions.MAX_TOP), metavar="N",
              help="Keep each digest to the N most upvoted papers of its window ('*' --top 10: the week's top 10).")
@click.option("--json", "as_json", is_flag=True, help="Print the subscription as JSON.")
@pass_app
def subscribe(app: App, recipient: str, query: str, likes: tuple[str, ...], like_top: int | None,
              like_threshold: float | None, cadence: str, at: str, day: str, tz: str, name: str | None,
              backfill_days: int, top: int | None, as_json: bool) -> None:
    """Subscribe RECIPIENT (an email, slack:#channel or slack-webhook:URL) to papers matching QUERY,
    or (with --like) to papers like the examples (among those matching QUERY, if given)."""
    schedule = parse_schedule(cadence, at, day, tz)
    if likes:
        like_top = like_top if like_top is not None else default_top(schedule.cadence, app.settings.like_top_per_week)
        like_threshold = like_threshold if like_threshold is not None else app.settings.like_threshold
    sub, backfilled = subscriptions.subscribe(
        app.parts.store, recipient, query, schedule=schedule, name=name, backfill_days=backfill_days,
        private_webhooks=app.settings.allow_private_webhooks, now=utcnow(), top=top,
        likes=likes, like_top=like_top, like_threshold=like_threshold,
    )
    titles = subscriptions.like_titles(app.parts.store, [sub])
    result = subscriptions.subscription_json(sub, titles.get(sub.id)) | {"backfilled": backfilled}
    if as_json:
        emit_json(result)
        return
    what = f"papers matching {query!r}" if query.strip() else "papers"
    if likes:
        what += f" like {len(result['likes'])} example(s) (top {sub.like_top}, or scoring {sub.like_threshold}+)"
    out.print(f"subscription {result['id']}: {result['recipient']} gets {what} {subscriptions.schedule_label(sub)}")
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
    store, now = app.parts.store, utcnow()
    if recipient is not None:
        ended = subscriptions.unsubscribe_recipient(store, recipient, now)
    else:
        ended = [subscriptions.unsubscribe(store, subscription_id, now)]
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
    listed = subscriptions.list_subscriptions(app.parts.store, recipient, include_inactive)
    titles = subscriptions.like_titles(app.parts.store, listed)
    found = [subscriptions.subscription_json(s, titles.get(s.id)) for s in listed]
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
    """Import subscriptions from a CSV file: recipient,query[,cadence,at,day,tz,name,like]. Exit 1 if a row failed."""
    try:
        text = csv_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{csv_file} is not UTF-8 text") from None
    report = subscriptions.import_subscriptions(app.parts.store, text, utcnow(),
                                                private_webhooks=app.settings.allow_private_webhooks,
                                                like_top_per_week=app.settings.like_top_per_week,
                                                like_threshold=app.settings.like_threshold)
    if as_json:
        emit_json(report.as_json())
    else:
        out.print(f"imported {report.imported} subscription(s); {len(report.errors)} row(s) refused")
        for line, reason in report.errors:
            err.print(f"{csv_file}:{line}: {reason}", soft_wrap=True)
    sys.exit(1 if report.errors else 0)


