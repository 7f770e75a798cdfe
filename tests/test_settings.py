"""Settings: environment over .env over defaults, validation, and .env.example in step with the code."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from conftest import ROOT
from digestbot.errors import ConfigError
from digestbot.settings import Settings


def test_defaults(tmp_path):
    s = Settings.load(env={}, dotenv_path=tmp_path / "missing.env")
    assert s == Settings()
    assert s.database_url == "sqlite:///digestbot.db"
    assert s.watch_dir == Path("dumps") and s.outbox_dir == Path("outbox")
    assert s.settle_seconds == 5.0


def test_from_environment(tmp_path):
    s = Settings.load(env={
        "DIGESTBOT_DATABASE_URL": "postgresql+psycopg://u@h/db",
        "DIGESTBOT_WATCH_DIR": "/srv/dumps",
        "DIGESTBOT_OUTBOX_DIR": "out box",
        "DIGESTBOT_SETTLE_SECONDS": " 2.5 ",
        "UNRELATED": "x",
    }, dotenv_path=None)
    assert s.database_url == "postgresql+psycopg://u@h/db"
    assert s.watch_dir == Path("/srv/dumps") and isinstance(s.watch_dir, Path)
    assert s.outbox_dir == Path("out box")
    assert s.settle_seconds == 2.5 and isinstance(s.settle_seconds, float)


def test_from_dotenv_file_environment_wins(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# a comment\n"
        "DIGESTBOT_DATABASE_URL=sqlite:///from-file.db\n"
        "DIGESTBOT_SETTLE_SECONDS=1\n"
        "export DIGESTBOT_WATCH_DIR='quoted dir'\n"
    )
    s = Settings.load(env={"DIGESTBOT_SETTLE_SECONDS": "7"}, dotenv_path=dotenv)
    assert s.database_url == "sqlite:///from-file.db"
    assert s.watch_dir == Path("quoted dir")
    assert s.settle_seconds == 7.0  # the environment wins over .env
    assert Settings.load(env={}, dotenv_path=dotenv).settle_seconds == 1.0


def test_default_dotenv_is_read_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("DIGESTBOT_OUTBOX_DIR=from-cwd\n")
    monkeypatch.chdir(tmp_path)
    for f in fields(Settings):
        monkeypatch.delenv(f.metadata["env"], raising=False)
    assert Settings.load().outbox_dir == Path("from-cwd")
    monkeypatch.setenv("DIGESTBOT_OUTBOX_DIR", "from-env")
    assert Settings.load().outbox_dir == Path("from-env")


def test_blank_values_mean_default(tmp_path):
    assert Settings.load(env={"DIGESTBOT_SETTLE_SECONDS": "  ", "DIGESTBOT_DATABASE_URL": ""},
                         dotenv_path=None) == Settings()


@pytest.mark.parametrize("value", ["soon", "5s", "1,5", "--1", "nan", "-1", "-0.5"])
def test_bad_settle_seconds(value):
    with pytest.raises(ConfigError) as info:
        Settings.load(env={"DIGESTBOT_SETTLE_SECONDS": value}, dotenv_path=None)
    message = str(info.value)
    assert "DIGESTBOT_SETTLE_SECONDS" in message and "\n" not in message
    assert info.value.exit_code == 2


def test_bad_value_in_dotenv_file(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("DIGESTBOT_SETTLE_SECONDS=five\n")
    with pytest.raises(ConfigError, match="five"):
        Settings.load(env={}, dotenv_path=dotenv)


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings().settle_seconds = 1  # type: ignore[misc]


def _parse_env_example(path: Path) -> list[tuple[str, str, str]]:
    """(variable, value, comment just above it) for each assignment of a .env file."""
    entries, comment = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            comment = ""
        elif line.startswith("#"):
            comment = line.lstrip("#").strip()
        else:
            m = re.fullmatch(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
            assert m, f".env.example: cannot read {raw!r}"
            entries.append((m[1], m[2].strip().strip("'\""), comment))
            comment = ""
    return entries


def test_env_example_lists_exactly_the_documented_settings():
    example = _parse_env_example(ROOT / ".env.example")
    documented = Settings.documented()
    names = [name for name, _, _ in example]
    assert len(names) == len(set(names)), "a variable is listed twice"
    assert set(names) == {name for name, _, _ in documented}
    assert {n: (v, c) for n, v, c in example} == {n: (d, c) for n, d, c in documented}


def test_env_example_loads_to_the_defaults():
    assert Settings.load(env={}, dotenv_path=ROOT / ".env.example") == Settings()


def test_documented_names_every_field():
    documented = Settings.documented()
    assert [name for name, _, _ in documented] == [f.metadata["env"] for f in fields(Settings)]
    assert all(doc.strip() for _, _, doc in documented), "every option has a comment"
