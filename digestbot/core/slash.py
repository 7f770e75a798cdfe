"""The `/digest` Slack slash command: its text, parsed (the request itself is handled in web/)."""

from __future__ import annotations

from dataclasses import dataclass

from digestbot.errors import UsageError

CADENCE_WORDS = ("daily", "weekly", "instant")

HELP = (
    "Usage: `/digest subscribe <query> [daily|weekly|instant]` (this channel gets the papers; "
    "daily by default), `/digest list`, `/digest unsubscribe <id>`."
)


@dataclass(frozen=True, slots=True)
class SlashCommand:
    action: str  # subscribe | list | unsubscribe | help
    query: str = ""
    cadence: str = "daily"
    subscription_id: int = 0


def parse_command(text: str) -> SlashCommand:
    """``subscribe quantiz* OR pruning weekly`` → subscribe, that query, weekly."""
    action, _, rest = text.strip().partition(" ")
    action, rest = action.lower(), rest.strip()
    if action in ("", "help"):
        return SlashCommand("help")
    if action == "list":
        return SlashCommand("list")
    if action == "subscribe":
        query, _, last = rest.rpartition(" ")
        cadence = "daily"
        if last.lower() in CADENCE_WORDS:
            cadence, rest = last.lower(), query.strip()
        if not rest:
            raise UsageError("give a query: /digest subscribe <query> [daily|weekly|instant]")
        return SlashCommand("subscribe", query=rest, cadence=cadence)
    if action == "unsubscribe":
        if not (rest.isascii() and rest.isdigit()):  # "²" and "١" are digits too, but int() refuses the first
            raise UsageError("give the subscription's id, as /digest list shows it: /digest unsubscribe 12")
        return SlashCommand("unsubscribe", subscription_id=int(rest))
    raise UsageError(f"unknown command {action!r}. {HELP}")
