"""The embedded default channel: messages are written to the outbox folder instead of sent."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from digestbot.channels.base import Channel, PermanentDeliveryError, TransientDeliveryError
from digestbot.channels.mime import build_email
from digestbot.channels.slack import slack_message, webhook_message

_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class FileChannel(Channel):
    """Writes ``<outbox_dir>/email/<key>.eml`` or ``<outbox_dir>/slack/<key>.json``.

    Slack files hold the exact JSON body the Slack channel would post (for webhooks, without
    the URL: a webhook URL is a credential). A file is written whole to a temporary name and
    renamed into place, so readers never see half a message, and a retry of the same key
    replaces the same file instead of adding one. The provider id is the file's path.
    """

    def __init__(self, outbox_dir: str | Path, kind: str) -> None:
        if kind not in ("email", "slack", "slack-webhook"):
            raise ValueError(f"unknown channel kind {kind!r}")
        self.outbox_dir = Path(outbox_dir)
        self.kind = kind

    def __repr__(self) -> str:
        return f"FileChannel({str(self.outbox_dir)!r}, {self.kind!r})"

    def send(self, payload: dict[str, Any]) -> str | None:
        key = payload["key"]
        if not _SAFE_KEY.fullmatch(key):
            raise PermanentDeliveryError(f"message key {key!r} cannot be a file name")
        if self.kind == "email":
            try:
                data, path = build_email(payload).as_bytes(), self.outbox_dir / "email" / f"{key}.eml"
            except ValueError as exc:
                raise PermanentDeliveryError(f"malformed email: {exc}") from None
        else:
            body = slack_message(payload) if self.kind == "slack" else webhook_message(payload)
            data = (json.dumps(body, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
            path = self.outbox_dir / "slack" / f"{key}.json"
        try:
            _write_atomically(path, data)
        except OSError as exc:
            raise TransientDeliveryError(f"cannot write {path}: {exc}") from exc
        return str(path)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
