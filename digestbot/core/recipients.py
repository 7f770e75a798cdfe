"""Recipients: where a digest goes. Parsed from the forms people write them in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from digestbot.errors import UsageError

Kind = Literal["email", "slack", "slack-webhook"]

_CHANNEL_NAME = re.compile(r"#[a-z0-9][a-z0-9._-]{0,79}")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{8,20}")
MAX_URL = 500
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True, slots=True)
class Recipient:
    kind: Kind
    target: str  # the address, channel or webhook URL

    @property
    def address(self) -> str:
        """The canonical written form, the recipient's identity in the store."""
        return self.target if self.kind == "email" else f"{self.kind}:{self.target}"


def parse_recipient(text: str) -> Recipient:
    """``alice@example.org``, ``slack:#ml-papers``, ``slack:C0123ABCD`` or ``slack-webhook:https://…``."""
    text = text.strip()
    if text.startswith("slack-webhook:"):
        url = text.removeprefix("slack-webhook:")
        parts = urlsplit(url)
        # Plain http only for a server on this machine (a test or a local relay).
        secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS)
        if not secure or not parts.hostname:
            raise UsageError(f"bad recipient {text[:80]!r}: a Slack webhook needs an https:// URL")
        if len(url) > MAX_URL or any(c.isspace() or not c.isprintable() for c in url):
            raise UsageError(f"bad recipient {text[:80]!r}: the webhook URL is too long or has spaces")
        return Recipient("slack-webhook", url)
    if text.startswith("slack:"):
        channel = text.removeprefix("slack:")
        if _CHANNEL_NAME.fullmatch(channel) or _CHANNEL_ID.fullmatch(channel):
            return Recipient("slack", channel)
        raise UsageError(
            f"bad recipient {text!r}: a Slack channel is slack:#name (lowercase) or slack:C0123ABCD (its id)"
        )
    try:
        checked = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        raise UsageError(f"bad recipient {text!r}: {exc}") from None
    # Mailboxes are case-insensitive in practice: one person, one recipient.
    return Recipient("email", checked.normalized.lower())
