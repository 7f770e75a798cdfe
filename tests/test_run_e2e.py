"""`digestbot run` as operators run it: a real process, real signals, fake SendGrid and Slack.

The dumps are dropped into the watch folder one by one (one written slowly, in chunks); the
process is SIGKILLed mid-way and restarted; every matched paper must reach every recipient
exactly once. On PostgreSQL, two `digestbot run` at once: one leads, the other waits as a hot
standby and takes over when the leader is killed. Waits poll against generous deadlines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from conftest import SAMPLES
from digestbot.core.identity import title_key
from fakes import FakeSendGrid, FakeSlack

NAMES = sorted(p.name for p in SAMPLES.iterdir())
SUBSCRIPTIONS = [  # (recipient, query): all instant
    ("alice@example.org", "diffusion"),
    ("bob@example.org", "quantiz*"),
    ("bob@example.org", "speech OR audio"),  # two subscriptions, one recipient: one alert per pass
    ("slack:#papers", "video OR 3d"),
]
RECIPIENTS = sorted({r for r, _ in SUBSCRIPTIONS})


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGESTBOT_", "SENDGRID_", "SLACK_"))}
    env["DIGESTBOT_FETCH_MINUTES"] = "0"  # no source fetched: nothing reaches the network
    env.update(extra)
    return env


def cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "digestbot", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


class Run:
    """One `digestbot run` process, its output in a log file (never a pipe that could fill up)."""

    def __init__(self, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "wb")
        self.popen = subprocess.Popen([sys.executable, "-m", "digestbot", "run"], cwd=cwd, env=env,
                                      stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    @property
    def holder(self) -> str | None:
        found = re.search(r"leading as (run-[0-9a-f]+)", self.log)
        return found[1] if found else None

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        finally:
            if self.popen.returncode is not None:
                self._log.close()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        self._log.close()


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    """Every process a test starts; whatever is still running at the end is killed."""
    started: list[Run] = []
    yield started
    for run in started:
        run.kill()


def wait_for(condition: Callable[[], object], timeout: float, what: str, *logs: Run,
             explain: Callable[[], str] = lambda: "") -> float:
    """Poll until ``condition()`` is true; returns the seconds it took."""
    start = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            shown = "\n".join(f"--- {r.log_path.name}:\n{r.log[-4000:]}" for r in logs)
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{explain()}\n{shown}")
        time.sleep(0.1)


# ---- what the fakes received ----


def slack_titles(body: dict) -> list[str]:
    titles = []
    for block in body.get("blocks") or []:
        if block.get("type") == "section":
            found = re.fullmatch(r"\*<[^|]*\|(.*)>\*", block["text"]["text"].split("\n", 1)[0])
            if found:
                titles.append(found[1].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    return titles


def delivered(sendgrid: FakeSendGrid, slack: FakeSlack) -> dict[str, Counter]:
    """Recipient → how many times each paper reached it (by title key), over every request so far.

    Titles are compared by their key (case and punctuation folded), as the store identifies
    papers: a later dump may correct a title (``IA-RED^2`` → ``IA-RED$^2$``) after its alert.
    """
    seen: dict[str, Counter] = defaultdict(Counter)
    for mail in sendgrid.mails:
        [to] = [t["email"] for p in mail["personalizations"] for t in p["to"]]
        plain = next(c["value"] for c in mail["content"] if c["type"] == "text/plain")
        seen[to].update(title_key(t) for t in re.findall(r"^\d+\. (.+)$", plain, flags=re.MULTILINE))
    for post in slack.posts:
        body = post.json
        seen[f"slack:{body['channel']}"].update(title_key(t) for t in slack_titles(body))
    return seen


# ---- what the database says ----


def expected_titles(db) -> dict[str, set[str]]:
    """Recipient → title keys of the papers its subscriptions matched (the matches table)."""
    with db.connect() as connection:
        rows = connection.execute(text(
            "select r.address, p.title_key from matches m join subscriptions s on s.id = m.subscription_id "
            "join recipients r on r.id = s.recipient_id join papers p on p.id = m.paper_id"
        )).all()
    found: dict[str, set[str]] = defaultdict(set)
    for address, title in rows:
        found[address].add(title)
    return found


def dump_rows(db) -> list[tuple[str, str, str]]:
    """(file name, status, sha256) of every dump file recorded."""
    with db.connect() as connection:
        rows = connection.execute(text("select path, status, sha256 from dump_files order by id")).all()
    return [(Path(path).name, status, sha) for path, status, sha in rows]


def ingested(db) -> dict[str, tuple[str, str]]:
    """File name → (status, sha256) of the dump files recorded."""
    return {name: (status, sha) for name, status, sha in dump_rows(db)}


def outbox_counts(db) -> dict[str, int]:
    with db.connect() as connection:
        return dict(connection.execute(text("select status, count(*) from outbox group by status")).all())


def caught_up(db, sendgrid: FakeSendGrid, slack: FakeSlack, files: int) -> bool:
    """``files`` dumps ingested, and every matched title delivered to its recipient."""
    if sum(status == "ingested" for status, _ in ingested(db).values()) < files:
        return False
    counts = outbox_counts(db)
    if counts.get("pending") or counts.get("sending"):
        return False
    expected, got = expected_titles(db), delivered(sendgrid, slack)
    return all(set(got.get(r, ())) >= expected.get(r, set()) for r in RECIPIENTS)


def missing(db, sendgrid: FakeSendGrid, slack: FakeSlack) -> str:
    """What is not delivered yet, for a failure message."""
    expected, got = expected_titles(db), delivered(sendgrid, slack)
    lost = {r: sorted(expected.get(r, set()) - set(got.get(r, ()))) for r in RECIPIENTS}
    return (f"files: {ingested(db)}\noutbox: {outbox_counts(db)}\n"
            f"not delivered: {json.dumps({r: t for r, t in lost.items() if t}, indent=1, ensure_ascii=False)}")


def assert_each_title_once(db, sendgrid: FakeSendGrid, slack: FakeSlack) -> None:
    expected, got = expected_titles(db), delivered(sendgrid, slack)
    assert set(got) <= set(RECIPIENTS)
    for recipient in RECIPIENTS:
        assert expected[recipient], f"the samples match nothing for {recipient}: a useless test"
        assert set(got[recipient]) == expected[recipient], recipient
        repeated = {title: n for title, n in got[recipient].items() if n > 1}
        assert repeated == {}, f"{recipient} got these papers more than once: {repeated}"


def write_slowly(target: Path, data: bytes, seconds: float = 3.0, chunks: int = 12) -> None:
    """Write ``data`` in chunks over ``seconds``, as a slow scraper or a network copy does."""
    size = -(-len(data) // chunks)
    with open(target, "wb") as file:
        for start in range(0, len(data), size):
            file.write(data[start:start + size])
            file.flush()
            os.fsync(file.fileno())
            time.sleep(seconds / chunks)


# ============================================================================== the SQLite run


def test_run_alerts_every_match_once_across_a_kill_and_a_restart_then_stops_cleanly(tmp_path, runs) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    url = f"sqlite:///{tmp_path / 'digestbot.db'}"
    with FakeSendGrid() as sendgrid, FakeSlack() as slack:
        env = clean_env(
            DIGESTBOT_DATABASE_URL=url, DIGESTBOT_WATCH_DIR=str(watch), DIGESTBOT_POLL_SECONDS="1",
            DIGESTBOT_SETTLE_SECONDS="1", DIGESTBOT_EMAIL_BACKEND="sendgrid", SENDGRID_API_KEY="SG.test",
            SENDGRID_API_HOST=sendgrid.url, SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=slack.api_url,
            DIGESTBOT_RETRY_BASE_SECONDS="0.2", DIGESTBOT_OUTBOX_DIR=str(tmp_path / "outbox"),
            DIGESTBOT_DIGEST_MAX_PAPERS="500",  # every paper shown, so each title can be counted
        )
        cli(env, tmp_path, "init")
        for recipient, query in SUBSCRIPTIONS:
            cli(env, tmp_path, "subscribe", recipient, query, "--cadence", "instant")
        db = create_engine(url)
        try:
            first = Run(env, tmp_path, tmp_path / "run-1.log")
            runs.append(first)
            wait_for(lambda: first.holder, 30, "the first run to lead", first)

            # A complete dump, copied in at once.
            shutil.copyfile(SAMPLES / NAMES[0], watch / NAMES[0])
            wait_for(lambda: caught_up(db, sendgrid, slack, 1), 30, "the alerts of the first dump", first,
                     explain=lambda: missing(db, sendgrid, slack))
            assert_each_title_once(db, sendgrid, slack)
            assert sendgrid.mails and slack.posts

            # A dump written slowly: deferred while it grows, then read whole.
            full = (SAMPLES / NAMES[1]).read_bytes()
            write_slowly(watch / NAMES[1], full)
            wait_for(lambda: caught_up(db, sendgrid, slack, 2), 30, "the alerts of the slow dump", first,
                     explain=lambda: missing(db, sendgrid, slack))
            assert f"deferred {watch / NAMES[1]}" in first.log
            slow = [(status, sha) for name, status, sha in dump_rows(db) if name == NAMES[1]]
            assert slow == [("ingested", hashlib.sha256(full).hexdigest())]  # read once, whole, never half of it
            assert_each_title_once(db, sendgrid, slack)

            # Killed right after the next dump arrives.
            shutil.copyfile(SAMPLES / NAMES[2], watch / NAMES[2])
            first.popen.kill()
            assert first.wait(10) == -signal.SIGKILL
            requests_before = len(sendgrid.requests) + len(slack.requests)

            # Restarted: the dead leader's lease must run out first, then nothing is lost or repeated.
            second = Run(env, tmp_path, tmp_path / "run-2.log")
            runs.append(second)
            wait_for(lambda: second.holder, 45, "the restarted run to lead", second)
            assert "waiting as a standby" in second.log  # the killed run's lease was still valid
            shutil.copyfile(SAMPLES / NAMES[3], watch / NAMES[3])
            wait_for(lambda: caught_up(db, sendgrid, slack, 4), 30, "the alerts after the restart", second,
                     explain=lambda: missing(db, sendgrid, slack))
            shutil.copyfile(SAMPLES / NAMES[4], watch / NAMES[4])
            wait_for(lambda: caught_up(db, sendgrid, slack, 5), 30, "the alerts of the last dump", second,
                     explain=lambda: missing(db, sendgrid, slack))
            assert len(sendgrid.requests) + len(slack.requests) > requests_before
            assert_each_title_once(db, sendgrid, slack)

            # Every file was read once, whole: one row each, with the sample's own hash.
            assert sorted(dump_rows(db)) == sorted(
                (name, "ingested", hashlib.sha256((SAMPLES / name).read_bytes()).hexdigest()) for name in NAMES)
            for name in NAMES[2:]:
                assert f"ingested {watch / name}" in second.log
            counts = outbox_counts(db)
            assert counts == {"sent": len(sendgrid.mails) + len(slack.posts)}  # nothing pending, failed or sent twice
            assert all(r.headers["Authorization"] == "Bearer SG.test" for r in sendgrid.requests)
            assert all(r.headers["Authorization"] == "Bearer xoxb-test" for r in slack.requests)

            # SIGTERM: a clean stop.
            second.signal(signal.SIGTERM)
            assert second.wait(10) == 0, second.log[-3000:]
            assert re.search(r" INFO stopped$", second.log, flags=re.MULTILINE), second.log[-3000:]
            assert "Traceback" not in first.log + second.log
        finally:
            db.dispose()

        status = json.loads(cli(env, tmp_path, "status", "--json").stdout)
        assert status["dump_files"] == {"ingested": len(NAMES), "failed": 0}
        assert {"watch", "health"} <= set(status["jobs"])
        assert status["jobs"]["watch"]["status"] == "ok"
        assert status["outbox"]["sent"] == len(sendgrid.mails) + len(slack.posts)
        assert (status["outbox"]["pending"], status["outbox"]["sending"], status["outbox"]["failed"]) == (0, 0, 0)
        assert status["next_digests"] == []  # only instant subscriptions


# ======================================================================= PostgreSQL: standby


def lease_rows(db) -> list[tuple[str, str]]:
    with db.connect() as connection:
        return [tuple(r) for r in connection.execute(
            text("select name, holder from leases where expires_at > now()")).all()]


@pytest.mark.postgres
def test_two_runs_on_postgres_one_leads_and_the_standby_takes_over_when_it_is_killed(
        tmp_path, postgres_url, runs) -> None:
    watch = tmp_path / "watch"
    watch.mkdir()
    env = clean_env(
        DIGESTBOT_DATABASE_URL=postgres_url, DIGESTBOT_WATCH_DIR=str(watch), DIGESTBOT_POLL_SECONDS="1",
        DIGESTBOT_SETTLE_SECONDS="1", DIGESTBOT_EMAIL_BACKEND="file", DIGESTBOT_SLACK_BACKEND="file",
        DIGESTBOT_OUTBOX_DIR=str(tmp_path / "outbox"),
    )
    cli(env, tmp_path, "init")
    db = create_engine(postgres_url)
    try:
        a = Run(env, tmp_path, tmp_path / "run-a.log")
        b = Run(env, tmp_path, tmp_path / "run-b.log")
        runs.extend([a, b])
        wait_for(lambda: (a.holder or b.holder) and "standby" in (b.log if a.holder else a.log), 45,
                 "one run to lead and the other to wait", a, b)
        time.sleep(1)  # room for a second "leading as", which must not come
        leader, standby = (a, b) if a.holder else (b, a)
        assert standby.holder is None, "both runs lead"
        assert lease_rows(db) == [("scheduler", leader.holder)]

        leader.popen.kill()
        assert leader.wait(10) == -signal.SIGKILL
        took = wait_for(lambda: standby.holder, 45, "the standby to take over", standby)
        assert took <= 30, f"the standby took {took:.0f}s to take over"
        assert lease_rows(db) == [("scheduler", standby.holder)]
        assert standby.holder != leader.holder

        # The new leader works: a dump dropped now is ingested.
        shutil.copyfile(SAMPLES / NAMES[0], watch / NAMES[0])
        wait_for(lambda: ingested(db).get(NAMES[0], ("",))[0] == "ingested", 30, "the new leader to ingest", standby)

        standby.signal(signal.SIGTERM)
        assert standby.wait(10) == 0, standby.log[-3000:]
        assert "stopped" in standby.log
        assert lease_rows(db) == []  # released on a clean stop: a next run need not wait
    finally:
        db.dispose()
