"""Shared fixtures. ``engine`` runs every database test on SQLite and on PostgreSQL.

PostgreSQL comes from DIGESTBOT_TEST_POSTGRES_URL (default: the local server on 127.0.0.1:5432,
database ``test``, user ``postgres``). Without a reachable server those tests skip, unless
DIGESTBOT_REQUIRE_POSTGRES=1 (as .ci/run sets), which makes them fail instead.
Each PostgreSQL test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from digestbot.store import Store, connect, migrate

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "examples" / "dumps"
NAMES = sorted(p.name for p in SAMPLES.iterdir())
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


@pytest.fixture
def store(engine: Engine) -> Store:
    """The same store, as services take it."""
    return Store(engine)


# ---- the command line, run as a user runs it ---------------------------------------------------

def base_env(**extra: str) -> dict[str, str]:
    """This process's environment without any DIGESTBOT_ setting (but fetching off: nothing may
    reach the network), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTBOT_")}
    env["DIGESTBOT_FETCH_MINUTES"] = "0"
    env.update(extra)
    return env


@pytest.fixture
def run(tmp_path: Path):
    """Run `python -m digestbot` in tmp_path on a SQLite file there (or on ``url``)."""

    def run(*args: str, url: str | None = None, **env: str) -> subprocess.CompletedProcess:
        settings = {"DIGESTBOT_DATABASE_URL": url or f"sqlite:///{tmp_path / 'db.sqlite'}",
                    "DIGESTBOT_SETTLE_SECONDS": "0", "COLUMNS": "250", **env}  # wide: no wrapped table cells
        return subprocess.run(
            [sys.executable, "-m", "digestbot", *args], cwd=tmp_path, env=base_env(**settings),
            capture_output=True, text=True, timeout=120,
        )

    return run


@pytest.fixture
def dumps(tmp_path: Path) -> Path:
    """A folder with copies of the five sample dumps."""
    folder = tmp_path / "dumps"
    folder.mkdir()
    for name in NAMES:
        shutil.copy2(SAMPLES / name, folder / name)
    return folder


def write_dated(path: Path, content: str | bytes, mtime: float) -> Path:
    """Write a file as if saved at ``mtime`` (ingest defers a file modified after its ``now``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    os.utime(path, (mtime, mtime))
    return path


def copy_samples(folder: Path, mtime: float) -> Path:
    """The five sample dumps copied into ``folder``, as if saved at ``mtime``."""
    for name in NAMES:
        write_dated(folder / name, (SAMPLES / name).read_bytes(), mtime)
    return folder


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """The one line a failing command prints: no traceback, starting with 'error: '."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    return lines[0]
