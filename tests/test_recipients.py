"""How recipients are shown: a Slack webhook URL is a credential and is never printed whole."""

from __future__ import annotations

import pytest

from digestbot.core.recipients import parse_recipient, shown
from digestbot.errors import UsageError

HOOK = "https://hooks.slack.com/services/T0001/B0002/abcdefghijklmnopqrstuvwx"


def test_a_webhook_shows_its_host_and_last_four_characters_only() -> None:
    assert shown(f"slack-webhook:{HOOK}") == "slack-webhook:https://hooks.slack.com/…/uvwx"
    assert parse_recipient(f"slack-webhook:{HOOK}").shown == "slack-webhook:https://hooks.slack.com/…/uvwx"


@pytest.mark.parametrize("address", ["alice@example.org", "slack:#ml-papers", "slack:C0123ABCD"])
def test_other_recipients_show_as_they_are(address: str) -> None:
    assert shown(address) == address


@pytest.mark.parametrize("address", ["slack-webhook:nonsense", "slack-webhook:https://[::1", "slack-webhook:"])
def test_a_webhook_that_is_no_url_shows_nothing_of_itself(address: str) -> None:
    assert shown(address) == "slack-webhook:…"


def test_a_short_webhook_url_shows_no_tail() -> None:
    assert shown("slack-webhook:https://h.example/x") == "slack-webhook:https://h.example/…/"


def test_a_refused_webhook_is_named_without_its_secret() -> None:
    with pytest.raises(UsageError) as refused:
        parse_recipient(f"slack-webhook:https://user:pw@hooks.slack.com/services/T0/B0/{'s' * 20}TAIL")
    assert "ssss" not in str(refused.value) and "pw@" not in str(refused.value)
    assert "slack-webhook:https://hooks.slack.com/…/TAIL" in str(refused.value)
