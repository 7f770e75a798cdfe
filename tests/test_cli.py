"""The command line, run as a user runs it: `python -m digestbot ...` in a fresh folder."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NAMES, SAMPLES, base_env, one_line_error

NEW = [70, 61, 102, 42, 67]
UPDATED = [0, 0, 1, 0, 20]
UNCHANGED = [0, 15, 17, 32, 0]
FILE_KEYS = {"path", "status", "new", "updated", "unchanged", "error"}
PAPER_KEYS = ["id", "title", "abstract", "authors_count", "upvotes", "published", "first_seen", "last_seen"]


def as_json(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout)


def test_init_twice(run, tmp_path):
    first = run("init")
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout
    assert (tmp_path / "db.sqlite").is_file()
    second = run("init")
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout


@pytest.mark.parametrize("args", [["status", "--json"], ["ingest", str(SAMPLES)]])
def test_commands_before_init(run, args):
    proc = run(*args)
    assert proc.returncode == 1
    assert "digestbot init" in one_line_error(proc)
    assert proc.stdout == ""


def test_ingest_json_contract_and_status(run, dumps):
    assert run("init").returncode == 0
    proc = run("ingest", "dumps", "--json")
    assert proc.returncode == 0, proc.stderr
    report = as_json(proc)
    assert {"new", "updated", "unchanged", "files"} <= set(report)
    assert (report["new"], report["updated"], report["unchanged"]) == (342, 21, 64)
    assert all(FILE_KEYS <= set(f) for f in report["files"])
    assert [f["path"] for f in report["files"]] == [str(Path("dumps") / n) for n in NAMES]
    assert [f["status"] for f in report["files"]] == ["ingested"] * 5
    assert [f["new"] for f in report["files"]] == NEW
    assert [f["updated"] for f in report["files"]] == UPDATED
    assert [f["unchanged"] for f in report["files"]] == UNCHANGED
    assert [f["error"] for f in report["files"]] == [None] * 5

    status = as_json(run("status", "--json"))
    assert status["papers"] == 342
    assert status["dump_files"] == {"ingested": 5, "failed": 0}
    assert status["last_ingest"]["path"] == str(Path("dumps") / NAMES[4])
    assert status["last_ingest"]["snapshot_date"].endswith("-11-21")
    assert status["newest_paper_seen"] == status["last_ingest"]["at"]

    again = run("ingest", "dumps", "--json")
    assert again.returncode == 0
    report = as_json(again)
    assert [f["status"] for f in report["files"]] == ["skipped"] * 5
    assert (report["new"], report["updated"], report["unchanged"]) == (0, 0, 0)
    assert all(f["error"] for f in report["files"])


def test_failing_file_exits_1_and_the_rest_go_in(run, dumps):
    (dumps / "002b_notes.txt").write_text("Meeting notes\n\nNothing to see here.\n")
    assert run("init").returncode == 0
    proc = run("ingest", "dumps", "--json")
    assert proc.returncode == 1
    report = as_json(proc)
    by_name = {Path(f["path"]).name: f for f in report["files"]}
    assert by_name["002b_notes.txt"]["status"] == "failed"
    assert "not a Daily Papers dump" in by_name["002b_notes.txt"]["error"]
    assert [by_name[n]["new"] for n in NAMES] == NEW
    assert report["new"] == 342

    status = as_json(run("status", "--json"))
    assert status["papers"] == 342
    assert status["dump_files"] == {"ingested": 5, "failed": 1}
    assert [(f["path"], f["error"]) for f in status["failed_files"]] == [
        (str(Path("dumps") / "002b_notes.txt"), by_name["002b_notes.txt"]["error"])]
    assert status["last_ingest"]["path"] == str(Path("dumps") / NAMES[4])
    assert (status["last_ingest"]["new"], status["last_ingest"]["updated"]) == (67, 20)

    # The human output of the same: the failure as one line on stderr, a summary on stdout.
    (dumps / "002b_notes.txt").write_bytes(b"caf\xe9\n")
    proc = run("ingest", "dumps/002b_notes.txt")
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "002b_notes.txt" in line and "not UTF-8" in line
    assert "0 new" in proc.stdout and "1 failed" in proc.stdout
    status = run("status")
    assert status.returncode == 0
    assert "342" in status.stdout and "002b_notes.txt" in status.stdout and "not UTF-8" in status.stdout


def test_papers_json_newest_first(run, dumps):
    assert run("init").returncode == 0
    assert run("ingest", f"dumps/{NAMES[0]}").returncode == 0
    second = run("ingest", f"dumps/{NAMES[4]}", "--json")
    assert second.returncode == 0
    new_in_004 = as_json(second)["new"]
    assert 67 < new_in_004 < 87  # 004 shares some papers with 000, more with 001-003
    proc = run("papers", "--limit", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    papers = as_json(proc)
    assert len(papers) == 3
    assert all(set(PAPER_KEYS) <= set(p) for p in papers)
    assert [p["id"] for p in papers] == sorted((p["id"] for p in papers), reverse=True)
    assert papers[0]["title"] == "Why Do Transformers Fail to Forecast Time Series In-Context?"
    assert papers[0]["authors_count"] == 4 and papers[0]["upvotes"] == 2
    assert papers[0]["published"].endswith("-10-10")
    assert papers[0]["first_seen"] == papers[0]["last_seen"]
    assert papers[0]["first_seen"].endswith("+00:00")

    human = run("papers", "--limit", "5")
    assert human.returncode == 0, human.stderr
    ids = [int(m[1]) for m in re.finditer(r"^│\s*(\d+)\s*│", human.stdout, re.MULTILINE)]  # rich table rows
    assert ids == list(range(70 + new_in_004, 70 + new_in_004 - 5, -1))
    assert "Why Do" in human.stdout


def test_settle_seconds_from_the_environment(run, tmp_path):
    shutil.copy(SAMPLES / NAMES[0], tmp_path / "fresh.txt")  # modified just now
    assert run("init").returncode == 0
    proc = run("ingest", "fresh.txt", "--json", DIGESTBOT_SETTLE_SECONDS="3600")
    assert proc.returncode == 0
    (entry,) = as_json(proc)["files"]
    assert entry["status"] == "deferred" and entry["new"] == 0
    assert "still being written" in entry["error"]


def test_database_url_from_dotenv(run, tmp_path):
    (tmp_path / ".env").write_text("DIGESTBOT_DATABASE_URL=sqlite:///from-dotenv.db\n")
    proc = subprocess.run([sys.executable, "-m", "digestbot", "init"], cwd=tmp_path, env=base_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "from-dotenv.db").is_file()


@pytest.mark.parametrize("url", [
    "not a url",
    "postgresql://nobody@127.0.0.1:1/nothing",
    "nosuchdialect://user@host/db",
])
def test_bad_database_url_is_one_line(run, url):
    proc = run("status", url=url)
    assert proc.returncode != 0
    one_line_error(proc)
    assert proc.stdout == ""


def test_bad_setting_is_one_line(run):
    proc = run("status", DIGESTBOT_SETTLE_SECONDS="soon")
    assert proc.returncode == 2
    assert "DIGESTBOT_SETTLE_SECONDS" in one_line_error(proc)


@pytest.mark.postgres
def test_cli_on_postgres(run, dumps, postgres_url):
    init = run("init", url=postgres_url)
    assert init.returncode == 0 and "created" in init.stdout
    proc = run("ingest", "dumps", "--json", url=postgres_url)
    assert proc.returncode == 0, proc.stderr
    report = as_json(proc)
    assert [f["new"] for f in report["files"]] == NEW
    assert (report["new"], report["updated"], report["unchanged"]) == (342, 21, 64)
    status = as_json(run("status", "--json", url=postgres_url))
    assert status["papers"] == 342 and status["dump_files"] == {"ingested": 5, "failed": 0}
    papers = as_json(run("papers", "--limit", "3", "--json", url=postgres_url))
    assert all(set(PAPER_KEYS) <= set(p) for p in papers)
    assert papers[0]["title"] == "Why Do Transformers Fail to Forecast Time Series In-Context?"
