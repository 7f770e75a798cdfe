"""One bootstrap: the parts every entry point is built from, the threads each one owns, the
settings that refuse mistakes at start, and webhook URLs never printed whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import base_env, one_line_error
from digestbot.bootstrap import bootstrap
from digestbot.errors import ConfigError, SchemaOutOfDate
from digestbot.settings import Settings
from digestbot.store import connect
from digestbot.web import create_app
from digestbot.web.app import site_of
from fakes import RecordingChannel, free_port

HOOK = "https://hooks.slack.com/services/T0001/B0002/abcdefghijklmnopqrstuvwx"
FILES = {"DIGESTBOT_EMAIL_BACKEND": "file", "DIGESTBOT_SLACK_BACKEND": "file"}


def settings_in(tmp_path: Path, **changes) -> Settings:
    return Settings(outbox_dir=tmp_path / "outbox", secret_key="bootstrap-test", **changes)


# ---- the parts ----

def test_the_parts_are_made_once_and_share_the_given_channels(engine, tmp_path) -> None:
    channels = RecordingChannel.for_every_kind()
    parts = bootstrap(settings_in(tmp_path), engine=engine, channels=channels)
    assert parts.channels is channels and parts.outbox_sender().channels is channels
    assert parts.matcher is parts.matcher and parts.digests is parts.digests
    assert parts.digests.signer is parts.signer and parts.notices.signer is parts.signer
    assert parts.digests.renderer is parts.renderer and parts.notices.renderer is parts.renderer


def test_a_database_that_init_has_not_made_is_refused(sqlite_url) -> None:
    with pytest.raises(SchemaOutOfDate, match="digestbot init"):
        bootstrap(Settings(database_url=sqlite_url), engine=connect(sqlite_url))


def test_given_channels_need_no_file_backend_by_name(engine, tmp_path) -> None:
    parts = bootstrap(settings_in(tmp_path), engine=engine, channels=RecordingChannel.for_every_kind())
    parts.refuse_file_backends()  # fakes were given: nothing goes to files unasked
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY is not set"):
        bootstrap(settings_in(tmp_path), engine=engine).refuse_file_backends()


# ---- threads: whoever starts one stops it ----

def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


def test_the_web_app_starts_no_thread_until_its_server_starts_the_site(engine, tmp_path) -> None:
    before = _threads()
    app = create_app(bootstrap(settings_in(tmp_path, email_backend="file"), engine=engine))
    assert _threads() == before
    site = site_of(app)
    site.start()
    try:
        assert "courier" in _threads() - before
    finally:
        site.stop()
    assert "courier" not in _threads()


# ---- the command line ----

def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    settings = {"DIGESTBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", "DIGESTBOT_SETTLE_SECONDS": "0",
                "COLUMNS": "250", **env}
    return subprocess.run([sys.executable, "-m", "digestbot", *args], cwd=tmp_path, env=base_env(**settings),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [["run", "--once"], ["worker"], ["serve", "--port", "1"]])
def test_long_running_commands_refuse_to_write_production_mail_into_files(tmp_path, command) -> None:
    assert _run(tmp_path, "init").returncode == 0
    proc = _run(tmp_path, *command)
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "SENDGRID_API_KEY is not set" in line and "DIGESTBOT_EMAIL_BACKEND=file" in line
    # serve sends no Slack message; the bot does.
    assert ("SLACK_BOT_TOKEN" in line) == (command[0] != "serve")


def test_the_file_backends_asked_for_by_name_run(tmp_path) -> None:
    assert _run(tmp_path, "init").returncode == 0
    proc = _run(tmp_path, "run", "--once", **FILES)
    assert proc.returncode == 0, proc.stderr


def test_a_misspelt_variable_stops_every_command_with_the_nearest_name(tmp_path) -> None:
    proc = _run(tmp_path, "status", DIGESTBOT_SETTLE_SECOND="1")
    assert proc.returncode == 2
    assert one_line_error(proc) == ("error: DIGESTBOT_SETTLE_SECOND is not a digestbot setting; "
                                    "did you mean DIGESTBOT_SETTLE_SECONDS?")


def test_serve_stops_its_threads_and_exits_on_sigterm(tmp_path) -> None:
    assert _run(tmp_path, "init").returncode == 0
    port = free_port()
    env = base_env(DIGESTBOT_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}", **FILES)
    server = subprocess.Popen([sys.executable, "-m", "digestbot", "serve", "--port", str(port)], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    assert json.load(answer)["status"] == "ok"
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, server.stdout.read()
                time.sleep(0.2)
        os.kill(server.pid, signal.SIGTERM)
        assert server.wait(timeout=20) == 0
    finally:
        if server.poll() is None:
            server.kill()
    log = server.stdout.read()
    assert "received SIGTERM: stopping" in log and log.rstrip().endswith("stopped"), log


# ---- webhook URLs are credentials ----

def test_a_webhook_url_is_never_printed_whole(tmp_path) -> None:
    assert _run(tmp_path, "init").returncode == 0
    made = _run(tmp_path, "subscribe", f"slack-webhook:{HOOK}", "diffusion", "--cadence", "instant")
    assert made.returncode == 0, made.stderr
    listed = _run(tmp_path, "subscriptions")
    as_json = _run(tmp_path, "subscriptions", "--json")
    for proc in (made, listed, as_json):
        assert HOOK not in proc.stdout + proc.stderr
        assert "slack-webhook:https://hooks.slack.com/…/uvwx" in proc.stdout
    assert json.loads(as_json.stdout)[0]["recipient"] == "slack-webhook:https://hooks.slack.com/…/uvwx"


# ---- behind a reverse proxy ----

@pytest.mark.parametrize("proxies", [0, 1])
def test_behind_a_proxy_each_client_has_its_own_limit(engine, tmp_path, proxies) -> None:
    """waitress deletes X-Forwarded-For unless told otherwise: with DIGESTBOT_PROXY_COUNT the
    clients behind the proxy are told apart by it; without, a forged header changes nothing."""
    import http.client
    import re

    import waitress.server

    from digestbot.cli.processes import waitress_options

    settings = settings_in(tmp_path, email_backend="file", web_client_limit=1, proxy_count=proxies)
    app = create_app(bootstrap(settings, engine=engine))
    port = free_port()
    server = waitress.server.create_server(app, host="127.0.0.1", port=port, threads=2,
                                           **waitress_options(settings))
    threading.Thread(target=server.run, daemon=True).start()

    def ask_for_link(client: str) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/manage")
        page = connection.getresponse()
        cookie, body = page.getheader("Set-Cookie").split(";", 1)[0], page.read()
        csrf = re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()
        connection.request("POST", "/manage", body=f"csrf={csrf}&email=ada%40example.org",
                           headers={"Cookie": cookie, "X-Forwarded-For": client,
                                    "Content-Type": "application/x-www-form-urlencoded"})
        answer = connection.getresponse()
        answer.read()
        connection.close()
        return answer.status

    try:
        assert ask_for_link("203.0.113.7") == 200
        assert ask_for_link("203.0.113.7") == 429  # the same client, over its limit
        # Another client behind the proxy has its own limit; with no proxy, the header is ignored.
        assert ask_for_link("198.51.100.9") == (200 if proxies else 429)
    finally:
        server.close()
