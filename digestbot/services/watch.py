"""The watch folder: ingest what is new or changed and complete, leave the rest for later."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from digestbot.core.dumps import DumpLimits
from digestbot.core.settle import Look
from digestbot.services.ingest import IngestReport, expand_paths, ingest_paths, look_at
from digestbot.services.matching import SubscriptionMatcher


class Watcher:
    """Remembers each file's (size, mtime) once handled, so an unchanged file costs one stat; and,
    for a file not yet settled, how it looked when first seen so (see core/settle.py), so that a
    file with an mtime in the future settles after the settle time like any other."""

    def __init__(self, folder: Path, settle_seconds: float, limits: DumpLimits = DumpLimits()) -> None:
        self.folder = folder
        self.matcher = SubscriptionMatcher()  # kept between passes: each syncs only what changed
        self.settle_seconds = settle_seconds
        self.limits = limits
        self._handled: dict[Path, tuple[int, int]] = {}
        self._seen: dict[Path, Look] = {}

    def scan(self, engine: Engine, now: datetime, sleep: Callable[[float], None] | None = None) -> IngestReport:
        """One pass: ingest new or changed files. Deferred files are looked at again next pass.

        ``sleep``: for a pass with no pass after it (`digestbot run --once`), see ingest_paths.
        """
        if not self.folder.is_dir():
            return IngestReport()
        candidates = []
        present = set()
        for item in expand_paths([self.folder]):
            try:
                look = look_at(item.path, now)
            except OSError:
                continue  # vanished between listing and stat
            present.add(item.path)
            if self._handled.get(item.path) == (look.size, look.mtime_ns):
                continue
            first = self._seen.get(item.path)
            if first is None or not first.same_file(look):
                self._seen[item.path] = look
            candidates.append((item, look))
        for gone in set(self._handled) - present:
            del self._handled[gone]
        for gone in set(self._seen) - present:
            del self._seen[gone]
        report = ingest_paths(engine, [item for item, _ in candidates], now=now, settle_seconds=self.settle_seconds,
                              limits=self.limits, seen=self._seen, sleep=sleep, matcher=self.matcher)
        for (item, look), result in zip(candidates, report.files):
            if result.status != "deferred":
                self._handled[item.path] = (look.size, look.mtime_ns)
                self._seen.pop(item.path, None)
        return report
