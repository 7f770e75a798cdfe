"""One error hierarchy: every failure a user can cause or meet is a DigestbotError.

Each error carries a one-line message and, where it helps, a hint that says what to do.
The CLI prints ``error: <message>`` (and the hint) instead of a traceback.
"""

from __future__ import annotations


class DigestbotError(Exception):
    """Root of digestbot's errors; ``str(err)`` is one line meant for a person."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(DigestbotError, ValueError):
    """A setting is missing or malformed."""

    exit_code = 2


class UsageError(DigestbotError, ValueError):
    """A command was given an argument it cannot use (bad recipient, bad query, ...)."""

    exit_code = 2


class DumpError(DigestbotError, ValueError):
    """A file is not a usable Daily Papers dump."""


class SchemaOutOfDate(DigestbotError, RuntimeError):
    """The database schema is missing or older than this version of digestbot."""

    def __init__(self, current: str | None, head: str) -> None:
        state = "has no digestbot schema" if current is None else f"is at schema {current}, not {head}"
        super().__init__(f"the database {state}", hint="run 'digestbot init' first")


class StoreError(DigestbotError):
    """The database failed: unreachable, locked for too long, out of space, or refused a statement.

    The message is the database's own first line, prefixed with ``database:``.
    """


class Conflict(StoreError):
    """Another transaction stored the same key first (two processes did the same work at once).

    The transaction cannot go on: it is rolled back, and the caller treats the work as done by
    the other process.
    """


class NotFound(DigestbotError, LookupError):
    """A thing named by id does not exist."""
