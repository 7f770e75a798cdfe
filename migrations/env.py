"""Alembic environment. digestbot runs migrations itself ('digestbot init') and passes its
connection in ``config.attributes``; the alembic CLI works too, on the database of digestbot's
settings (DIGESTBOT_DATABASE_URL, from the environment or .env)."""

from __future__ import annotations

from alembic import context

from digestbot.settings import Settings
from digestbot.store.models import Base

target_metadata = Base.metadata


def _configure(**kwargs) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead.
    context.configure(target_metadata=target_metadata, render_as_batch=True, **kwargs)


def run_offline() -> None:
    _configure(url=Settings.load().database_url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from digestbot.store.db import connect

    engine = connect(Settings.load().database_url)
    with engine.begin() as connection:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
