"""What the benchmark scripts share: a throw-away database and the facts of the machine."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import sqlalchemy  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from digestbot.store import connect, migrate  # noqa: E402


class Database:
    """A fresh, migrated database: a SQLite file, or a temporary schema of the PostgreSQL at ``url``
    (created here, dropped by ``close``)."""

    def __init__(self, url: str | None, workdir: Path, name: str = "bench.db") -> None:
        self._drop_schema = None
        if url is None or make_url(url).get_backend_name() == "sqlite":
            if url is not None:
                database = make_url(url).database
                if database in (None, "", ":memory:") or Path(database).exists():
                    raise SystemExit(f"--database-url: {url!r} must name a SQLite file that does not exist yet")
            self.url = url or f"sqlite:///{workdir / name}"
        else:
            parsed = make_url(url)
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            schema = f"bench_{uuid.uuid4().hex[:12]}"
            admin = create_engine(parsed)
            with admin.begin() as connection:
                connection.execute(text(f'create schema "{schema}"'))
            self._drop_schema = (admin, schema)
            options = " ".join(filter(None, [parsed.query.get("options"), f"-csearch_path={schema}"]))
            self.url = parsed.update_query_dict({"options": options}).render_as_string(hide_password=False)
        self.engine = connect(self.url)
        migrate(self.engine)
        self.backend = self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()
        if self._drop_schema is not None:
            admin, schema = self._drop_schema
            with admin.begin() as connection:
                connection.execute(text(f'drop schema "{schema}" cascade'))
            admin.dispose()


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages: how much other work competed for the CPUs."""
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu_count": os.cpu_count(),
        "processor": _cpu_model(),
        "platform": platform.platform(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite": sqlite3.sqlite_version,
        "load_average": load_average(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
