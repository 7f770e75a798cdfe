"""Settings: environment over .env over defaults, validation, and .env.example in step with the code."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from conftest import ROOT, base_env
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


# ---- settings that refuse mistakes ----

@pytest.mark.parametrize(("written", "nearest"), [
    ("DIGESTBOT_SETTLE_SECOND", "DIGESTBOT_SETTLE_SECONDS"),
    ("DIGESTBOT_SMTP_PASS", "DIGESTBOT_SMTP_PASSWORD"),
    ("DIGESTBOT_EMAIL_BACKENDS", "DIGESTBOT_EMAIL_BACKEND"),
])
def test_a_misspelt_variable_is_refused_with_the_nearest_name(written: str, nearest: str) -> None:
    with pytest.raises(ConfigError, match=f"^{written} is not a digestbot setting; did you mean {nearest}\\?$"):
        Settings.load(env={written: "1"}, dotenv_path=None)


def test_an_unknown_variable_without_a_near_name_points_at_the_list() -> None:
    with pytest.raises(ConfigError, match="DIGESTBOT_FOO is not a digestbot setting .see .env.example"):
        Settings.load(env={"DIGESTBOT_FOO": "1"}, dotenv_path=None)


def test_the_dotenv_file_is_checked_for_provider_names_too(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("SENDGRID_APIKEY=SG.x\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=f"SENDGRID_APIKEY in {dotenv} is not a digestbot setting; "
                                          "did you mean SENDGRID_API_KEY"):
        Settings.load(env={}, dotenv_path=dotenv)
    # In the environment, other programs' SLACK_ variables are none of digestbot's business.
    assert Settings.load(env={"SLACK_WEBHOOK_URL": "x"}, dotenv_path=None) == Settings()


def test_the_test_and_build_tooling_variables_are_allowed() -> None:
    tooling = {"DIGESTBOT_REQUIRE_POSTGRES": "1", "DIGESTBOT_TEST_POSTGRES_URL": "x", "DIGESTBOT_CHROMIUM": "x"}
    assert Settings.load(env=tooling, dotenv_path=None) == Settings()


def test_long_running_processes_need_the_file_backends_asked_for_by_name() -> None:
    problem = Settings().unattended_problem()
    assert problem is not None and "SENDGRID_API_KEY is not set" in problem and "SLACK_BOT_TOKEN is not set" in problem
    assert "SLACK" not in (Settings().unattended_problem(slack=False) or "")
    assert Settings(email_backend="file", slack_backend="file").unattended_problem() is None
    assert Settings(sendgrid_api_key="SG.x", slack_bot_token="xoxb-1").unattended_problem() is None
    only_email = Settings(sendgrid_api_key="SG.x").unattended_problem()
    assert only_email is not None and "SENDGRID" not in only_email


def test_the_alembic_command_reads_the_database_from_the_dotenv_file(tmp_path: Path) -> None:
    """migrations/env.py loads the one Settings, so `alembic upgrade head` honours .env like digestbot does."""
    (tmp_path / ".env").write_text(f"DIGESTBOT_DATABASE_URL=sqlite:///{tmp_path / 'from-dotenv.db'}\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
                          cwd=tmp_path, env=base_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "from-dotenv.db").stat().st_size > 0
