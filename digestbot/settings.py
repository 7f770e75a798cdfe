"""The one settings object. Every option is declared once here, with its default and a comment.

Values come from the environment and from a ``.env`` file in the working directory
(python-dotenv; real environment variables win). ``.env.example`` mirrors this table,
and a test keeps the two in step.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from digestbot.errors import ConfigError, DigestbotError


def option(default: Any, env: str, doc: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc, "secret": secret}, repr=not secret)


def parse_bool(raw: str) -> bool:
    """1/0, true/false, yes/no, on/off, in any case; anything else is a ValueError."""
    value = _BOOLS.get(raw.strip().lower())
    if value is None:
        raise ValueError(raw)
    return value


_BOOLS = {word: True for word in ("1", "true", "yes", "on")} | {word: False for word in ("0", "false", "no", "off")}
_PARSERS = {"str": str, "Path": Path, "float": float, "int": int, "bool": parse_bool}
# Read by the Makefile, CI and the test suite, never by digestbot: allowed beside the settings.
TOOLING = frozenset({
    "DIGESTBOT_CHROMIUM", "DIGESTBOT_REGENERATE_GOLDEN", "DIGESTBOT_REQUIRE_BROWSER", "DIGESTBOT_REQUIRE_POSTGRES",
    "DIGESTBOT_SCREENSHOTS", "DIGESTBOT_TEST_POSTGRES_URL",
})
# Written into a URL as it is (query or basic-auth password): nothing there needs escaping.
_URL_SAFE_SECRET = re.compile(r"[A-Za-z0-9_-]{16,}")


@dataclass(frozen=True)
class Settings:
    database_url: str = option(
        "sqlite:///digestbot.db", "DIGESTBOT_DATABASE_URL",
        "SQLAlchemy URL: SQLite by default, postgresql+psycopg://user@host/db to scale out",
    )
    watch_dir: Path = option(Path("dumps"), "DIGESTBOT_WATCH_DIR", "folder watched for new dump files")
    outbox_dir: Path = option(
        Path("outbox"), "DIGESTBOT_OUTBOX_DIR", "where the file backend writes .eml files and Slack payloads"
    )
    settle_seconds: float = option(
        5.0, "DIGESTBOT_SETTLE_SECONDS",
        "a dump is read once unchanged this long (by its mtime, or as seen by digestbot); before, deferred",
    )
    max_title_chars: int = option(
        1_000, "DIGESTBOT_MAX_TITLE_CHARS", "a longer title in a dump is cut at a word boundary, with a warning",
    )
    max_abstract_chars: int = option(
        20_000, "DIGESTBOT_MAX_ABSTRACT_CHARS", "a longer abstract in a dump is cut at a word boundary, with a warning",
    )
    max_dump_bytes: int = option(
        200_000_000, "DIGESTBOT_MAX_DUMP_BYTES", "a larger dump file is refused unread (failed, and the admin told)",
    )

    poll_seconds: float = option(30.0, "DIGESTBOT_POLL_SECONDS", "how often `digestbot run` looks in the watch folder")
    stale_hours: float = option(
        36.0, "DIGESTBOT_STALE_HOURS", "no new dump for this long sends one alert to DIGESTBOT_ADMIN"
    )
    admin: str = option(
        "", "DIGESTBOT_ADMIN", "who hears about failed files and a stale pipeline: an email or slack: recipient"
    )
    allow_private_webhooks: bool = option(
        False, "DIGESTBOT_ALLOW_PRIVATE_WEBHOOKS",
        "1: slack-webhook: recipients may point at loopback, private or link-local addresses, local names, any port",
    )

    # ---- digests ----
    digest_max_papers: int = option(25, "DIGESTBOT_DIGEST_MAX_PAPERS", "papers shown in one digest; the rest are linked")
    max_email_bytes: int = option(
        300_000, "DIGESTBOT_MAX_EMAIL_BYTES",
        "largest digest email (HTML + text, bytes); past it, papers are dropped from its end and linked",
    )
    paper_url: str = option(
        "https://huggingface.co/papers?q={title}", "DIGESTBOT_PAPER_URL",
        "link of a paper: a template where {title} is the URL-encoded title",
    )
    base_url: str = option(
        "http://localhost:8000", "DIGESTBOT_BASE_URL",
        "public URL of the web pages (unsubscribe and manage links point there)",
    )
    secret_key: str = option(
        "", "DIGESTBOT_SECRET_KEY",
        "signs unsubscribe and manage links; when empty, a random key is made once and kept in the database",
        secret=True,
    )
    postal_address: str = option("", "DIGESTBOT_POSTAL_ADDRESS", "sender's postal address for email footers (CAN-SPAM)")
    from_email: str = option("digestbot@localhost", "DIGESTBOT_FROM_EMAIL", "sender address of emails")
    from_name: str = option("digestbot", "DIGESTBOT_FROM_NAME", "sender name of emails")

    # ---- delivery ----
    email_backend: str = option(
        "", "DIGESTBOT_EMAIL_BACKEND", "sendgrid | smtp | file; default: sendgrid when SENDGRID_API_KEY is set, else file"
    )
    slack_backend: str = option(
        "", "DIGESTBOT_SLACK_BACKEND", "slack | file; default: slack when SLACK_BOT_TOKEN is set, else file"
    )
    sendgrid_api_key: str = option("", "SENDGRID_API_KEY", "SendGrid API key (Mail Send permission)", secret=True)
    sendgrid_api_host: str = option("https://api.sendgrid.com", "SENDGRID_API_HOST", "SendGrid API base URL")
    slack_bot_token: str = option("", "SLACK_BOT_TOKEN", "Slack bot token (xoxb-…) with chat:write", secret=True)
    slack_api_url: str = option("https://slack.com/api/", "SLACK_API_URL", "Slack Web API base URL")
    smtp_host: str = option("localhost", "DIGESTBOT_SMTP_HOST", "SMTP server, for DIGESTBOT_EMAIL_BACKEND=smtp")
    smtp_port: int = option(25, "DIGESTBOT_SMTP_PORT", "SMTP port (587 with STARTTLS, 465 for implicit TLS)")
    smtp_username: str = option("", "DIGESTBOT_SMTP_USERNAME", "SMTP login, if the server needs one")
    smtp_password: str = option("", "DIGESTBOT_SMTP_PASSWORD", "SMTP password", secret=True)
    smtp_starttls: str = option("auto", "DIGESTBOT_SMTP_STARTTLS", "auto | yes | no: use STARTTLS when offered")
    send_attempts: int = option(5, "DIGESTBOT_SEND_ATTEMPTS", "attempts before a message is marked failed")
    send_workers: int = option(32, "DIGESTBOT_SEND_WORKERS", "messages sent in parallel (each provider call waits on the network)")
    send_timeout: float = option(20.0, "DIGESTBOT_SEND_TIMEOUT", "seconds to wait for a provider's answer")
    retry_base_seconds: float = option(
        2.0, "DIGESTBOT_RETRY_BASE_SECONDS", "first retry delay; doubles per attempt (with jitter), capped at 15 min"
    )

    # ---- web pages (`digestbot serve`) ----
    slack_signing_secret: str = option(
        "", "SLACK_SIGNING_SECRET", "verifies Slack slash-command requests (/slack/commands); unset: refused", secret=True,
    )
    sendgrid_webhook_public_key: str = option(
        "", "SENDGRID_WEBHOOK_PUBLIC_KEY",
        "verification key of SendGrid's signed event webhook (base64, from Mail Settings); "
        "/sendgrid/events is refused without it or the secret below",
    )
    sendgrid_webhook_secret: str = option(
        "", "DIGESTBOT_SENDGRID_WEBHOOK_SECRET",
        "shared secret of an unsigned event webhook, as /sendgrid/events?secret=... or its basic-auth password "
        "(16+ letters, digits, - or _)",
        secret=True,
    )
    web_client_limit: int = option(
        10, "DIGESTBOT_WEB_CLIENT_LIMIT", "subscribe and link requests one client may make per 10 minutes",
    )
    web_address_limit: int = option(
        5, "DIGESTBOT_WEB_ADDRESS_LIMIT", "confirmation and manage-link emails one address may get per day",
    )
    proxy_count: int = option(
        0, "DIGESTBOT_PROXY_COUNT", "reverse proxies in front of `digestbot serve` (trust that many X-Forwarded-For hops)",
    )

    # ---- real sources (`digestbot fetch`, issue 12) ----
    sources: str = option(
        "hf-daily", "DIGESTBOT_SOURCES",
        "what `digestbot fetch` and `run` fetch, space-separated: hf-daily (Hugging Face daily papers) and "
        "arxiv:CATS (an arXiv RSS feed, e.g. arxiv:cs.CL+cs.LG)",
    )
    hf_api_url: str = option(
        "https://huggingface.co/api", "DIGESTBOT_HF_API_URL", "Hugging Face API base URL (a mirror, or a test server)",
    )
    arxiv_feed_url: str = option(
        "https://rss.arxiv.org/atom", "DIGESTBOT_ARXIV_FEED_URL", "arXiv Atom feed base URL (a mirror, or a test server)",
    )
    fetch_minutes: float = option(
        60.0, "DIGESTBOT_FETCH_MINUTES", "`digestbot run` fetches the sources this often; 0 turns fetching off",
    )
    fetch_timeout: float = option(30.0, "DIGESTBOT_FETCH_TIMEOUT", "seconds to wait for a source to connect or send")
    fetch_max_bytes: int = option(
        20_000_000, "DIGESTBOT_FETCH_MAX_BYTES", "a larger answer from a source is refused (failed, nothing written)",
    )
    fetch_attempts: int = option(
        4, "DIGESTBOT_FETCH_ATTEMPTS",
        "tries of a source on connection errors, timeouts, 429 and 5xx (backoff doubling from 2 s, or Retry-After)",
    )

    # ---- relevance (issue 13): "more like these" subscriptions and ranked digests ----
    like_top_per_week: int = option(
        10, "DIGESTBOT_LIKE_TOP_PER_WEEK",
        "default top K of a --like subscription: its best papers a week (a daily digest gets K/7, at least 1)",
    )
    like_threshold: float = option(
        0.2, "DIGESTBOT_LIKE_THRESHOLD",
        "default score (cosine to the examples, 0-1) above which a --like subscription sends a paper anyway",
    )
    # ---- operations (issue 14): retention, metrics, logs ----
    retention_days: int = option(
        90, "DIGESTBOT_RETENTION_DAYS",
        "sent messages' payloads, job runs, webhook event ids and unconfirmed subscriptions older than this are "
        "pruned daily (`digestbot prune`); what keeps a paper from being sent twice is never pruned",
    )
    metrics_port: int = option(
        0, "DIGESTBOT_METRICS_PORT",
        "`digestbot run` and `worker` serve Prometheus /metrics on this port (0: off); `serve` has /metrics always",
    )
    log_format: str = option(
        "text", "DIGESTBOT_LOG_FORMAT", "text | json: one event a line (json: stable fields, for a log collector)",
    )
    log_level: str = option("INFO", "DIGESTBOT_LOG_LEVEL", "DEBUG | INFO | WARNING | ERROR")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{f.metadata['env']} must be a finite number, not {value}")
        if self.settle_seconds < 0:
            raise ConfigError("DIGESTBOT_SETTLE_SECONDS must not be negative")
        if self.max_title_chars < 20 or self.max_abstract_chars < 20:
            raise ConfigError("DIGESTBOT_MAX_TITLE_CHARS and _MAX_ABSTRACT_CHARS must be at least 20")
        if not 1_000 <= self.max_dump_bytes <= 2**31 - 1:
            raise ConfigError("DIGESTBOT_MAX_DUMP_BYTES must be between 1000 and 2147483647")
        if self.admin:
            from digestbot.core.recipients import parse_recipient  # settings load before the core

            try:
                parse_recipient(self.admin, private_webhooks=self.allow_private_webhooks)
            except DigestbotError as exc:
                raise ConfigError(f"DIGESTBOT_ADMIN: {exc}") from None
        if self.poll_seconds <= 0 or self.stale_hours <= 0:
            raise ConfigError("DIGESTBOT_POLL_SECONDS and DIGESTBOT_STALE_HOURS must be positive")
        if self.digest_max_papers < 1:
            raise ConfigError("DIGESTBOT_DIGEST_MAX_PAPERS must be at least 1")
        if self.max_email_bytes < 50_000:  # below it, the header and footer alone might not fit
            raise ConfigError("DIGESTBOT_MAX_EMAIL_BYTES must be at least 50000")
        if "{title}" not in self.paper_url and "{arxiv_id}" not in self.paper_url:
            raise ConfigError("DIGESTBOT_PAPER_URL must contain {title} or {arxiv_id}")
        if self.email_backend not in ("", "sendgrid", "smtp", "file"):
            raise ConfigError(f"DIGESTBOT_EMAIL_BACKEND must be sendgrid, smtp or file, not {self.email_backend!r}")
        if self.slack_backend not in ("", "slack", "file"):
            raise ConfigError(f"DIGESTBOT_SLACK_BACKEND must be slack or file, not {self.slack_backend!r}")
        if self.send_attempts < 1 or self.send_workers < 1 or self.send_timeout <= 0 or self.retry_base_seconds < 0:
            raise ConfigError("DIGESTBOT_SEND_ATTEMPTS, _WORKERS, _TIMEOUT and _RETRY_BASE_SECONDS must be positive")
        if self.sendgrid_webhook_secret and not _URL_SAFE_SECRET.fullmatch(self.sendgrid_webhook_secret):
            raise ConfigError("DIGESTBOT_SENDGRID_WEBHOOK_SECRET must be at least 16 letters, digits, - or _ "
                              "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if self.web_client_limit < 1 or self.web_address_limit < 1 or self.proxy_count < 0:
            raise ConfigError("DIGESTBOT_WEB_CLIENT_LIMIT and _WEB_ADDRESS_LIMIT must be positive, _PROXY_COUNT not negative")
        if self.like_top_per_week < 0 or not 0 <= self.like_threshold <= 1:
            raise ConfigError("DIGESTBOT_LIKE_TOP_PER_WEEK must not be negative, DIGESTBOT_LIKE_THRESHOLD from 0 to 1")
        self._check_sources()

    def _check_sources(self) -> None:
        from digestbot.core.fetching import parse_sources  # settings load before the core

        try:
            parse_sources(self.sources.split())
        except DigestbotError as exc:
            raise ConfigError(f"DIGESTBOT_SOURCES: {exc}") from None
        for name, url in (("DIGESTBOT_HF_API_URL", self.hf_api_url), ("DIGESTBOT_ARXIV_FEED_URL", self.arxiv_feed_url)):
            if not url.startswith(("https://", "http://")):
                raise ConfigError(f"{name} must be an http(s) URL, not {url!r}")
        if self.fetch_minutes < 0 or self.fetch_timeout <= 0 or self.fetch_attempts < 1 or self.fetch_max_bytes < 1_000:
            raise ConfigError("DIGESTBOT_FETCH_MINUTES must not be negative, _FETCH_TIMEOUT and _FETCH_ATTEMPTS must be "
                              "positive, _FETCH_MAX_BYTES at least 1000")

        if self.retention_days < 1 or not 0 <= self.metrics_port <= 65535:
            raise ConfigError("DIGESTBOT_RETENTION_DAYS must be at least 1, DIGESTBOT_METRICS_PORT from 0 to 65535")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"DIGESTBOT_LOG_FORMAT must be text or json, not {self.log_format!r}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"DIGESTBOT_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {self.log_level!r}")

    @property
    def email_channel(self) -> str:
        return self.email_backend or ("sendgrid" if self.sendgrid_api_key else "file")

    @property
    def slack_channel(self) -> str:
        return self.slack_backend or ("slack" if self.slack_bot_token else "file")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={'***' if f.metadata['secret'] and getattr(self, f.name) else repr(getattr(self, f.name))}"
            for f in fields(self)
        )
        return f"Settings({shown})"

    def unattended_problem(self, *, slack: bool = True) -> str | None:
        """Why a long-running process (`run`, `worker`, `serve`) must not start with these
        settings, or None. Without provider credentials, messages go to the outbox folder:
        right for a demo, a silent loss in production. So the file backend must be asked for by
        name there; ``slack``: whether this process sends Slack messages at all."""
        missing = []
        if self.email_channel == "file" and not self.email_backend:
            missing.append("SENDGRID_API_KEY is not set (or set DIGESTBOT_EMAIL_BACKEND=smtp), "
                           "so emails would only be written to files: set DIGESTBOT_EMAIL_BACKEND=file to mean it")
        if slack and self.slack_channel == "file" and not self.slack_backend:
            missing.append("SLACK_BOT_TOKEN is not set, so Slack messages would only be written to files: "
                           "set DIGESTBOT_SLACK_BACKEND=file to mean it")
        return "; ".join(missing) or None

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, dotenv_path: str | Path | None = ".env") -> Settings:
        """Settings from ``env`` (default: os.environ) over the values of a .env file.

        A ``DIGESTBOT_`` variable that is not a setting is refused, with the nearest name: a
        misspelt variable must never silently leave a default in place. So is any unknown
        ``SENDGRID_`` or ``SLACK_`` name in the .env file, which is digestbot's own.
        """
        from_file: dict[str, str] = {}
        if dotenv_path is not None and Path(dotenv_path).is_file():
            from_file = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
        from_env = os.environ if env is None else env
        _refuse_unknown(from_env, ("DIGESTBOT_",), "")
        _refuse_unknown(from_file, ("DIGESTBOT_", "SENDGRID_", "SLACK_"), f" in {dotenv_path}")
        merged = {**from_file, **from_env}
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = merged.get(f.metadata["env"], "").strip()
            if not raw:
                continue
            try:
                values[f.name] = _PARSERS[str(f.type)](raw)
            except (ValueError, KeyError):
                kind = "1 or 0 (true/false, yes/no, on/off)" if str(f.type) == "bool" else f"a {f.type}"
                raise ConfigError(f"{f.metadata['env']} must be {kind}, not {raw!r}") from None
        return cls(**values)

    @classmethod
    def env_example(cls) -> str:
        """The text of .env.example: every option, its comment and its default."""
        lines = ["# digestbot configuration. Copy to .env and edit; real environment variables win over .env.",
                 "# Every variable is optional; the value shown is the default."]
        for var, default, doc in cls.documented():
            lines += ["", f"# {doc}", f"{var}={default}"]
        return "\n".join(lines) + "\n"

    @classmethod
    def documented(cls) -> list[tuple[str, str, str]]:
        """(variable, default, comment) for every option: what .env.example must list."""
        return [(f.metadata["env"], _written(f.default), f.metadata["doc"]) for f in fields(cls)]


def _refuse_unknown(variables: Mapping[str, str], prefixes: tuple[str, ...], where: str) -> None:
    known = {f.metadata["env"] for f in fields(Settings)}
    for name in sorted(variables):
        if name.startswith(prefixes) and name not in known and name not in TOOLING:
            nearest = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
            guess = f"; did you mean {nearest[0]}?" if nearest else " (see .env.example for every setting)"
            raise ConfigError(f"{name}{where} is not a digestbot setting{guess}")


def _written(default: Any) -> str:
    """A default as it is written in .env: booleans as 1 or 0."""
    return str(int(default)) if isinstance(default, bool) else str(default)
