"""Build the MIME message of an email payload: what the SMTP and file channels deliver."""

from __future__ import annotations

import email.policy
import sys
from collections.abc import Mapping
from email.errors import HeaderParseError
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import Policy
from email.utils import formatdate
from typing import Any

# Headers that programs read exactly as written: mail clients and Gmail's one-click
# unsubscribe take List-Unsubscribe raw (RFC 2369 forbids even whitespace inside its <URL>),
# and threading and deduplication compare Message-ID byte for byte.
RAW_HEADERS = ("Message-ID", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post")


class RawHeader(BaseHeader):
    """An ASCII header written as given: folded only at its own whitespace, never RFC 2047-encoded.

    The standard library's default (unstructured) header encodes any word longer than a line
    (a signed unsubscribe URL is one) as encoded-words, only to be able to wrap it: that made
    ``List-Unsubscribe: =?utf-8?q?=3Chttps=3A//…`` which one-click unsubscribe cannot read.
    """

    max_count = 1

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        if not value.isascii():
            raise ValueError(f"header value is not ASCII: {value[:100]!r}")
        kwds["parse_tree"] = None
        kwds["decoded"] = value

    def fold(self, *, policy: Policy) -> str:
        limit = policy.max_line_length or sys.maxsize
        lines = [f"{self.name}:"]
        for index, word in enumerate(str(self).split()):
            if index and len(lines[-1]) + 1 + len(word) > limit:
                lines.append("")  # a word longer than a line stays whole: lines may reach 998
            lines[-1] += " " + word
        return policy.linesep.join(lines) + policy.linesep


_registry = HeaderRegistry()
for _name in RAW_HEADERS:
    _registry.map_to_type(_name, RawHeader)
POLICY = email.policy.default.clone(header_factory=_registry)


def build_email(payload: Mapping[str, Any]) -> EmailMessage:
    """A multipart/alternative message: the text part first, then the HTML part.

    Headers with non-ASCII text (Subject, the sender's name) are RFC 2047-encoded and both
    bodies are quoted-printable UTF-8, so the message is 7-bit clean and needs no SMTPUTF8 or
    8BITMIME from the server; the RAW_HEADERS are written as they are.

    :raises ValueError: an address or header is malformed (a CR/LF in a value, a duplicate
        Subject, a non-ASCII Message-ID, ...): the message can never be sent as it is
    """
    try:
        message = EmailMessage(policy=POLICY)
        message["From"] = Address(display_name=payload.get("from_name") or "", addr_spec=payload["from_email"])
        message["To"] = Address(addr_spec=payload["to"])
        message["Subject"] = payload["subject"]
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = payload["message_id"]
        for name, value in (payload.get("headers") or {}).items():
            message[name] = value
        message.set_content(payload["text"], cte="quoted-printable")
        message.add_alternative(payload["html"], subtype="html", cte="quoted-printable")
    except HeaderParseError as exc:  # raised by Address for some bad addresses, and not a ValueError
        raise ValueError(str(exc)) from None
    return message
