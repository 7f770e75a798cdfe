"""How the long-running commands log: one event a line, as text or JSON (DIGESTBOT_LOG_FORMAT),
at DIGESTBOT_LOG_LEVEL, with secrets masked in every line whoever logged it.

JSON lines carry stable fields: ``ts``, ``level``, ``logger``, ``message`` and, when the event
has them, ``job``, ``file``, ``message_id``, ``channel``, ``recipient`` (masked, as
``core.recipients.shown`` masks it), ``cadence``, ``route``, ``status``; ``error`` holds a traceback.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import fields
from datetime import UTC, datetime

from digestbot.settings import Settings

FIELDS = ("job", "file", "message_id", "channel", "recipient", "cadence", "route", "status")
MASK = "***"
# What a secret looks like wherever it turns up (a library's error message, a URL in a traceback).
_SECRET_SHAPES = (
    re.compile(r"(https?://hooks\.slack(?:-gov)?\.com/)[^\s\"'<>]+"),  # a webhook URL is a credential
    re.compile(r"(/hooks/)[^\s\"'<>]+"),
    re.compile(r"()\bxox[abposr]-[A-Za-z0-9-]+"),  # Slack tokens
    re.compile(r"()\bSG\.[\w-]{8,}\.[\w-]{8,}"),  # SendGrid API keys
    re.compile(r"(Bearer )[^\s\"']+", re.IGNORECASE),
    re.compile(r"(/(?:manage|unsubscribe|confirm|digests)/)[\w.-]{20,}"),  # signed link tokens
)


class Redact(logging.Filter):
    """Masks the configured secrets and anything shaped like a secret in a record's final text."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.secrets = sorted({str(getattr(settings, f.name)) for f in fields(settings)
                               if f.metadata.get("secret") and len(str(getattr(settings, f.name))) >= 4},
                              key=len, reverse=True)

    def clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        for shape in _SECRET_SHAPES:
            text = shape.sub(lambda m: f"{m.group(1)}{MASK}", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = self.clean(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info:
            record.exc_text = self.clean(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for name in FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, self.clean(value))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        event.update({name: getattr(record, name) for name in FIELDS if getattr(record, name, None) is not None})
        if record.exc_text:
            event["error"] = record.exc_text
        return json.dumps(event, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\n", "\n    ")  # a traceback stays one event: its lines indented under it


def configure(settings: Settings, debug: bool = False, stream=None) -> logging.Handler:
    """Log to ``stream`` (stderr) from every logger, one event a line; returns the handler."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(Redact(settings))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "digestbot", False)]:
        root.removeHandler(old)
    handler.digestbot = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else settings.log_level.upper())
    # Their debug lines carry what is sent: SQL parameters and request bodies hold messages,
    # and messages hold the tokens of their links (and webhook URLs, which are secrets).
    for noisy in ("alembic", "slack_sdk", "urllib3", "sqlalchemy", "python_http_client", "sendgrid", "httpx",
                  "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "Task queue depth is N": requests waited for a free thread, which is what a queue is for.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    # "skipped: maximum number of running instances reached" is max_instances=1 doing its job.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    return handler
