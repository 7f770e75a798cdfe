"""The one interface every delivery channel implements, and the errors it may raise.

A channel takes a rendered message (the JSON payload stored in the outbox) and delivers it.
It returns a provider id when the provider gives one, raises ``TransientDeliveryError`` for
what may work later (rate limits, 5xx, timeouts, refused connections) and
``PermanentDeliveryError`` for what never will (bad request, bad credentials, too large).

Payloads:

- email: ``{"to": str, "from_email": str, "from_name": str, "subject": str, "text": str,
  "html": str, "headers": {name: value}}``; ``text`` is listed before ``html`` when sent.
- slack (bot token) and slack-webhook: ``{"channel": str (channel name or id, or webhook URL),
  "text": fallback str, "blocks": [...], "unfurl_links": false, "unfurl_media": false}``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from digestbot.errors import DigestbotError


class DeliveryError(DigestbotError):
    """A message could not be delivered."""


class TransientDeliveryError(DeliveryError):
    """Worth retrying; ``retry_after`` (seconds) when the provider said how long to wait."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help; the message keeps the provider's reason."""


class Channel(ABC):
    """Delivers one kind of message: ``email``, ``slack`` or ``slack-webhook``."""

    kind: str

    @abstractmethod
    def send(self, payload: dict[str, Any]) -> str | None:
        """Deliver ``payload``; return the provider's message id if any.

        :raises TransientDeliveryError: the provider may accept it later
        :raises PermanentDeliveryError: the provider will never accept it
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has none."""
