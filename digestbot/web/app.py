"""The Flask application behind DIGESTBOT_BASE_URL: wiring, security headers, errors, health.

Flask rather than Starlette: digestbot's store and services are synchronous (SQLAlchemy
sessions, blocking provider SDKs), which a WSGI app runs as they are, one thread per request
under waitress; an ASGI app would push every call into a thread pool for nothing.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
import zoneinfo
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

from flask import Flask, Response, current_app, request
from sendgrid.helpers.eventwebhook import EventWebhook
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from digestbot.bootstrap import Parts
from digestbot.clock import Clock
from digestbot.core.tokens import LinkSigner
from digestbot.errors import ConfigError
from digestbot.render import Renderer
from digestbot.resources import resource_dir
from digestbot.services import metrics
from digestbot.services.delivery import OutboxSender
from digestbot.services.health import database_revision
from digestbot.services.notices import NOTICES, Notices
from digestbot.services.search import RecentPapers
from digestbot.settings import Settings
from digestbot.store import Store
from digestbot.web.guards import RateLimiter, csrf_token

log = logging.getLogger("digestbot.web")

CLIENT_WINDOW = 600.0  # seconds: DIGESTBOT_WEB_CLIENT_LIMIT counts requests per 10 minutes


class Courier:
    """Sends the emails the pages queue (confirmations, manage links) at once, from a thread.

    Digests stay with `digestbot run`; a `digestbot run` sending these too is harmless, since
    rows are claimed before they are sent. The thread runs between ``start`` and ``stop``, which
    the entry point that serves the pages calls; until then queued emails wait for `digestbot run`.
    """

    def __init__(self, sender: OutboxSender) -> None:
        self._sender = sender
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="courier", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Let the email being sent finish, then end the thread."""
        self._stopping.set()
        self._sender.stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def kick(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                report = self._sender.send_all(wait_for_retries=0)
                if report.failed:
                    log.warning("courier: %d email(s) failed: %s", report.failed, report.errors[-1]["error"])
            except Exception:  # keep the thread alive: the next kick, or `digestbot run`, tries again
                log.exception("courier: sending failed")


@dataclass
class Site:
    """What every request handler needs, made once per application."""

    store: Store
    settings: Settings
    clock: Clock
    renderer: Renderer
    signer: LinkSigner
    notices: Notices
    client_limiter: RateLimiter
    courier: Courier
    recent_papers: RecentPapers  # the preview's papers: the last two weeks
    background: ThreadPoolExecutor  # slash commands, so that Slack is answered in time

    def sent_something(self) -> None:
        self.courier.kick()

    def start(self) -> None:
        """Start sending queued emails at once (the courier's thread): for the process that serves."""
        self.courier.start()

    def stop(self) -> None:
        """Stop the threads of the site: the courier's, and those answering slash commands late."""
        self.courier.stop()
        self.background.shutdown(wait=True, cancel_futures=False)

    @cached_property
    def time_zones(self) -> list[str]:
        return sorted(zone for zone in zoneinfo.available_timezones() if "/" in zone or zone == "UTC")

    def page(self, name: str, status: int = 200, **context) -> Response:
        body = self.renderer.page(name, csrf=csrf_token(), base_url=self.settings.base_url, **context)
        return Response(body, status=status, mimetype="text/html")


# A path that carries a signed token, as waitress and werkzeug write paths in their own messages.
_TOKEN_PATH = re.compile(r"/(confirm|manage|unsubscribe|digests)/[^/\s?#'\"]+")


class ScrubTokens(logging.Filter):
    """Writes the token in a logged path as ``<token>``.

    Attached to the loggers of the libraries that log request paths (waitress logs "Client
    disconnected while serving /manage/…"), and to the app's own: a filter on a logger changes
    the record before any handler sees it, so the token is in no log line, whatever handles it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _TOKEN_PATH.sub(r"/\1/<token>", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TOKEN_PATH.sub(r"/\1/<token>", "".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
        return True


class _Flask(Flask):
    def log_exception(self, exc_info) -> None:
        """Flask logs "Exception on <path>": the path carries the token, so the route's pattern instead."""
        token = (request.view_args or {}).get("token")
        text = "".join(traceback.format_exception(*exc_info)).rstrip()
        if isinstance(token, str) and token:
            text = text.replace(token, "<token>")
        rule = request.url_rule.rule if request.url_rule else "-"
        self.logger.error("exception on %s %s\n%s", request.method, rule, text)


def _scrub_tokens_in_logs(*names: str) -> None:
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubTokens) for f in logger.filters):
            logger.addFilter(ScrubTokens())


def site() -> Site:
    """The site of the application handling the current request."""
    return site_of(current_app)


def site_of(app: Flask) -> Site:
    return app.extensions["digestbot"]


def client_key() -> str:
    """Who is asking, for the per-client limit: the address the request came from (see DIGESTBOT_PROXY_COUNT)."""
    return request.remote_addr or "unknown"


SECURITY_HEADERS = {
    # Scripts and styles come from our own static files only: nothing a dump or a form
    # brings in can run or restyle the page, and forms can only post back here.
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    # The URLs of these pages are keys (signed tokens): never let them leak in a Referer.
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def create_app(parts: Parts) -> Flask:
    """The web application over the parts. It starts no thread: whoever serves it calls
    ``site_of(app).start()``, and ``stop()`` on the way out."""
    from digestbot.web import pages, sendgrid_events, slack_commands, votes

    settings = parts.settings
    if settings.sendgrid_webhook_public_key:
        try:
            EventWebhook(settings.sendgrid_webhook_public_key)
        except ValueError:
            raise ConfigError("SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key (paste it as SendGrid shows it)") from None
    templates = resource_dir("templates")
    app = _Flask("digestbot.web", static_folder=str(templates / "web" / "static"), static_url_path="/static")
    _scrub_tokens_in_logs("waitress", "werkzeug", app.logger.name)
    # The session cookie only carries the CSRF token and one-shot messages.
    app.secret_key = parts.signer.derived_key("session")
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"), MAX_CONTENT_LENGTH=1 << 20,
    )
    if settings.proxy_count:
        n = settings.proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    store = parts.store
    app.extensions["digestbot"] = Site(
        store=store, settings=settings, clock=parts.clock, renderer=parts.renderer, signer=parts.signer,
        notices=parts.notices, client_limiter=RateLimiter(settings.web_client_limit, CLIENT_WINDOW),
        courier=Courier(parts.outbox_sender(kinds=NOTICES)), recent_papers=RecentPapers(days=14),
        background=ThreadPoolExecutor(max_workers=4, thread_name_prefix="slack"),
    )
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(slack_commands.blueprint)
    app.register_blueprint(sendgrid_events.blueprint)
    app.register_blueprint(votes.blueprint)

    metrics.DATABASE.bind(store, parts.clock)

    @app.get("/metrics")
    def metrics_page():
        body, content_type = metrics.exposition()
        return Response(body, content_type=content_type)

    @app.get("/healthz")
    def healthz():
        try:
            revision = database_revision(store)
        except Exception as exc:  # the database is down: say so to the load balancer
            log.warning("healthz: %s", str(exc).splitlines()[0])
            return {"status": "unavailable", "error": "database unreachable"}, 503
        return {"status": "ok", "schema": revision}

    @app.after_request
    def secure(response: Response) -> Response:
        response.headers.update(SECURITY_HEADERS)
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        # The route's pattern, never the path: paths carry tokens, and logs must not.
        route = request.url_rule.rule if request.url_rule else "-"
        log.info("%s %s %d", request.method, route, response.status_code,
                 extra={"route": route, "status": response.status_code})
        metrics.WEB_REQUESTS.labels(route, str(response.status_code)).inc()
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if request.path.startswith(("/slack/", "/sendgrid/", "/api/")) or request.path == "/healthz":
            return {"error": error.description}, error.code
        return site().page("error.html.j2", status=error.code or 500, code=error.code,
                           title=error.name, message=error.description)

    return app
