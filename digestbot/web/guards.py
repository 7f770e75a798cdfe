"""What keeps the pages safe to expose: CSRF tokens for forms, and a per-client rate limit."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from flask import abort, request, session

CSRF_FIELD = "csrf"


def csrf_token() -> str:
    """The session's CSRF token (made on first use); every form carries it in a hidden field."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def check_csrf() -> None:
    """Refuse a form POST whose token is not this session's (a cross-site forgery, or no cookie)."""
    expected = session.get(CSRF_FIELD)
    given = request.form.get(CSRF_FIELD, "")
    if not expected or not hmac.compare_digest(str(expected), given):
        abort(400, description="This form has expired. Go back, reload the page and try again.")


class RateLimiter:
    """At most ``limit`` hits per key in a sliding window of ``window`` seconds.

    In memory, so per process: enough for one `digestbot serve`. The per-address limit, which
    must hold across processes, is counted in the database instead (services.notices).
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        now = self.clock()
        with self._lock:
            if len(self._hits) > 10_000:  # forget idle clients now and then: memory stays bounded
                self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - self.window}
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return False
            hits.append(now)
            return True
