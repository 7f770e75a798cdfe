"""The command line: a thin entry point over the services. Human output uses rich; --json is stable.

Each module adds its commands to the one ``cli`` group: ``papers`` (init, ingest, papers, status,
search), ``subscriptions``, ``delivery`` (digest, send, outbox, preview), ``operations`` (doctor, prune,
backup) and ``processes`` (run, worker, serve: the long-running ones).
"""

from __future__ import annotations

from digestbot.cli import delivery, operations, papers, processes, relevance, sources, subscriptions  # noqa: F401 - they add the commands
from digestbot.cli.base import cli


def main() -> None:
    cli(prog_name="digestbot")


__all__ = ["cli", "main"]
