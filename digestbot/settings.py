"""The one settings object. Every option is declared once here, with its default and a comment.

Values come from the environment and from a ``.env`` file in the working directory
(python-dotenv; real environment variables win). ``.env.example`` mirrors this table,
and a test keeps the two in step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from digestbot.errors import ConfigError


def option(default: Any, env: str, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


_PARSERS = {"str": str, "Path": Path, "float": float, "int": int}


@dataclass(frozen=True)
class Settings:
    database_url: str = option(
        "sqlite:///digestbot.db", "DIGESTBOT_DATABASE_URL",
        "SQLAlchemy URL: SQLite by default, postgresql+psycopg://user@host/db to scale out",
    )
    watch_dir: Path = option(Path("dumps"), "DIGESTBOT_WATCH_DIR", "folder watched for new dump files")
    outbox_dir: Path = option(
        Path("outbox"), "DIGESTBOT_OUTBOX_DIR", "where the file backend writes .eml files and Slack payloads"
    )
    settle_seconds: float = option(
        5.0, "DIGESTBOT_SETTLE_SECONDS",
        "a dump modified less than this many seconds ago is still being written and is deferred",
    )

    def __post_init__(self) -> None:
        if self.settle_seconds < 0:
            raise ConfigError("DIGESTBOT_SETTLE_SECONDS must not be negative")

    @classmethod
    def load(cls, env: dict[str, str] | None = None, dotenv_path: str | Path | None = ".env") -> Settings:
        """Settings from ``env`` (default: os.environ) over the values of a .env file."""
        merged: dict[str, str] = {}
        if dotenv_path is not None and Path(dotenv_path).is_file():
            merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        merged.update(os.environ if env is None else env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = merged.get(f.metadata["env"], "").strip()
            if not raw:
                continue
            try:
                values[f.name] = _PARSERS[str(f.type)](raw)
            except ValueError:
                raise ConfigError(f"{f.metadata['env']} must be a {f.type}, not {raw!r}") from None
        return cls(**values)

    @classmethod
    def documented(cls) -> list[tuple[str, str, str]]:
        """(variable, default, comment) for every option: what .env.example must list."""
        return [(f.metadata["env"], str(f.default), f.metadata["doc"]) for f in fields(cls)]
