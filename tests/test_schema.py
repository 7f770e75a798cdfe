"""The migrations build exactly the schema the models describe, and step back down cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from digestbot.store import Base, migrate
from digestbot.store.db import head_revision, schema_revision


def _is_view(table) -> bool:
    return getattr(table, "info", {}).get("is_view", False)


def _differences(engine) -> list:
    views = {name for name, table in Base.metadata.tables.items() if _is_view(table)}
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": False,
            # Views are models to read from, not tables; alembic's own table is no model.
            "include_object": lambda _obj, name, kind, _reflected, _other:
                not (kind == "table" and (name in views or name == "alembic_version")),
        })
        return compare_metadata(context, Base.metadata)


def test_migrations_and_models_agree(engine) -> None:
    assert schema_revision(engine) == head_revision()
    assert _differences(engine) == []


def test_downgrade_to_the_start_and_up_again(engine) -> None:
    from alembic import command

    from digestbot.store.db import _alembic_config

    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert schema_revision(engine) is None
    migrate(engine)
    assert schema_revision(engine) == head_revision() and _differences(engine) == []


def test_queued_messages_keep_what_they_are_across_the_rename_to_kind(engine) -> None:
    """Migration 0009 renames outbox.cadence to kind: rows queued before it keep their value."""
    from alembic import command
    from sqlalchemy import text

    from digestbot.store.db import _alembic_config

    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO recipients (address, kind, created_at) "
                                "VALUES ('ada@example.org', 'email', '2026-01-01 00:00:00')"))
        for n, cadence in enumerate(("daily", "confirm", "alert"), start=1):
            connection.execute(text(
                "INSERT INTO outbox (recipient_id, channel, cadence, digest_key, part, subject, payload, status, "
                "attempts, next_attempt_at, created_at) VALUES ((SELECT id FROM recipients), 'email', :cadence, "
                ":key, 1, 's', '{}', 'pending', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"),
                {"cadence": cadence, "key": f"k{n}"})
    migrate(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT digest_key, kind FROM outbox ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("k1", "daily"), ("k2", "confirm"), ("k3", "alert")]
