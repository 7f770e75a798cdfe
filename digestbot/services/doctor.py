"""`digestbot doctor`: what operators get wrong, each checked with the fix said.

Builds on ``services.health`` (the schema revision the pages' /healthz reports): the database is
reached the same way. The providers are asked whether they accept the credentials (SendGrid's
``GET /v3/scopes``, Slack's ``auth.test``); their answers' Date headers also check the clock.
Nothing here prints a secret: the checks say which setting is wrong, never its value.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from digestbot.clock import Clock, utcnow
from digestbot.services.health import database_revision
from digestbot.settings import Settings
from digestbot.store import Store, connect
from digestbot.store.db import head_revision

CLOCK_SKEW = 300  # seconds between our clock and a provider's before saying so


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def as_json(self) -> dict:
        return asdict(self)


def settings_failed(error: str) -> Check:
    return Check("settings", False, error, "correct the variable named (see .env.example for every setting)")


def run_checks(settings: Settings, clock: Clock = utcnow) -> list[Check]:
    """Every check, in the order an operator would fix them."""
    dates: list[datetime] = []  # providers' Date headers: a second opinion on the time
    checks = [Check("settings", True, "every DIGESTBOT_ setting parses")]
    checks.append(_database(settings))
    checks += _folders(settings)
    checks.append(_email(settings, dates))
    checks.append(_slack(settings, dates))
    checks.append(_base_url(settings))
    checks.append(_clock(clock(), dates))
    checks.append(_backup(settings))
    return checks


def _database(settings: Settings) -> Check:
    try:
        store = Store(connect(settings.database_url))
    except Exception as exc:
        return Check("database", False, _line(exc), "set DIGESTBOT_DATABASE_URL to a reachable database")
    try:
        revision, head = database_revision(store), head_revision()
    except Exception as exc:
        return Check("database", False, f"cannot reach it: {_line(exc)}",
                     "start the database, or correct DIGESTBOT_DATABASE_URL")
    finally:
        store.dispose()
    if revision != head:
        found = "no schema" if revision is None else f"schema {revision}, not {head}"
        return Check("database", False, f"{store.dialect}: {found}", "run digestbot init")
    return Check("database", True, f"{store.dialect} reachable, schema {revision} is current")


def _folders(settings: Settings) -> list[Check]:
    watch = settings.watch_dir
    if not watch.is_dir():
        found = Check("watch folder", False, f"{watch} does not exist or is not a folder",
                      f"mkdir -p {watch}, or set DIGESTBOT_WATCH_DIR")
    elif not os.access(watch, os.R_OK | os.X_OK):
        found = Check("watch folder", False, f"{watch} is not readable by this user", f"chmod u+rx {watch}")
    else:
        found = Check("watch folder", True, f"{watch} is readable")
    outbox = settings.outbox_dir
    existing = next((p for p in (outbox, *outbox.absolute().parents) if p.exists()), Path("/"))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        where = outbox if existing == outbox else f"{existing} (to make {outbox})"
        return [found, Check("outbox folder", False, f"{where} is not writable",
                             f"chmod u+w {existing}, or set DIGESTBOT_OUTBOX_DIR")]
    return [found, Check("outbox folder", True, f"{outbox} is writable")]


def _email(settings: Settings, dates: list[datetime]) -> Check:
    backend = settings.email_channel
    if backend == "file":
        return Check("email", True, f"file backend: emails are written to {settings.outbox_dir}, not sent")
    if backend == "smtp":
        return _smtp(settings)
    if not settings.sendgrid_api_key:
        return Check("email", False, "DIGESTBOT_EMAIL_BACKEND=sendgrid but SENDGRID_API_KEY is empty",
                     "set SENDGRID_API_KEY (a key with Mail Send permission)")
    url = f"{settings.sendgrid_api_host.rstrip('/')}/v3/scopes"
    try:
        answer = httpx.get(url, headers={"Authorization": f"Bearer {settings.sendgrid_api_key}"},
                           timeout=settings.send_timeout)
    except httpx.HTTPError as exc:
        return Check("email", False, f"SendGrid at {settings.sendgrid_api_host} unreachable: {_line(exc)}",
                     "check the network, or SENDGRID_API_HOST")
    _keep_date(answer, dates)
    if answer.status_code in (401, 403):
        return Check("email", False, f"SendGrid refused SENDGRID_API_KEY (HTTP {answer.status_code})",
                     "make a new API key in SendGrid (Settings → API Keys) and set SENDGRID_API_KEY")
    if answer.status_code != 200:
        return Check("email", False, f"SendGrid answered HTTP {answer.status_code} to a scope check",
                     "try again later; see status.sendgrid.com")
    try:
        scopes = answer.json().get("scopes", [])
    except (ValueError, AttributeError):
        scopes = []
    if "mail.send" not in scopes:
        return Check("email", False, "SENDGRID_API_KEY lacks the Mail Send permission",
                     "give the key Mail Send access in SendGrid, or make one that has it")
    return Check("email", True, "SendGrid accepts SENDGRID_API_KEY, with Mail Send permission")


def _smtp(settings: Settings) -> Check:
    host, port = settings.smtp_host, settings.smtp_port
    try:
        kind = smtplib.SMTP_SSL if port == 465 else smtplib.SMTP
        with kind(host, port, timeout=settings.send_timeout) as server:
            server.ehlo()
            if settings.smtp_starttls == "yes" or (settings.smtp_starttls == "auto" and server.has_extn("starttls")):
                server.starttls(context=ssl.create_default_context())
                server.ehlo()
            if settings.smtp_username:
                server.login(settings.smtp_username, settings.smtp_password)
    except smtplib.SMTPAuthenticationError:
        return Check("email", False, f"the SMTP server {host}:{port} refused the login",
                     "correct DIGESTBOT_SMTP_USERNAME and DIGESTBOT_SMTP_PASSWORD")
    except (OSError, smtplib.SMTPException) as exc:
        return Check("email", False, f"SMTP server {host}:{port}: {_line(exc)}",
                     "correct DIGESTBOT_SMTP_HOST / _PORT / _STARTTLS, or start the server")
    login = " and accepts the login" if settings.smtp_username else ""
    return Check("email", True, f"SMTP server {host}:{port} answers{login}")


def _slack(settings: Settings, dates: list[datetime]) -> Check:
    if settings.slack_channel == "file":
        return Check("slack", True, f"file backend: Slack messages are written to {settings.outbox_dir}, not sent")
    if not settings.slack_bot_token:
        return Check("slack", False, "DIGESTBOT_SLACK_BACKEND=slack but SLACK_BOT_TOKEN is empty",
                     "set SLACK_BOT_TOKEN (the app's xoxb- token with chat:write)")
    url = f"{settings.slack_api_url.rstrip('/')}/auth.test"
    try:
        answer = httpx.post(url, headers={"Authorization": f"Bearer {settings.slack_bot_token}"},
                            timeout=settings.send_timeout)
        body = answer.json() if answer.status_code == 200 else {}
    except (httpx.HTTPError, ValueError) as exc:
        return Check("slack", False, f"Slack at {settings.slack_api_url} unreachable: {_line(exc)}",
                     "check the network, or SLACK_API_URL")
    _keep_date(answer, dates)
    if not isinstance(body, dict) or body.get("ok") is not True:
        error = body.get("error", f"HTTP {answer.status_code}") if isinstance(body, dict) else "a bad answer"
        return Check("slack", False, f"Slack refused SLACK_BOT_TOKEN ({error})",
                     "reinstall the Slack app and set SLACK_BOT_TOKEN to its Bot User OAuth Token")
    team = body.get("team") or "its workspace"
    return Check("slack", True, f"Slack accepts SLACK_BOT_TOKEN (bot of {team})")


def _base_url(settings: Settings) -> Check:
    production = settings.email_channel != "file" or settings.slack_channel != "file"
    if production and not settings.base_url.startswith("https://"):
        return Check("base URL", False, f"DIGESTBOT_BASE_URL is {settings.base_url}: links in real messages "
                     "would not be https", "set DIGESTBOT_BASE_URL to the public https:// address of `digestbot serve`")
    how = "https" if settings.base_url.startswith("https://") else "not https (fine without real delivery)"
    return Check("base URL", True, f"{settings.base_url}: {how}")


def _clock(now: datetime, dates: list[datetime]) -> Check:
    if not 2024 <= now.year <= 2100:
        return Check("clock", False, f"this machine says it is {now:%Y-%m-%d %H:%M} UTC",
                     "set the time (timedatectl set-ntp true)")
    for date in dates:
        skew = (now - date).total_seconds()
        if abs(skew) > CLOCK_SKEW:
            return Check("clock", False, f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the provider's",
                         "synchronise the clock (timedatectl set-ntp true)")
    checked = " (agrees with the providers')" if dates else ""
    return Check("clock", True, f"{now:%Y-%m-%d %H:%M:%S} UTC{checked}")


def _backup(settings: Settings) -> Check:
    if settings.database_url.startswith("sqlite"):
        return Check("backups", True, "SQLite: back up with `digestbot backup PATH` (safe while the bot runs)")
    return Check("backups", True, "PostgreSQL: back up with pg_dump (e.g. pg_dump -Fc DB > digestbot.dump)")


def _keep_date(answer: httpx.Response, dates: list[datetime]) -> None:
    try:
        dates.append(parsedate_to_datetime(answer.headers["Date"]).astimezone(UTC))
    except (KeyError, TypeError, ValueError):
        pass


def _line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [exc.__class__.__name__])[0][:300]
