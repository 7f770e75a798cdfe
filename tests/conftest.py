"""Shared fixtures. ``engine`` runs every database test on SQLite and on PostgreSQL.

PostgreSQL comes from DIGESTBOT_TEST_POSTGRES_URL (default: the local server on 127.0.0.1:5432,
database ``test``, user ``postgres``). Without a reachable server those tests skip, unless
DIGESTBOT_REQUIRE_POSTGRES=1 (as .ci/run sets), which makes them fail instead.
Each PostgreSQL test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from digestbot.store import connect, migrate

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "dumps"
POSTGRES_URL = os.environ.get(
    "DIGESTBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("DIGESTBOT_REQUIRE_POSTGRES") == "1"


def _postgres_problem() -> str | None:
    try:
        probe = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with probe.connect() as connection:
            connection.execute(text("select 1"))
        probe.dispose()
        return None
    except Exception as exc:  # any failure to reach it means "no PostgreSQL here"
        return f"PostgreSQL unavailable at {POSTGRES_URL}: {exc.__class__.__name__}"


@pytest.fixture(scope="session")
def postgres_available() -> None:
    problem = _postgres_problem()
    if problem is None:
        return
    if REQUIRE_POSTGRES:
        pytest.fail(problem + " (DIGESTBOT_REQUIRE_POSTGRES=1)")
    pytest.skip(problem)


@pytest.fixture
def postgres_url(postgres_available) -> Iterator[str]:
    """A URL whose connections use a fresh, empty schema of their own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'create schema "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'drop schema "{schema}" cascade'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'digestbot.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request) -> str:
    """The URL of an empty database, once per backend."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A migrated, empty store on each backend."""
    engine = connect(database_url)
    migrate(engine)
    yield engine
    engine.dispose()
