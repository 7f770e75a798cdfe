"""Build the MIME message of an email payload: what the SMTP and file channels deliver."""

from __future__ import annotations

from collections.abc import Mapping
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any


def build_email(payload: Mapping[str, Any]) -> EmailMessage:
    """A multipart/alternative message: the text part first, then the HTML part.

    Headers with non-ASCII text are RFC 2047-encoded and both bodies are quoted-printable
    UTF-8, so the message is 7-bit clean and needs no SMTPUTF8 or 8BITMIME from the server.

    :raises ValueError: an address or header is malformed (a CR/LF in a value, a duplicate
        Subject, ...): the message can never be sent as it is
    """
    try:
        message = EmailMessage()
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
