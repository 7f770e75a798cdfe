"""Engine creation and schema migrations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Insert, create_engine, event, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from digestbot.errors import ConfigError, Conflict, SchemaOutOfDate, StoreError
from digestbot.resources import resource_dir


@contextmanager
def database_errors() -> Iterator[None]:
    """SQLAlchemy's and the driver's errors as digestbot's (errors.py), so that nothing above the
    store names SQLAlchemy: a broken unique key is a ``Conflict`` (another writer stored the same
    thing first), anything else a ``StoreError``; each with the database's first line."""
    try:
        yield
    except IntegrityError as exc:
        raise Conflict(f"database: {_first_line(exc)}") from exc
    except SQLAlchemyError as exc:
        raise StoreError(f"database: {_first_line(exc)}") from exc


def _first_line(exc: SQLAlchemyError) -> str:
    """The driver's message (not SQLAlchemy's wrapping, which quotes the statement), first line,
    printable: a database's message may quote the data it choked on."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    line = text.splitlines()[0] if text else exc.__class__.__name__
    line = line if len(line) <= 300 else line[:299] + "…"
    return line if line.isprintable() else "".join(c if c.isprintable() else "?" for c in line)

# An execution option on connections that only read (Store.reading): on SQLite they begin a
# deferred transaction instead of taking the write lock.
READ_ONLY = "digestbot_read_only"


def connect(url: str) -> Engine:
    """An engine for ``url``. SQLite gets WAL, foreign keys, a busy timeout and BEGIN IMMEDIATE."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"DIGESTBOT_DATABASE_URL is not a database URL: {url!r}") from None
    if parsed.drivername == "postgresql":  # plain postgresql:// means psycopg 3 here, not psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"no driver for {parsed.drivername}: {exc.name} is not installed",
                hint="pip install 'digestbot[postgres]'",
            ) from None
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError(f"DIGESTBOT_DATABASE_URL names no usable database: {exc}") from None
    engine = create_engine(parsed, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Take transaction control from the driver so that we can BEGIN IMMEDIATE ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if parsed.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        # A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY
        # in WAL mode; taking the write lock up front makes concurrent writers queue instead.
        # A transaction that only reads needs no lock (WAL gives it a snapshot).
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def insert_ignoring_duplicates(dialect: str, model) -> Insert:
    """INSERT that skips rows whose key is already stored (ON CONFLICT DO NOTHING)."""
    if dialect == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(model).on_conflict_do_nothing()
    return insert(model)  # pragma: no cover - only SQLite and PostgreSQL are supported


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resource_dir("migrations")))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "migrations/ has no revisions"
    return head


def schema_revision(engine: Engine) -> str | None:
    with database_errors(), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to the newest revision; returns (before, after). Idempotent."""
    before = schema_revision(engine)
    cfg = _alembic_config()
    sqlite = engine.dialect.name == "sqlite"
    with database_errors(), engine.connect() as connection:
        raw = connection.connection.driver_connection
        if sqlite:
            # Batch migrations copy and drop tables; with foreign keys on, dropping a table
            # would cascade-delete the rows that refer to it. The pragma only works outside
            # a transaction, hence the driver connection.
            raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                cfg.attributes["connection"] = connection
                command.upgrade(cfg, "head")
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys=ON")
    return before, head_revision()


def ensure_current(engine: Engine) -> None:
    """Refuse to work on a schema that 'digestbot init' has not brought up to date."""
    current, head = schema_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDate(current, head)
