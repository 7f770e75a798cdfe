"""The watch folder: ingest what is new or changed and complete, leave the rest for later."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from digestbot.services.ingest import IngestReport, expand_paths, ingest_paths


class Watcher:
    """Remembers each file's (size, mtime) once handled, so an unchanged file costs one stat."""

    def __init__(self, folder: Path, settle_seconds: float) -> None:
        self.folder = folder
        self.settle_seconds = settle_seconds
        self._handled: dict[Path, tuple[int, int]] = {}

    def scan(self, engine: Engine, now: datetime) -> IngestReport:
        """One pass: ingest new or changed files. Deferred files are looked at again next pass."""
        if not self.folder.is_dir():
            return IngestReport()
        candidates = []
        present = set()
        for path in expand_paths([self.folder]):
            try:
                stat = path.stat()
            except OSError:
                continue  # vanished between listing and stat
            present.add(path)
            if self._handled.get(path) != (stat.st_size, stat.st_mtime_ns):
                candidates.append((path, (stat.st_size, stat.st_mtime_ns)))
        for gone in set(self._handled) - present:
            del self._handled[gone]
        report = ingest_paths(engine, [p for p, _ in candidates], now=now, settle_seconds=self.settle_seconds)
        for (path, signature), result in zip(candidates, report.files):
            if result.status != "deferred":
                self._handled[path] = signature
        return report
