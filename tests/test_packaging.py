"""The package works when installed from a wheel, not only from the checkout (editable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)]
    # Without build isolation first (offline, if hatchling is installed); else pip fetches hatchling.
    proc = subprocess.run([*command[:5], "--no-build-isolation", *command[5:]], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (built,) = out.glob("digestbot-*.whl")
    return built


def _shipped(folder: str) -> list[str]:
    """Files of a top-level data folder of the checkout that the wheel must carry."""
    base = ROOT / folder
    return sorted(
        p.relative_to(base).as_posix() for p in base.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".") and p.suffix != ".pyc"
    )


def test_wheel_contains_the_package_and_its_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "digestbot/__init__.py" in names and "digestbot/cli/__init__.py" in names
    assert "digestbot/migrations/env.py" in names
    versions = [n for n in names if n.startswith("digestbot/migrations/versions/") and n.endswith(".py")]
    assert versions, "no migration versions in the wheel"
    for rel in _shipped("migrations"):
        assert f"digestbot/migrations/{rel}" in names
    # templates/ may still be empty (hatchling leaves empty folders out); every file in it must ship.
    for rel in _shipped("templates"):
        assert f"digestbot/templates/{rel}" in names
    assert not any(n.startswith(("tests/", "examples/", "migrations/", "templates/")) for n in names)
    entry_points = zipfile.ZipFile(wheel).read("digestbot-0.1.0.dist-info/entry_points.txt").decode()
    assert "digestbot = digestbot.cli:main" in entry_points


def test_installed_wheel_runs_migrations_and_ingest(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:  # a pure-Python wheel is installed by unpacking it
        archive.extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGESTBOT_")}
    env.update(PYTHONPATH=str(site), DIGESTBOT_DATABASE_URL=f"sqlite:///{work / 'db.sqlite'}",
               DIGESTBOT_SETTLE_SECONDS="0")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=120)

    where = run("-c", "import digestbot, digestbot.resources as r; print(digestbot.__file__);"
                      "print(r.resource_dir('migrations'))")
    assert where.returncode == 0, where.stderr
    module, migrations = where.stdout.split()
    assert Path(module).is_relative_to(site), "imported the checkout, not the wheel"
    assert Path(migrations) == site / "digestbot" / "migrations"

    init = run("-m", "digestbot", "init")
    assert init.returncode == 0, init.stderr
    assert "created" in init.stdout
    ingest = run("-m", "digestbot", "ingest", str(SAMPLES / sorted(os.listdir(SAMPLES))[0]))
    assert ingest.returncode == 0, ingest.stderr
    status = run("-m", "digestbot", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["papers"] == 70
