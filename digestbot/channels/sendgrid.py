"""Email through SendGrid's v3 Mail Send API, with the official ``sendgrid`` library."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, From, Header, Mail, To
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

from digestbot.channels.base import Channel, PermanentDeliveryError, TransientDeliveryError
from digestbot.errors import ConfigError


def sendgrid_mail(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /v3/mail/send``: text/plain content before text/html.

    The payload's Message-ID goes in ``headers`` too, so that a digest has the same id (for
    threading and duplicate detection) whichever channel sends it.
    """
    mail = Mail(
        from_email=From(payload["from_email"], payload.get("from_name") or None),
        to_emails=To(payload["to"]),
        subject=payload["subject"],
        plain_text_content=payload["text"],
        html_content=payload["html"],
    )
    mail.add_header(Header("Message-ID", payload["message_id"]))
    for name, value in (payload.get("headers") or {}).items():
        mail.add_header(Header(name, value))
    mail.add_custom_arg(CustomArg("digestbot_key", payload["key"]))  # comes back in event webhooks
    return mail.get()


class SendGridChannel(Channel):
    """Posts each email to ``{host}/v3/mail/send`` with the library's client; the provider id
    is ``X-Message-Id``.

    A client is made per call: the library's client keeps one header dict that every request
    mutates, which is not safe to share between sending threads (and it keeps no connection
    anyway). The library neither times out nor retries by itself: the timeout is passed per
    request, and 429, 5xx and network failures become ``TransientDeliveryError`` for the
    outbox to retry.
    """

    kind = "email"

    def __init__(self, api_key: str, host: str = "https://api.sendgrid.com", timeout: float = 20.0) -> None:
        if not api_key:  # the library would silently fall back to $SENDGRID_API_KEY
            raise ConfigError("SendGrid needs an API key", hint="set SENDGRID_API_KEY")
        self._api_key = api_key
        self.host = host.rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SendGridChannel(api_key='***', host={self.host!r}, timeout={self.timeout})"

    def send(self, payload: dict[str, Any]) -> str | None:
        try:
            body = sendgrid_mail(payload)
        except ApiKeyIncludedException:
            raise PermanentDeliveryError("the email body looks like it contains a SendGrid API key") from None
        client = SendGridAPIClient(api_key=self._api_key, host=self.host).client
        try:
            response = client.mail.send.post(request_body=body, timeout=self.timeout)
        except HTTPError as exc:  # the library's exception for an answer other than 2xx
            raise _delivery_error(exc) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, refused or reset
            raise TransientDeliveryError(f"SendGrid unreachable: {exc}") from exc
        return response.headers.get("X-Message-Id")


def _delivery_error(exc: HTTPError) -> TransientDeliveryError | PermanentDeliveryError:
    status = exc.status_code
    reason = _reason(exc.body) or str(exc.reason)
    if status == 429:
        return TransientDeliveryError(f"SendGrid rate limit: {reason}", _seconds_until(exc.headers))
    if status >= 500 or status == 408:
        return TransientDeliveryError(f"SendGrid {status}: {reason}")
    return PermanentDeliveryError(f"SendGrid refused the email ({status}): {reason}")


def _reason(body: bytes | str | None) -> str:
    """The ``errors[].message`` texts of a SendGrid error body, else the start of the body."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        errors = json.loads(text)["errors"]
        return "; ".join(str(e.get("message", e)) for e in errors)
    except (ValueError, KeyError, TypeError, AttributeError):
        return text.strip()[:300]


def _seconds_until(headers: Any) -> float | None:
    """Seconds until ``X-RateLimit-Reset`` (a Unix time), if the header is there and sane."""
    try:
        reset = float(headers.get("X-RateLimit-Reset"))
    except (TypeError, ValueError, AttributeError):
        return None
    return max(0.0, reset - time.time())
