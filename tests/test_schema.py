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
