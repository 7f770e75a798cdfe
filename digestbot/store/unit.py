"""The store's one door: ``Store`` wraps the engine, and each unit of work is a ``Transaction``
holding the repositories that work inside it.

Services open transactions (``with store.transaction() as tx: tx.papers...``); nothing else
does. Each repository is the only place that writes SQL for its tables, and the only place a
difference between SQLite and PostgreSQL shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from digestbot.store.db import READ_ONLY, database_errors, migrate
from digestbot.store.events import Events
from digestbot.store.fetches import Fetches
from digestbot.store.features import Features
from digestbot.store.jobs import Jobs
from digestbot.store.matches import Matches
from digestbot.store.outbox import Outbox
from digestbot.store.papers import Papers
from digestbot.store.secrets import Secrets
from digestbot.store.subscriptions import Subscriptions
from digestbot.store.votes import Votes


class Store:
    """The database behind the repositories."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # Reads on SQLite begin a deferred transaction: they never wait for, or hold, the write lock.
        self._reader = engine.execution_options(**{READ_ONLY: True})

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A unit of work that writes: committed when the block ends, rolled back if it raises.

        Objects read inside stay usable after it (their attributes are not expired on commit).

        :raises Conflict: another transaction stored one of the same keys first (rolled back)
        :raises StoreError: the database failed (rolled back)
        """
        with database_errors(), Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield Transaction(session)

    @contextmanager
    def reading(self) -> Iterator[Transaction]:
        """A unit of work that only reads (never commits).

        :raises StoreError: the database failed
        """
        with database_errors(), Session(self._reader, expire_on_commit=False) as session:
            yield Transaction(session)

    def migrate(self) -> tuple[str | None, str]:
        """Create or upgrade the schema to the newest revision; returns (before, after)."""
        return migrate(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


class Transaction:
    """One transaction and its repositories (made on first use; each shares the session)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @cached_property
    def papers(self) -> Papers:
        return Papers(self.session)

    @cached_property
    def subscriptions(self) -> Subscriptions:
        return Subscriptions(self.session)

    @cached_property
    def matches(self) -> Matches:
        return Matches(self.session)

    @cached_property
    def outbox(self) -> Outbox:
        return Outbox(self.session)

    @cached_property
    def jobs(self) -> Jobs:
        return Jobs(self.session)

    @cached_property
    def events(self) -> Events:
        return Events(self.session)

    @cached_property
    def secrets(self) -> Secrets:
        return Secrets(self.session)

    @cached_property
    def fetches(self) -> Fetches:
        return Fetches(self.session)

    @cached_property
    def votes(self) -> Votes:
        return Votes(self.session)

    @cached_property
    def features(self) -> Features:
        return Features(self.session)
