"""Commands about relevance (issue 13): similar, recommend, feedback."""

from __future__ import annotations

import click
from rich.table import Table

from digestbot.cli.base import App, capped, cli, emit_json, out, pass_app
from digestbot.clock import utcnow
from digestbot.errors import UsageError
from digestbot.services import relevance, votes


def _show(found: list[dict], limit: int) -> None:
    table = Table("id", "title", "score", "first seen")
    for p in found:
        table.add_row(str(p["id"]), p["title"], f"{p['score']:.3f}", (p["first_seen"] or "")[:10])
    out.print(table)
    out.print(f"{len(found)} paper(s)" + (" (use --limit for more)" if len(found) == limit else ""))


@cli.command()
@click.argument("papers", nargs=-1, required=True)
@click.option("--limit", default=10, show_default=True, type=click.IntRange(min=1), callback=capped,
              help="How many papers.")
@click.option("--json", "as_json", is_flag=True, help="Print the papers as JSON.")
@pass_app
def similar(app: App, papers: tuple[str, ...], limit: int, as_json: bool) -> None:
    """The stored papers most like the example PAPERS (stored titles), best first."""
    found = relevance.similar(app.parts.store, app.parts.relevance, list(papers), limit, utcnow())
    if as_json:
        emit_json(found)
    else:
        _show(found, limit)


@cli.command()
@click.argument("recipient")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(min=1), callback=capped,
              help="How many papers.")
@click.option("--json", "as_json", is_flag=True, help="Print the papers as JSON.")
@pass_app
def recommend(app: App, recipient: str, limit: int, as_json: bool) -> None:
    """The stored papers ranked for RECIPIENT by its likes and votes."""
    found = relevance.recommend(app.parts.store, app.parts.relevance, recipient, limit, utcnow())
    if as_json:
        emit_json(found)
    elif not found:
        out.print(f"{recipient} has no likes or votes yet: vote with 'digestbot feedback' or subscribe with --like")
    else:
        _show(found, limit)


@cli.command()
@click.argument("recipient")
@click.argument("paper", required=False)
@click.argument("action", required=False, type=click.Choice(votes.ACTIONS))
@click.option("--json", "as_json", is_flag=True, help="Print the vote (or the votes) as JSON.")
@pass_app
def feedback(app: App, recipient: str, paper: str | None, action: str | None, as_json: bool) -> None:
    """Vote on PAPER for RECIPIENT (up, down or clear); without PAPER, list its votes."""
    store = app.parts.store
    if paper is None:
        found = votes.list_votes(store, recipient)
        if as_json:
            emit_json(found)
            return
        table = Table("vote", "title", "when")
        for v in found:
            table.add_row(v["vote"], v["paper"]["title"], v["voted_at"][:16])
        out.print(table)
        return
    if action is None:
        raise UsageError("give a vote after the paper: up, down or clear")
    result = votes.vote(store, recipient, paper, action, utcnow())
    if as_json:
        emit_json(result)
    else:
        state = "" if result["changed"] else " (unchanged)"
        out.print(f"{action}: {result['paper']['title']}{state}")
