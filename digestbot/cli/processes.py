"""The long-running commands: run (the bot), worker (delivery only) and serve (the web pages).

Each one owns what it starts: it builds the parts, starts its threads, and on SIGTERM or Ctrl-C
stops them and closes the parts before it exits. None of them starts on a file backend that was
not asked for by name (see Settings.unattended_problem): production mail must never go
silently into ./outbox.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from digestbot.bootstrap import settle_the_collector
from digestbot.cli import logs
from digestbot.cli.base import App, cli, pass_app
from digestbot.services import metrics

log = logging.getLogger("digestbot")


def _log_to_stderr(settings, debug: bool) -> None:
    logs.configure(settings, debug)


@contextmanager
def _metrics_server(settings) -> Iterator[None]:
    """Prometheus /metrics on DIGESTBOT_METRICS_PORT (if set) while the block runs; stopped after."""
    if not settings.metrics_port:
        yield
        return
    from prometheus_client import start_http_server

    server, thread = start_http_server(settings.metrics_port)
    log.info("metrics on http://0.0.0.0:%d/metrics", settings.metrics_port)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@cli.command()
@click.option("--once", is_flag=True, help="Run every job once and exit (for cron and CI).")
@pass_app
def run(app: App, once: bool) -> None:
    """Watch the dump folder, send alerts and digests on time, deliver; until SIGTERM or Ctrl-C."""
    from digestbot import runner

    parts = app.parts
    parts.refuse_file_backends()
    _log_to_stderr(parts.settings, app.debug)
    settle_the_collector()
    try:
        with _metrics_server(parts.settings):
            metrics.DATABASE.bind(parts.store, parts.clock)
            code = runner.run(parts, once=once)
    finally:
        parts.close()
    sys.exit(code)


@cli.command()
@pass_app
def worker(app: App) -> None:
    """Deliver from the outbox only (run any number beside one 'digestbot run' on PostgreSQL)."""
    from digestbot import runner

    parts = app.parts
    parts.refuse_file_backends()
    _log_to_stderr(parts.settings, app.debug)
    settle_the_collector()
    try:
        with _metrics_server(parts.settings):
            metrics.DATABASE.bind(parts.store, parts.clock)
            code = runner.work(parts)
    finally:
        parts.close()
    sys.exit(code)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Requests served at once.")
@pass_app
def serve(app: App, host: str, port: int, threads: int) -> None:
    """Serve the web pages: subscribe, confirm, manage, unsubscribe, /slack/commands, /sendgrid/events."""
    import waitress

    from digestbot.web import create_app
    from digestbot.web.app import site_of

    parts = app.parts
    parts.refuse_file_backends(slack=False)  # the pages send emails only (confirmations, manage links)
    _log_to_stderr(parts.settings, app.debug)
    web = create_app(parts)
    site = site_of(web)
    # waitress stops serving on SystemExit or KeyboardInterrupt (Ctrl-C): make SIGTERM one too.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    settle_the_collector()
    site.start()
    try:
        log.info("serving on http://%s:%d (links point at %s)", host, port, parts.settings.base_url)
        waitress.serve(web, host=host, port=port, threads=threads, ident="digestbot",
                       **waitress_options(parts.settings))
    finally:
        site.stop()
        parts.close()
        log.info("stopped")


def waitress_options(settings) -> dict:
    """waitress's own treatment of proxy headers: by default it deletes every X-Forwarded-*
    header, which is right with no proxy in front. Behind DIGESTBOT_PROXY_COUNT proxies the app
    reads that many hops itself (ProxyFix, see create_app): waitress must pass them on."""
    return {"clear_untrusted_proxy_headers": False} if settings.proxy_count else {}


def _exit_on_signal(signum, _frame) -> None:
    log.info("received %s: stopping", signal.Signals(signum).name)
    raise SystemExit(0)
