"""A feedback click in a real browser (issue 13): the "More like this" link of a digest written as
a real .eml by the file backend, opened in headless Chromium against `digestbot serve`. A link
scanner's GET records nothing; the page records the vote by itself (script), as a person's click
does. Uses the server and browser of test_browser.py (skipped without Chromium, as it is)."""

from __future__ import annotations

import contextlib
import re
import urllib.request
from datetime import UTC, datetime, timedelta

from test_browser import Browser, Site, browser, chromium, site  # noqa: F401 - the fixtures

EMAIL = "grace@example.org"


def test_a_feedback_link_from_a_real_email_records_the_vote(site: Site, browser: Browser) -> None:
    try:
        _click_through(site, browser)
    except BaseException:
        with contextlib.suppress(Exception):
            browser.shot("feedback-failure")
        raise


def _click_through(site: Site, browser: Browser) -> None:
    from playwright.sync_api import expect

    site.cli("subscribe", EMAIL, "diffusion", "--backfill", "30")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    site.cli("digest", "--recipient", EMAIL, "--now", tomorrow.isoformat())
    site.cli("send")
    message = site.new_email()
    text = message.get_body(preferencelist=("plain",)).get_content()
    more = re.findall(r"More like this: (\S+)", text)
    less = re.findall(r"Less like this: (\S+)", text)
    first_title = re.findall(r"^1\. (.+)$", text, flags=re.MULTILINE)[0]
    assert more and len(more) == len(less)
    assert "More like this</a>" in message.get_body(preferencelist=("html",)).get_content()

    with urllib.request.urlopen(less[0], timeout=10) as response:  # a mail scanner fetches the link
        assert response.status == 200
    assert site.cli_json("feedback", EMAIL) == []

    page = browser.page
    page.goto(more[0])
    expect(page.locator("#recorded")).to_be_visible()  # the page posted the vote by itself
    expect(page.locator("#recorded")).to_contain_text(first_title)
    browser.shot("feedback-recorded")
    votes = site.cli_json("feedback", EMAIL)
    assert [(v["paper"]["title"], v["vote"]) for v in votes] == [(first_title, "up")]
    assert browser.problems == []  # no CSP violation, no script error
    recommended = site.cli_json("recommend", EMAIL, "--limit", "3")
    assert len(recommended) == 3 and first_title not in [p["title"] for p in recommended]
