"""The web pages in a real browser: subscribe → confirm from the emailed link → manage → unsubscribe.

Headless Chromium driven by Playwright's sync API, against `digestbot serve` run as a user runs
it (a subprocess on a free port, a SQLite file, the file email backend). Playwright's own
browser downloads are not used: the browser is the system's Chromium, DIGESTBOT_CHROMIUM
(default /usr/bin/chromium; `make test` installs Debian's package when it can). Without it the
test skips, unless DIGESTBOT_REQUIRE_BROWSER=1 (as .ci/run sets), which makes it fail instead.

A screenshot of every page is written to DIGESTBOT_SCREENSHOTS if set, else to pytest's tmp_path.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import NAMES, SAMPLES, base_env

CHROMIUM = os.environ.get("DIGESTBOT_CHROMIUM", "/usr/bin/chromium")
REQUIRE_BROWSER = os.environ.get("DIGESTBOT_REQUIRE_BROWSER") == "1"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EMAIL = "ada@example.org"
QUERY = "diffusion"
EDITED_QUERY = "diffusion OR video"
TIME_ZONE = "Europe/Paris"


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (make install)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set DIGESTBOT_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def chromium() -> str:
    problem = _missing_browser()
    if problem is not None:
        if REQUIRE_BROWSER:
            pytest.fail(problem + " (DIGESTBOT_REQUIRE_BROWSER=1)")
        pytest.skip(problem)
    return CHROMIUM


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Site:
    """A running `digestbot serve` and the command line on the same database."""

    home: Path
    base_url: str
    env: dict[str, str]
    log: Path
    seen: set[Path] = field(default_factory=set)  # .eml files already read by the test

    @property
    def emails(self) -> Path:
        return self.home / "outbox" / "email"

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "digestbot", *args], cwd=self.home, env=self.env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"digestbot {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
        return proc

    def cli_json(self, *args: str):
        return json.loads(self.cli(*args, "--json").stdout)

    def outbox_files(self) -> list[Path]:
        return sorted(p for p in (self.home / "outbox").rglob("*") if p.is_file())

    def new_email(self, timeout: float = 15.0) -> email.message.EmailMessage:
        """The one .eml that appeared since the last call (polls: the server sends from a thread)."""
        deadline = time.monotonic() + timeout
        while True:
            fresh = [p for p in self.emails.glob("*.eml") if p not in self.seen] if self.emails.is_dir() else []
            if fresh or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert fresh, f"no email in {self.emails} after {timeout:.0f} s; server log:\n{self.log_text()}"
        assert len(fresh) == 1, f"expected one new email, got {[p.name for p in fresh]}"
        self.seen.add(fresh[0])
        return email.message_from_bytes(fresh[0].read_bytes(), policy=email.policy.default)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]


@pytest.fixture(scope="module")
def site(chromium, tmp_path_factory) -> Iterator[Site]:
    home = tmp_path_factory.mktemp("web")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = base_env(
        DIGESTBOT_DATABASE_URL=f"sqlite:///{home / 'db.sqlite'}", DIGESTBOT_OUTBOX_DIR=str(home / "outbox"),
        DIGESTBOT_EMAIL_BACKEND="file", DIGESTBOT_SLACK_BACKEND="file", DIGESTBOT_SETTLE_SECONDS="0",
        DIGESTBOT_BASE_URL=base_url, COLUMNS="250",
    )
    log = home / "serve.log"
    s = Site(home=home, base_url=base_url, env=env, log=log)
    s.cli("init")
    s.cli("ingest", *(str(SAMPLES / name) for name in NAMES[:2]))
    with open(log, "wb") as log_file:
        server = subprocess.Popen([sys.executable, "-m", "digestbot", "serve", "--port", str(port)], cwd=home,
                                  env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert server.poll() is None, f"digestbot serve exited {server.returncode}:\n{s.log_text()}"
            try:
                with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, f"/healthz not 200 within 20 s:\n{s.log_text()}"
            time.sleep(0.1)
        yield s
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@dataclass
class Browser:
    page: object
    shots: Path
    problems: list[str]
    taken: list[Path] = field(default_factory=list)

    def shot(self, name: str) -> None:
        path = self.shots / f"{len(self.taken) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)


@pytest.fixture
def browser(chromium, tmp_path) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ["DIGESTBOT_SCREENSHOTS"]) if os.environ.get("DIGESTBOT_SCREENSHOTS") else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as playwright:
        chrome = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            context = chrome.new_context(timezone_id=TIME_ZONE, locale="en-US", color_scheme="light",
                                         viewport={"width": 1000, "height": 800})
            context.set_default_timeout(15_000)
            page = context.new_page()
            # Console errors include CSP violations and failed loads of scripts and styles.
            page.on("console", lambda message: message.type == "error"
                    and problems.append(f"console: {message.text} ({message.location.get('url') or page.url})"))
            page.on("pageerror", lambda error: problems.append(f"page error: {error} ({page.url})"))
            yield Browser(page=page, shots=shots, problems=problems)
            context.close()
        finally:
            chrome.close()


def _link(message: email.message.EmailMessage, path: str) -> str:
    text = message.get_body(preferencelist=("plain",)).get_content()
    links = re.findall(r"https?://\S+", text)
    found = [link for link in links if f"/{path}/" in link]
    assert found, f"no /{path}/ link in:\n{text}"
    return found[0]


def test_subscribe_confirm_manage_unsubscribe(site: Site, browser: Browser):
    try:
        _walk_through(site, browser)
    except BaseException:
        with contextlib.suppress(Exception):  # where it stopped, beside the screenshots taken so far
            browser.shot("failure")
        raise


def _walk_through(site: Site, browser: Browser) -> None:
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)
    page = browser.page

    # ---- subscribe: the query is checked as you type, with a preview -------------------------
    page.goto(site.base_url + "/")
    expect(page.locator("h1")).to_have_text("Get new papers on what you follow")
    query = page.locator("#query")
    query.fill("diffusion (")
    error = page.locator("#query-check .query-error")
    expect(error).to_contain_text("Unclosed '(' (column 11).")
    expect(error.locator("pre")).to_have_text("diffusion (\n" + " " * 10 + "^")
    expect(query).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#preview")).to_be_hidden()

    expected = site.cli_json("search", QUERY, "--limit", "500")
    assert len(expected) > 10  # the first two sample dumps, ingested just now: within the preview's 14 days
    query.fill(QUERY)
    expect(page.locator("#preview")).to_be_visible()
    expect(error).to_have_count(0)
    expect(query).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#preview-count")).to_have_text(f"{len(expected)} papers matched; the best 10:")
    expect(page.locator("#preview-list li")).to_have_text(  # best first, as `digestbot search` ranks them
        [f"{paper['title']} · {paper['first_seen'][:10]}" for paper in expected[:10]])

    page.get_by_label("Email").fill(EMAIL)
    weekday = page.locator("form.subscribe label.weekday")
    expect(weekday).to_be_hidden()  # daily by default
    page.get_by_label("How often").select_option("weekly")
    expect(weekday).to_be_visible()
    expect(page.get_by_label("Time zone")).to_have_value(TIME_ZONE)  # the browser's zone, not UTC
    browser.shot("subscribe")
    page.get_by_role("button", name="Subscribe").click()
    expect(page).to_have_url(site.base_url + "/subscribed")
    expect(page.locator("h1")).to_have_text("Check your inbox")
    browser.shot("subscribed")

    # ---- the confirmation email, from the file outbox ---------------------------------------
    confirmation = site.new_email()
    assert confirmation["To"] == EMAIL
    assert confirmation["Subject"] == "Confirm your digestbot subscription"
    assert site.outbox_files() == sorted(site.seen)  # nothing else was sent
    confirm_url = _link(confirmation, "confirm")
    assert confirm_url.startswith(site.base_url + "/confirm/")
    pending = site.cli_json("subscriptions", "--all")
    assert [(s["recipient"], s["query"], s["active"]) for s in pending] == [(EMAIL, QUERY, False)]

    page.goto(confirm_url)
    expect(page.locator("h1")).to_have_text("One click to confirm")
    expect(page.locator("ul.subs")).to_contain_text(f"{QUERY} · weekly on Mon at 08:00 ({TIME_ZONE})")
    browser.shot("confirm")
    page.get_by_role("button", name="Yes, confirm").click()
    expect(page).to_have_url(re.compile(re.escape(site.base_url) + "/manage/[^/]+$"))
    manage_url = page.url
    expect(page.locator(".notice")).to_have_text("Your subscription is confirmed. "
                                                 "The first papers come with your next weekly digest.")
    subscription_id = site.cli_json("subscriptions")[0]["id"]
    sub = page.locator(f"#sub-{subscription_id}")
    expect(sub.locator(".state")).to_have_text("active")
    expect(sub.locator("code.query")).to_have_text(QUERY)
    browser.shot("manage-confirmed")

    # ---- manage: pause, edit, a bad edit ----------------------------------------------------
    sub.get_by_role("button", name="Pause").click()
    expect(page.locator(".notice")).to_have_text(f"“{QUERY}” is paused.")
    expect(sub.locator(".state")).to_have_text("paused")
    expect(sub.get_by_role("button", name="Resume")).to_be_visible()
    assert site.cli_json("subscriptions") == []  # paused: not active

    sub.locator("summary", has_text="Edit").click()
    edit_query = sub.locator("details.edit input[name=query]")
    expect(edit_query).to_be_visible()
    expect(sub.locator("details.edit select[name=tz]")).to_have_value(TIME_ZONE)
    edit_query.fill(EDITED_QUERY)
    sub.get_by_role("button", name="Save").click()
    expect(page.locator(".notice")).to_have_text(f"“{EDITED_QUERY}” is saved.")
    expect(sub.locator("code.query")).to_have_text(EDITED_QUERY)
    expect(sub.locator(".state")).to_have_text("paused")
    expect(sub.locator(".small").first).to_have_text(f"weekly on Mon at 08:00 ({TIME_ZONE})")

    sub.locator("summary", has_text="Edit").click()
    edit_query.fill("diffusion OR -video")
    sub.get_by_role("button", name="Save").click()
    # Refused: the page comes back with the edit form open and the error under its query box.
    expect(sub.locator("details.edit")).to_have_attribute("open", "")
    bad = sub.locator("details.edit form label:has(input[name=query]) + .query-error")
    expect(bad).to_be_visible()
    expect(bad.locator("p")).to_have_text(
        "An exclusion cannot be one side of OR: it would match almost everything (column 14).")
    expect(bad.locator("pre")).to_have_text("diffusion OR -video\n" + " " * 13 + "^")
    expect(edit_query).to_have_value("diffusion OR -video")
    expect(page.locator(".notice")).to_have_count(0)
    browser.shot("manage-bad-query")
    # The one console error expected: Chromium logs the 400 that comes back with the form.
    refused = [p for p in browser.problems if "status of 400" in p and p.endswith(f"/{subscription_id}/edit)")]
    assert len(refused) == 1, browser.problems
    browser.problems.remove(refused[0])
    assert [s["query"] for s in site.cli_json("subscriptions", "--all")] == [EDITED_QUERY]  # unchanged

    sub.get_by_role("button", name="Resume").click()
    expect(page).to_have_url(manage_url)
    expect(page.locator(".notice")).to_have_text(f"“{EDITED_QUERY}” is on again.")
    expect(sub.locator(".state")).to_have_text("active")
    browser.shot("manage-resumed")

    # ---- a digest, and its unsubscribe link -------------------------------------------------
    site.cli("ingest", *(str(SAMPLES / name) for name in NAMES[2:]))
    when = (datetime.now(UTC) + timedelta(days=8)).isoformat()
    built = site.cli_json("digest", "--now", when)["digests"]
    assert [(d["recipient"], d["cadence"]) for d in built] == [(EMAIL, "weekly")], built
    site.cli("send")
    digest = site.new_email(timeout=5)
    assert digest["To"] == EMAIL
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsubscribe_url = digest["List-Unsubscribe"].strip("<>")
    assert unsubscribe_url.startswith(site.base_url + "/unsubscribe/")
    assert _link(digest, "unsubscribe").startswith(site.base_url + "/unsubscribe/")
    assert site.outbox_files() == sorted(site.seen)

    page.goto(unsubscribe_url)
    expect(page.locator("h1")).to_have_text("Unsubscribe?")
    expect(page.locator("ul.subs")).to_have_text(EDITED_QUERY)
    buttons = page.locator("main").get_by_role("button")
    expect(buttons).to_have_count(1)
    expect(buttons).to_have_text("Unsubscribe")
    assert [s["id"] for s in site.cli_json("subscriptions")] == [subscription_id]  # the GET changed nothing
    browser.shot("unsubscribe")
    buttons.click()
    expect(page.locator("h1")).to_have_text("You are unsubscribed")
    expect(page.locator("main [role=status]")).to_contain_text(EMAIL)
    expect(page.locator("main").get_by_role("button")).to_have_count(0)
    browser.shot("unsubscribed")
    ended = site.cli_json("subscriptions", "--all")
    assert [(s["id"], s["query"], s["active"]) for s in ended] == [(subscription_id, EDITED_QUERY, False)]

    # ---- what the browser and the server said along the way ---------------------------------
    assert browser.problems == []
    assert [p.name for p in browser.taken] == [
        "01-subscribe.png", "02-subscribed.png", "03-confirm.png", "04-manage-confirmed.png",
        "05-manage-bad-query.png", "06-manage-resumed.png", "07-unsubscribe.png", "08-unsubscribed.png"]
    for path in browser.taken:
        assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    server_log = site.log_text()
    assert "Traceback" not in server_log and not re.search(r" 5\d\d$", server_log, re.M), server_log
