"""Email through SendGrid's v3 Mail Send API, with the official ``sendgrid`` library."""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from python_http_client.exceptions import HTTPError, handle_error
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, From, Header, Mail, To
from sendgrid.helpers.mail.exceptions import ApiKeyIncludedException

from digestbot.channels.base import Channel, PermanentDeliveryError, TransientDeliveryError
from digestbot.errors import ConfigError


def sendgrid_mail(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /v3/mail/send``: text/plain content before text/html."""
    mail = Mail(
        from_email=From(payload["from_email"], payload.get("from_name") or None),
        to_emails=To(payload["to"]),
        subject=payload["subject"],
        plain_text_content=payload["text"],
        html_content=payload["html"],
    )
    for name, value in (payload.get("headers") or {}).items():
        mail.add_header(Header(name, value))
    mail.add_custom_arg(CustomArg("digestbot_key", payload["key"]))  # comes back in event webhooks
    return mail.get()


class SendGridChannel(Channel):
    """Posts each email to ``{host}/v3/mail/send``; the provider id is ``X-Message-Id``.

    The library builds the body and the headers; the POST is the request its client
    (python_http_client) would make, same URL, headers and bytes, through urllib, but with one
    opener for every call, as ``urllib.request.urlopen`` has. The client built an opener per
    request (reading the proxy settings from the environment each time) and formatted a debug
    line of the whole body even with logging off: most of the CPU of a send. So the proxy
    settings are read when the channel is made. Nothing is retried and no connection is kept,
    so there is nothing to close; 429, 5xx and network failures become
    ``TransientDeliveryError`` for the caller to retry.
    """

    kind = "email"

    def __init__(self, api_key: str, host: str = "https://api.sendgrid.com", timeout: float = 20.0) -> None:
        if not api_key:  # the library would silently fall back to $SENDGRID_API_KEY
            raise ConfigError("SendGrid needs an API key", hint="set SENDGRID_API_KEY")
        self.host = host.rstrip("/")
        self.timeout = timeout
        self._url = f"{self.host}/v3/mail/send"
        # The library's headers (authorization, user agent, accept), and the JSON content type
        # its client adds to every request with a body. Read-only from here on: safe to share.
        library = SendGridAPIClient(api_key=api_key, host=self.host).client
        self._headers = {**library.request_headers, "Content-Type": "application/json"}
        self._opener = urllib.request.build_opener()  # keeps no state between requests

    def __repr__(self) -> str:
        return f"SendGridChannel(api_key='***', host={self.host!r}, timeout={self.timeout})"

    def send(self, payload: dict[str, Any]) -> str | None:
        try:
            body = sendgrid_mail(payload)
        except ApiKeyIncludedException:
            raise PermanentDeliveryError("the email body looks like it contains a SendGrid API key") from None
        request = urllib.request.Request(self._url, data=json.dumps(body).encode("utf-8"), headers=self._headers,
                                         method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
                return response.headers.get("X-Message-Id")
        except urllib.error.HTTPError as exc:  # an answer other than 2xx: the library's exception for it
            raise _delivery_error(handle_error(exc)) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, refused or reset
            raise TransientDeliveryError(f"SendGrid unreachable: {exc}") from exc


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
