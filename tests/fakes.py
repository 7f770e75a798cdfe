"""Fakes of the outside world at its edge: small servers on 127.0.0.1 that record what arrives.

- ``FakeSendGrid``: ``POST /v3/mail/send``, answers 202 with an ``X-Message-Id`` by default.
- ``FakeSlack``: ``POST /api/chat.postMessage`` (answers ``{"ok": true, "ts": ...}``) and
  ``POST /hooks/<anything>`` as an incoming webhook (answers ``ok``).
- ``FakeSources``: Hugging Face's daily-papers API and arXiv's Atom feeds (GET), with ETags and 304s.
- ``FakeSmtp``: a real SMTP server (aiosmtpd) recording each envelope.
- ``RecordingChannel``: no server at all; a channel that keeps what it is given, for tests
  about what is sent rather than how a provider is spoken to.

Each is a context manager (``with FakeSendGrid() as sendgrid: ... sendgrid.url``) and has a
pytest fixture here (``fake_sendgrid``, ``fake_slack``, ``fake_smtp``) that a test module uses
by importing it. Answers can be scripted: each request takes the next scripted reply, or the
default one when none is left; ``latency`` delays every answer (for benchmarks).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import pytest

from digestbot.channels.base import Channel

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: a dict or list body is sent as JSON, a str as text; ``status=None`` means
    the server's default answer (used by ``script_delay``)."""

    status: int | None = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """A request as it arrived; ``headers`` is case-insensitive, ``at`` is ``time.monotonic()``."""

    method: str
    path: str
    headers: Message
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # clients that timed out and left
            super().handle_error(request, client_address)


class FakeHTTPServer:
    """A threaded HTTP server in a daemon thread on a free port; subclasses say what to answer."""

    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests: list[Received] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._server: _QuietServer | None = None

    # ---- scripting ----
    def script(self, status: int, body: Any = None, headers: Mapping[str, str] | None = None) -> Self:
        """Answer the next unanswered request with this instead of the default."""
        self._script.append(Reply(status, body, dict(headers or {})))
        return self

    def script_delay(self, seconds: float) -> Self:
        """Answer the next request normally, but only after ``seconds``."""
        self._script.append(Reply(None, delay=seconds))
        return self

    def default_reply(self, request: Received) -> Reply | None:
        """The answer when nothing is scripted; None for an unknown path (404)."""
        raise NotImplementedError

    # ---- life cycle ----
    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://{HOST}:{self._server.server_address[1]}"

    def start(self) -> Self:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake._answer(self)

            do_GET = do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _QuietServer((HOST, 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- answering ----
    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        request = Received(handler.command, handler.path, handler.headers, body, time.monotonic())
        with self._lock:
            self.requests.append(request)
            scripted = self._script.popleft() if self._script else None
            reply = self.default_reply(request) if scripted is None or scripted.status is None else scripted
        reply = reply or Reply(404, {"error": "not_found"})
        delay = self.latency + (scripted.delay if scripted else 0.0)
        if delay:
            time.sleep(delay)
        if isinstance(reply.body, (dict, list)):
            data, content_type = json.dumps(reply.body).encode(), "application/json; charset=utf-8"
        elif isinstance(reply.body, str):
            data, content_type = reply.body.encode(), "text/plain; charset=utf-8"
        else:
            data, content_type = reply.body or b"", "application/octet-stream"
        handler.send_response(reply.status or 200)
        headers = {"Content-Type": content_type, **reply.headers, "Content-Length": str(len(data))}
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)


class FakeSendGrid(FakeHTTPServer):
    """SendGrid's Mail Send endpoint; pass ``url`` as the client's ``host``."""

    def __init__(self, latency: float = 0.0) -> None:
        super().__init__(latency)
        self._ids = itertools.count(1)

    def default_reply(self, request: Received) -> Reply | None:
        if request.method != "POST" or request.path != "/v3/mail/send":
            return None
        return Reply(202, None, {"X-Message-Id": f"fake-sg-{next(self._ids)}"})

    @property
    def mails(self) -> list[Any]:
        """The JSON bodies posted to /v3/mail/send, in order."""
        return [r.json for r in self.requests if r.path == "/v3/mail/send"]


class FakeSlack(FakeHTTPServer):
    """Slack's ``chat.postMessage`` under ``api_url``, and incoming webhooks under ``/hooks/``."""

    def __init__(self, latency: float = 0.0) -> None:
        super().__init__(latency)
        self._ts = itertools.count(1)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def webhook_url(self, name: str = "T000/B000/XXXX") -> str:
        return f"{self.url}/hooks/{name}"

    def default_reply(self, request: Received) -> Reply | None:
        if request.path == "/api/chat.postMessage":
            channel = request.json.get("channel")
            return Reply(200, {"ok": True, "channel": channel, "ts": f"{int(time.time())}.{next(self._ts):06d}"})
        if request.path.startswith("/hooks/"):
            return Reply(200, "ok")
        return None

    @property
    def posts(self) -> list[Received]:
        return [r for r in self.requests if r.path == "/api/chat.postMessage"]

    @property
    def hook_posts(self) -> list[Received]:
        return [r for r in self.requests if r.path.startswith("/hooks/")]


class FakeSources(FakeHTTPServer):
    """Hugging Face's daily-papers API (``GET /api/daily_papers?date=``) and arXiv's RSS Atom feeds
    (``GET /atom/CATS``) on one server, answering GET requests from what is ``published``.

    ``daily[date]`` is the JSON answer of a day (a day not there answers ``[]``; a day after
    ``today`` answers 400 as the API does); ``feeds[cats]`` the feed's bytes. Answers carry an ETag
    (of their content) and a Last-Modified; a request whose If-None-Match or If-Modified-Since
    matches gets 304. Pass ``hf_url`` as DIGESTBOT_HF_API_URL and ``arxiv_url`` as
    DIGESTBOT_ARXIV_FEED_URL.
    """

    LAST_MODIFIED = "Wed, 03 Dec 2025 05:00:00 GMT"

    def __init__(self, today: str = "2025-12-03", latency: float = 0.0) -> None:
        super().__init__(latency)
        self.today = today
        self.daily: dict[str, bytes] = {}
        self.feeds: dict[str, bytes] = {}

    @property
    def hf_url(self) -> str:
        return f"{self.url}/api"

    @property
    def arxiv_url(self) -> str:
        return f"{self.url}/atom"

    def default_reply(self, request: Received) -> Reply | None:
        from urllib.parse import parse_qs, urlsplit

        if request.method != "GET":
            return None
        parts = urlsplit(request.path)
        if parts.path == "/api/daily_papers":
            day = parse_qs(parts.query).get("date", [self.today])[0]
            if day > self.today:
                return Reply(400, {"error": '"date" must be a date in the past'})
            body = self.daily.get(day, b"[]")
        elif parts.path.startswith("/atom/"):
            body = self.feeds.get(parts.path[len("/atom/"):])
            if body is None:
                return None
        else:
            return None
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        if request.headers.get("If-None-Match") == etag or (
                request.headers.get("If-None-Match") is None
                and request.headers.get("If-Modified-Since") == self.LAST_MODIFIED):
            return Reply(304, b"", {"ETag": etag})
        return Reply(200, body, {"ETag": etag, "Last-Modified": self.LAST_MODIFIED})

    def gets(self, prefix: str = "/") -> list[Received]:
        return [r for r in self.requests if r.method == "GET" and r.path.startswith(prefix)]


@dataclass(frozen=True)
class Delivered:
    """One message an SMTP client handed over."""

    mail_from: str
    rcpt_tos: list[str]
    content: bytes


class FakeSmtp:
    """A real SMTP server (aiosmtpd) on 127.0.0.1; ``rcpt_replies`` / ``data_replies`` hold
    scripted replies (e.g. ``"450 4.2.0 greylisted"``) for the next RCPT / DATA commands.
    With ``users`` it offers AUTH (without TLS, for tests) and checks the passwords."""

    def __init__(self, users: Mapping[str, str] | None = None) -> None:
        self.delivered: list[Delivered] = []
        self.rcpt_replies: deque[str] = deque()
        self.data_replies: deque[str] = deque()
        self.users = dict(users or {})
        self.port = 0
        self._controller: Any = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_replies:
            return self.rcpt_replies.popleft()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_replies:
            return self.data_replies.popleft()
        self.delivered.append(Delivered(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult

        ok = self.users.get(data.login.decode()) == data.password.decode()
        return AuthResult(success=ok, handled=False)

    def __enter__(self) -> Self:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        options: dict[str, Any] = {}
        if self.users:
            options = {"authenticator": self._authenticate, "auth_require_tls": False}
        self._controller = Controller(self, hostname=HOST, port=self.port, **options)
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


class RecordingChannel(Channel):
    """A delivery channel that keeps each payload in memory.

    ``fail_with`` errors are raised by the next sends, one each, before any is recorded.
    Safe to share between sending threads, like every channel.
    """

    def __init__(self, kind: str = "email", fail_with: list[Exception] | None = None) -> None:
        self.kind = kind
        self.sent: list[dict[str, Any]] = []
        self._failures = deque(fail_with or [])
        self._lock = threading.Lock()

    def send(self, payload: dict[str, Any]) -> str | None:
        with self._lock:
            if self._failures:
                raise self._failures.popleft()
            self.sent.append(payload)
            return f"recorded-{len(self.sent)}"

    @classmethod
    def for_every_kind(cls) -> dict[str, RecordingChannel]:
        """A recording channel for each message kind, as ``channels_for`` would give."""
        return {kind: cls(kind) for kind in ("email", "slack", "slack-webhook")}


def free_port() -> int:
    """A port nothing listens on right now (also handy to get a refused connection)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@pytest.fixture
def fake_sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as fake:
        yield fake


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def fake_smtp() -> Iterator[FakeSmtp]:
    with FakeSmtp() as fake:
        yield fake

