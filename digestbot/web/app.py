"""The Flask application behind DIGESTBOT_BASE_URL: wiring, security headers, errors, health.

Flask rather than Starlette: digestbot's store and services are synchronous (SQLAlchemy
sessions, blocking provider SDKs), which a WSGI app runs as they are, one thread per request
under waitress; an ASGI app would push every call into a thread pool for nothing.
"""

from __future__ import annotations

import hashlib
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

from digestbot.channels import channels_for
from digestbot.clock import Clock, utcnow
from digestbot.core.tokens import LinkSigner
from digestbot.errors import ConfigError
from digestbot.render import Renderer, Sender
from digestbot.resources import resource_dir
from digestbot.services.delivery import OutboxSender
from digestbot.services.digests import signing_key
from digestbot.services.health import database_revision
from digestbot.services.notices import NOTICES, Notices
from digestbot.services.search import RecentPapers
from digestbot.settings import Settings
from digestbot.store import Engine, Store, ensure_current
from digestbot.web.guards import RateLimiter, csrf_token

log = logging.getLogger("digestbot.web")

CLIENT_WINDOW = 600.0  # seconds: DIGESTBOT_WEB_CLIENT_LIMIT counts requests per 10 minutes


class Courier:
    """Sends the emails the pages queue (confirmations, manage links) at once, from a thread.

    Digests stay with `digestbot run`; a `digestbot run` sending these too is harmless, since
    rows are claimed before they are sent.
    """

    def __init__(self, store: Store, settings: Settings) -> None:
        self._sender = OutboxSender(store, channels_for(settings), settings, kinds=NOTICES)
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="courier", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
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
    courier: Courier | None
    recent_papers: RecentPapers  # the preview's papers: the last two weeks
    background: ThreadPoolExecutor  # slash commands, so that Slack is answered in time

    def sent_something(self) -> None:
        if self.courier is not None:
            self.courier.kick()

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
    return current_app.extensions["digestbot"]


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


def create_app(settings: Settings, engine: Engine, *, clock: Clock = utcnow,
               send_in_background: bool = True) -> Flask:
    """The web application. ``send_in_background`` starts the thread that sends confirmation emails."""
    from digestbot.web import pages, sendgrid_events, slack_commands

    ensure_current(engine)
    if settings.sendgrid_webhook_public_key:
        try:
            EventWebhook(settings.sendgrid_webhook_public_key)
        except ValueError:
            raise ConfigError("SENDGRID_WEBHOOK_PUBLIC_KEY is not a valid public key (paste it as SendGrid shows it)") from None
    templates = resource_dir("templates")
    app = _Flask("digestbot.web", static_folder=str(templates / "web" / "static"), static_url_path="/static")
    _scrub_tokens_in_logs("waitress", "werkzeug", app.logger.name)
    store = Store(engine)
    key = signing_key(store, settings)
    # The session cookie only carries the CSRF token and one-shot messages; its key is derived
    # from the link-signing key so that neither can stand in for the other.
    app.secret_key = hashlib.sha256(f"digestbot-session:{key}".encode()).hexdigest()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"), MAX_CONTENT_LENGTH=1 << 20,
    )
    if settings.proxy_count:
        n = settings.proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    renderer = Renderer(templates)
    signer = LinkSigner(key, settings.base_url)
    app.extensions["digestbot"] = Site(
        store=store, settings=settings, clock=clock, renderer=renderer, signer=signer,
        notices=Notices(renderer, signer, Sender(settings.from_email, settings.from_name, settings.postal_address)),
        client_limiter=RateLimiter(settings.web_client_limit, CLIENT_WINDOW),
        courier=Courier(store, settings) if send_in_background else None,
        recent_papers=RecentPapers(days=14),
        background=ThreadPoolExecutor(max_workers=4, thread_name_prefix="slack"),
    )
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(slack_commands.blueprint)
    app.register_blueprint(sendgrid_events.blueprint)

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
        log.info("%s %s %d", request.method, request.url_rule.rule if request.url_rule else "-", response.status_code)
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        if request.path.startswith(("/slack/", "/sendgrid/", "/api/")) or request.path == "/healthz":
            return {"error": error.description}, error.code
        return site().page("error.html.j2", status=error.code or 500, code=error.code,
                           title=error.name, message=error.description)

    return app
