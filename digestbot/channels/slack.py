"""Slack messages through the Web API (bot token) or incoming webhooks, with ``slack_sdk``."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.http_retry import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from digestbot.channels.base import Channel, PermanentDeliveryError, TransientDeliveryError
from digestbot.errors import ConfigError

# Slack errors that say "try again later"; every other error code is about the message itself.
_TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"})


def slack_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``chat.postMessage``; never ``link_names`` or ``parse=full``."""
    return {
        "channel": payload["channel"],
        "text": payload["text"],
        "blocks": payload["blocks"],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def webhook_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body posted to an incoming webhook (whose URL is ``payload["channel"]``)."""
    body = slack_message(payload)
    del body["channel"]
    return body


class Pacer:
    """At most one send per ``interval`` seconds per key (a Slack channel), across threads.

    Each caller reserves the next free slot under a lock, then sleeps outside it until then.
    """

    def __init__(
        self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = interval
        self._clock, self._sleep = clock, sleep
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            if len(self._next) > 10_000:  # forget keys whose slot is already free
                self._next = {k: t for k, t in self._next.items() if t > now}
            start = max(now, self._next.get(key, now))
            self._next[key] = start + self.interval
        if start > now:
            self._sleep(start - now)

    def defer(self, key: str, seconds: float) -> None:
        """Slack said to wait: hold the key's next slot back for ``seconds``."""
        with self._lock:
            self._next[key] = max(self._next.get(key, 0.0), self._clock() + seconds)


# Shared by every Slack channel object, so the pace holds however many are built.
SLACK_PACER = Pacer(1.0)


class SlackChannel(Channel):
    """Posts with ``chat.postMessage`` using a bot token; the provider id is the message ``ts``.

    The SDK itself retries (up to 2 times in all) on 429, 500/503 and connection errors,
    sleeping as long as Slack asks; what still fails is mapped to a delivery error.
    One ``WebClient`` is shared: it is a stateless urllib caller, safe across threads.
    """

    kind = "slack"

    def __init__(
        self, token: str, base_url: str = "https://slack.com/api/", timeout: float = 20.0,
        pacer: Pacer | None = None,
    ) -> None:
        if not token:
            raise ConfigError("Slack needs a bot token", hint="set SLACK_BOT_TOKEN")
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.pacer = pacer or SLACK_PACER
        self._client = WebClient(
            token=token,
            base_url=self.base_url,
            timeout=timeout,  # type: ignore[arg-type]  # annotated int, passed on to urllib as is
            retry_handlers=[
                RateLimitErrorRetryHandler(max_retry_count=2),
                ServerErrorRetryHandler(max_retry_count=2),
                ConnectionErrorRetryHandler(max_retry_count=2),
            ],
        )

    def __repr__(self) -> str:
        return f"SlackChannel(token='***', base_url={self.base_url!r})"

    def send(self, payload: dict[str, Any]) -> str | None:
        channel = payload["channel"]
        pace_key = f"{self.base_url}|{channel}"
        self.pacer.wait(pace_key)
        try:
            response = self._client.chat_postMessage(
                channel=channel,
                text=payload["text"],
                blocks=payload["blocks"],
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            error = _error_code(exc.response.data)
            status = exc.response.status_code
            if status == 429 or error == "ratelimited":
                retry_after = _retry_after(exc.response.headers)
                self.pacer.defer(pace_key, retry_after or self.pacer.interval)
                raise TransientDeliveryError(f"Slack rate limit on {channel}", retry_after) from None
            if status >= 500 or error in _TRANSIENT_ERRORS:
                raise TransientDeliveryError(f"Slack error {status}: {error}") from None
            raise PermanentDeliveryError(f"Slack refused the message to {channel}: {error}") from None
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, refused or reset
            raise TransientDeliveryError(f"Slack unreachable: {exc!r}") from exc
        return response.get("ts")


class SlackWebhookChannel(Channel):
    """Posts to the incoming-webhook URL in ``payload["channel"]``; no provider id.

    ``WebhookClient.send`` returns HTTP errors as a response instead of raising, and its
    default handler retries a failed connection once. Messages never include the URL,
    which is a credential.
    """

    kind = "slack-webhook"

    def __init__(self, timeout: float = 20.0, pacer: Pacer | None = None) -> None:
        self.timeout = timeout
        self.pacer = pacer or SLACK_PACER

    def send(self, payload: dict[str, Any]) -> str | None:
        url = payload["channel"]
        where = urlsplit(url).netloc or "webhook"
        self.pacer.wait(url)
        try:
            response = WebhookClient(url=url, timeout=self.timeout).send(  # type: ignore[arg-type]
                text=payload["text"], blocks=payload["blocks"], unfurl_links=False, unfurl_media=False
            )
        except SlackRequestError:  # not an http(s) URL
            raise PermanentDeliveryError("the Slack webhook address is not an http(s) URL") from None
        except (OSError, http.client.HTTPException) as exc:
            raise TransientDeliveryError(f"Slack webhook at {where} unreachable: {exc!r}") from exc
        status, body = response.status_code, (response.body or "").strip()[:300]
        if status == 200:
            return None
        if status == 429:
            retry_after = _retry_after(response.headers)
            self.pacer.defer(url, retry_after or self.pacer.interval)
            raise TransientDeliveryError(f"Slack webhook rate limit at {where}", retry_after)
        if status >= 500:
            raise TransientDeliveryError(f"Slack webhook at {where} answered {status}: {body}")
        raise PermanentDeliveryError(f"Slack webhook at {where} refused the message ({status}): {body}")


def _error_code(data: Any) -> str:
    return str(data.get("error", "")) if isinstance(data, Mapping) else ""


def _retry_after(headers: Mapping[str, Any] | None) -> float | None:
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value[0] if isinstance(value, list) else value))
            except (TypeError, ValueError):
                return None
    return None
