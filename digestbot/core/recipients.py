"""Recipients: where a digest goes. Parsed from the forms people write them in."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from digestbot.errors import UsageError

Kind = Literal["email", "slack", "slack-webhook"]

_CHANNEL_NAME = re.compile(r"#[a-z0-9][a-z0-9._-]{0,79}")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{8,20}")
MAX_URL = 500


@dataclass(frozen=True, slots=True)
class Recipient:
    kind: Kind
    target: str  # the address, channel or webhook URL

    @property
    def address(self) -> str:
        """The canonical written form, the recipient's identity in the store."""
        return self.target if self.kind == "email" else f"{self.kind}:{self.target}"

    @property
    def shown(self) -> str:
        """The address as it may be printed or logged (see ``shown``)."""
        return shown(self.address)


def shown(address: str) -> str:
    """A recipient address as it may be printed or logged. A Slack webhook URL is a credential
    (whoever has it can post to the channel): only its host and last four characters show,
    ``slack-webhook:https://hooks.slack.com/…/a1B2``, enough to tell two webhooks apart."""
    if not address.startswith("slack-webhook:"):
        return address
    url = address.removeprefix("slack-webhook:")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # not even a URL
        host = None
    if not (host and parts.scheme):
        return "slack-webhook:…"
    tail = url[-4:] if len(url) >= 24 else ""  # a short URL would give too much away
    return f"slack-webhook:{parts.scheme}://{host}/…/{tail}"


def masked(address: str) -> str:
    """A recipient as logs carry it: an email address as its first letter and domain
    (``a…@example.org``), a webhook as ``shown`` gives it, a Slack channel as it is."""
    if address.startswith(("slack:", "slack-webhook:")):
        return shown(address)
    local, at, domain = address.rpartition("@")
    return f"{local[:1]}…@{domain}" if at else "…"


def parse_recipient(text: str, *, private_webhooks: bool = False) -> Recipient:
    """``alice@example.org``, ``slack:#ml-papers``, ``slack:C0123ABCD`` or ``slack-webhook:https://…``.

    A webhook URL must point at a public host (see ``_webhook_problem``) unless
    ``private_webhooks`` (DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS, or an address read back from the store).
    """
    text = text.strip()
    if text.startswith("slack-webhook:"):
        url = text.removeprefix("slack-webhook:")
        problem = _webhook_problem(url, private_webhooks)
        if problem:
            raise UsageError(f"bad recipient {shown(text)!r}: {problem}")
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


# Names that only ever mean this machine or the local network (RFC 6761, 6762, 8375).
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".lan")
# IPv4-compatible (deprecated) and NAT64 addresses: the last 32 bits are an IPv4 address.
_EMBEDDING_IPV4 = (ipaddress.IPv6Network("::/96"), ipaddress.IPv6Network("64:ff9b::/96"))


def _webhook_problem(url: str, private: bool) -> str | None:
    """Why ``url`` cannot be a Slack webhook, or None.

    digestbot posts every digest to it: a URL pointing inside the network it runs in would let
    whoever may add recipients make it post there. So: https on port 443, no credentials, and a
    host that is a public name or a public address. Names are not resolved here (a public name
    may still resolve to a private address); literal addresses are checked in every form the
    resolver accepts (``127.1``, ``2130706433``, ``0x7f.0.0.1``, ``[::ffff:127.0.0.1]``).
    """
    if len(url) > MAX_URL or any(c.isspace() or not c.isprintable() for c in url):
        return "the webhook URL is too long or has spaces"
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    try:
        port = parts.port
    except ValueError:
        return "the webhook URL has a bad port"
    # Plain http only for a server on this machine (a test or a local relay).
    if not host or not (parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host))):
        return "a Slack webhook needs an https:// URL"
    if parts.username is not None or parts.password is not None:
        return "a Slack webhook URL carries no user name or password"
    if private:
        return None
    address = _literal_address(host)
    if address is not None:
        if not address.is_global or address.is_multicast:
            return (f"the webhook points at a private, loopback or reserved address ({address}); "
                    "set DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS=1 to allow it")
    elif "." not in host or host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
        return (f"the webhook points at a local host name ({host}); "
                "set DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS=1 to allow it")
    if port not in (None, 443):
        return "a Slack webhook is on the standard https port (443)"
    return None


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` is written as, or None for a name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:  # the resolver also reads 127.1, 2130706433 and 0x7f.0.0.1 as IPv4 addresses
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return None
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address inside an IPv6 one is judged as itself.
        if address.ipv4_mapped is not None or address.sixtofour is not None:
            return address.ipv4_mapped or address.sixtofour
        if any(address in network for network in _EMBEDDING_IPV4):
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def _is_loopback(host: str) -> bool:
    address = _literal_address(host)
    return address.is_loopback if address is not None else host == "localhost"
