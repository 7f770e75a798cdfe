"""Email through any SMTP server, with the standard library's ``smtplib``."""

from __future__ import annotations

import smtplib
import ssl
from typing import Any

from digestbot.channels.base import Channel, PermanentDeliveryError, TransientDeliveryError
from digestbot.channels.mime import build_email
from digestbot.errors import ConfigError


class SmtpChannel(Channel):
    """One SMTP session per message; the provider id is the message's Message-ID.

    Port 465 means implicit TLS (``SMTP_SSL``). Otherwise ``starttls`` decides: ``auto`` upgrades
    when the server offers STARTTLS, ``yes`` refuses to send without it, ``no`` never upgrades.
    Replies 4xx (greylisting, full queues) are transient, 5xx permanent.
    """

    kind = "email"

    def __init__(
        self, host: str, port: int = 25, username: str = "", password: str = "",
        starttls: str = "auto", timeout: float = 20.0,
    ) -> None:
        if starttls not in ("auto", "yes", "no"):
            raise ConfigError(f"DIGESTBOT_SMTP_STARTTLS must be auto, yes or no, not {starttls!r}")
        self.host, self.port, self.starttls, self.timeout = host, port, starttls, timeout
        self.username, self._password = username, password

    def __repr__(self) -> str:
        return f"SmtpChannel({self.host!r}, {self.port}, username={self.username!r}, starttls={self.starttls!r})"

    def send(self, payload: dict[str, Any]) -> str | None:
        try:
            message = build_email(payload)
        except ValueError as exc:
            raise PermanentDeliveryError(f"malformed email: {exc}") from None
        try:
            with self._session() as smtp:
                smtp.send_message(message, from_addr=payload["from_email"], to_addrs=[payload["to"]])
        except smtplib.SMTPRecipientsRefused as exc:
            replies = list(exc.recipients.values())
            text = "; ".join(f"{code} {_text(reply)}" for code, reply in replies)
            if all(400 <= code < 500 for code, _ in replies):
                raise TransientDeliveryError(f"SMTP server deferred the recipient: {text}") from None
            raise PermanentDeliveryError(f"SMTP server refused the recipient: {text}") from None
        except smtplib.SMTPResponseException as exc:  # sender refused, DATA refused, auth failed, ...
            text = f"{exc.smtp_code} {_text(exc.smtp_error)}"
            if exc.smtp_code >= 500:
                raise PermanentDeliveryError(f"SMTP server refused the email: {text}") from None
            raise TransientDeliveryError(f"SMTP server deferred the email: {text}") from None
        except smtplib.SMTPServerDisconnected as exc:
            raise TransientDeliveryError(f"SMTP server disconnected: {exc}") from None
        except smtplib.SMTPNotSupportedError as exc:  # no STARTTLS or AUTH where the settings need it
            raise PermanentDeliveryError(f"SMTP server lacks a needed feature: {exc}") from None
        except smtplib.SMTPException as exc:  # e.g. no usable AUTH method: a settings problem
            raise PermanentDeliveryError(f"SMTP failed: {exc}") from None
        except OSError as exc:  # refused connection, timeout, TLS failure
            raise TransientDeliveryError(f"SMTP server {self.host}:{self.port} unreachable: {exc!r}") from exc
        return str(message["Message-ID"])

    def _session(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        if self.port == 465:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.port != 465 and self.starttls != "no":
                smtp.ehlo()
                if smtp.has_extn("starttls"):
                    smtp.starttls(context=context)
                    smtp.ehlo()
                elif self.starttls == "yes":
                    raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
            if self.username:
                smtp.login(self.username, self._password)
        except BaseException:
            smtp.close()
            raise
        return smtp


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
