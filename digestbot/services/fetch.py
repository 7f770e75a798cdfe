"""Fetch the real sources (Hugging Face daily papers, arXiv feeds) into the watch folder.

A source's raw answer becomes a dump file in DIGESTBOT_WATCH_DIR, which ingest then takes as it
takes a dump dropped by hand. So that the watcher never reads half a file, the answer is written
under a hidden temporary name in the same folder (the watcher skips names starting with "."),
fsynced, and renamed into place. An answer is parsed before it is written: a broken one (invalid
JSON or XML, the wrong shape) fails the source and writes nothing.

Each request is conditional (If-None-Match / If-Modified-Since from the last answer, kept in
``fetch_state``): a 304, or an answer with the content written last time, is ``unchanged`` and
writes nothing, so a re-fetch of an unchanged day costs one request and no ingest work.
Connection errors, timeouts, 429 and 5xx are retried with backoff (honouring Retry-After);
requests to arXiv are at least ARXIV_PAUSE seconds apart. An answer larger than
DIGESTBOT_FETCH_MAX_BYTES is refused while it streams in.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import httpx

from digestbot.core.dumps import DumpLimits
from digestbot.core.fetching import (
    ARXIV_PAUSE, Request, Source, backoff, file_name, parse_sources, plan, retry_after, transient,
)
from digestbot.core.sources import parse_source
from digestbot.errors import DumpError
from digestbot.settings import Settings
from digestbot.store import Store


@dataclass
class SourceResult:
    source: str
    status: str  # written | unchanged | failed
    path: str | None = None
    papers: int = 0
    error: str | None = None
    note: str | None = None  # why it is unchanged, for people (not in the JSON)

    def as_json(self) -> dict:
        return {"source": self.source, "status": self.status, "path": self.path, "papers": self.papers,
                "error": self.error}


@dataclass
class FetchReport:
    sources: list[SourceResult] = field(default_factory=list)

    @property
    def failed(self) -> list[SourceResult]:
        return [s for s in self.sources if s.status == "failed"]

    @property
    def written(self) -> list[SourceResult]:
        return [s for s in self.sources if s.status == "written"]

    def as_json(self) -> dict:
        return {"sources": [s.as_json() for s in self.sources]}

    def summary(self) -> str:
        counts = {status: sum(1 for s in self.sources if s.status == status)
                  for status in ("written", "unchanged", "failed")}
        return ", ".join(f"{n} {status}" for status, n in counts.items())


class Failed(Exception):
    """A source failed: the one-line reason."""


def user_agent(settings: Settings) -> str:
    try:
        mine = version("digestbot")
    except PackageNotFoundError:
        mine = "dev"
    return f"digestbot/{mine} (research paper alerts; contact {settings.from_email}) httpx/{httpx.__version__}"


class Fetcher:
    """Fetches sources with one HTTP client; ``sleep`` and ``monotonic`` are injectable (tests pace
    arXiv and back off without waiting)."""

    def __init__(self, store: Store, settings: Settings, *, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic,
                 backoff_base: float = 2.0) -> None:
        self.store, self.settings = store, settings
        self.sleep, self.monotonic, self.backoff_base = sleep, monotonic, backoff_base
        timeout = settings.fetch_timeout
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)), follow_redirects=True, transport=transport,
            headers={"User-Agent": user_agent(settings)}, trust_env=False,
        )
        self._last_polite: float | None = None  # when the last request to arXiv was sent

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fetch(self, names: Iterable[str] | None, *, day: date | None, now: datetime) -> FetchReport:
        """Fetch each source (default: DIGESTBOT_SOURCES); one failing never stops the others.
        ``day``: the day of hf-daily (default: today in UTC)."""
        sources = parse_sources(list(names) if names else self.settings.sources.split())
        day = day or now.astimezone(UTC).date()
        report = FetchReport()
        for source in sources:
            request = plan(source, day, self.settings.hf_api_url, self.settings.arxiv_feed_url)
            try:
                report.sources.append(self._fetch(request, now))
            except Failed as exc:
                report.sources.append(SourceResult(source.name, "failed", error=str(exc)))
        return report

    def fetch_late(self, *, now: datetime) -> FetchReport:
        """The previous UTC day of each hf-daily source once more, once after midnight: late
        submissions appear on it. Once: when its last fetch was before today began."""
        today = now.astimezone(UTC).date()
        midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
        report = FetchReport()
        for source in parse_sources(self.settings.sources.split()):
            if source.kind != "hf-daily":
                continue  # an arXiv feed has only its latest announcement
            request = plan(source, today - timedelta(days=1), self.settings.hf_api_url, self.settings.arxiv_feed_url)
            with self.store.reading() as tx:
                state = tx.fetches.state(request.key)
                if state is not None and state.checked_at >= midnight:
                    continue
            try:
                result = self._fetch(request, now)
            except Failed as exc:
                result = SourceResult(source.name, "failed", error=str(exc))
            if result.status != "failed" and state is None:
                self._record(request.key, None, None, None, now, changed=False)  # seen after midnight
            report.sources.append(result)
        return report

    def _fetch(self, request: Request, now: datetime) -> SourceResult:
        name = request.source.name
        with self.store.reading() as tx:
            state = tx.fetches.state(request.key)
            etag, modified, known_sha = (state.etag, state.last_modified, state.sha256) if state else (None,) * 3
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        status, body, answer_headers = self._get(request, headers, now)
        if status == 304:
            self._record(request.key, None, None, None, now, changed=False)
            return SourceResult(name, "unchanged", note="not modified since the last fetch")
        if status == 400 and request.source.kind == "hf-daily":
            # The API's answer for a day that has not begun in UTC: nothing yet, not an error.
            return SourceResult(name, "unchanged", note=f"no daily papers yet for {request.params['date']}")
        new_etag, new_modified = answer_headers.get("etag"), answer_headers.get("last-modified")
        sha = hashlib.sha256(body).hexdigest()
        if sha == known_sha:
            self._record(request.key, new_etag, new_modified, sha, now, changed=False)
            return SourceResult(name, "unchanged", note="the same answer as the last fetch")
        if request.source.kind == "hf-daily" and body.strip() == b"[]":
            self._record(request.key, new_etag, new_modified, sha, now, changed=False)
            return SourceResult(name, "unchanged", note=f"no daily papers on {request.params['date']}")
        limits = DumpLimits(self.settings.max_title_chars, self.settings.max_abstract_chars,
                            self.settings.max_dump_bytes)
        try:
            papers = len(parse_source(body, now.date(), limits).entries)
        except DumpError as exc:
            raise Failed(f"broken answer from {request.url}: {exc}") from None
        try:
            path = write_atomically(self.settings.watch_dir, file_name(request, sha), body)
        except OSError as exc:
            raise Failed(f"cannot write into {self.settings.watch_dir}: {exc.strerror or exc}") from None
        self._record(request.key, new_etag, new_modified, sha, now, changed=True)
        return SourceResult(name, "written", str(path), papers)

    def _record(self, key: str, etag: str | None, modified: str | None, sha: str | None, now: datetime,
                changed: bool) -> None:
        with self.store.transaction() as tx:
            tx.fetches.record(key, etag=etag, last_modified=modified, sha256=sha, now=now, changed=changed)

    def _get(self, request: Request, headers: dict[str, str], now: datetime) -> tuple[int, bytes, httpx.Headers]:
        """The answer's status, body (of a 200) and headers, after retrying transient faults."""
        attempts = self.settings.fetch_attempts
        for attempt in range(1, attempts + 1):
            asked = None
            try:
                self._pace(request.source)
                status, body, answer_headers = self._once(request, headers)
            except httpx.TransportError as exc:  # connection refused or reset, timeouts, a broken stream
                problem = _transport_problem(exc)
            else:
                if not transient(status):
                    if status in (200, 304) or (status == 400 and request.source.kind == "hf-daily"):
                        return status, body, answer_headers
                    raise Failed(f"{request.url} answered HTTP {status}")
                problem = f"{request.url} answered HTTP {status}"
                asked = retry_after(answer_headers.get("retry-after"), now)
            if attempt == attempts:
                raise Failed(f"{problem} ({attempts} attempt(s))")
            wait = backoff(attempt, asked, self.backoff_base)
            if wait is None:
                raise Failed(f"{problem}, and asked to retry after {asked:g} s: later")
            self.sleep(wait)
        raise AssertionError("unreachable")

    def _once(self, request: Request, headers: dict[str, str]) -> tuple[int, bytes, httpx.Headers]:
        limit = self.settings.fetch_max_bytes
        with self.client.stream("GET", request.url, params=request.params, headers=headers) as answer:
            if answer.status_code != 200:
                return answer.status_code, b"", answer.headers
            declared = answer.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise Failed(f"{request.url} answered {int(declared):,} bytes, more than DIGESTBOT_FETCH_MAX_BYTES "
                             f"({limit:,}): refused")
            chunks, size = [], 0
            for chunk in answer.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise Failed(f"{request.url} answered more than DIGESTBOT_FETCH_MAX_BYTES ({limit:,} bytes): "
                                 "refused")
                chunks.append(chunk)
            return 200, b"".join(chunks), answer.headers

    def _pace(self, source: Source) -> None:
        """At least ARXIV_PAUSE seconds between two requests to arXiv (retries included)."""
        if not source.polite:
            return
        if self._last_polite is not None:
            wait = self._last_polite + ARXIV_PAUSE - self.monotonic()
            if wait > 0:
                self.sleep(wait)
        self._last_polite = self.monotonic()


def _transport_problem(exc: httpx.TransportError) -> str:
    kind = ("timed out" if isinstance(exc, httpx.TimeoutException) else
            "could not connect" if isinstance(exc, httpx.ConnectError) else "connection failed")
    detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return f"{kind}: {detail}"


def write_atomically(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as ``folder/name``: under a hidden temporary name in the same folder, fsynced,
    then renamed (atomic on one file system), and the folder fsynced so the rename survives a crash."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    temporary = folder / f".{name}.{os.getpid()}.part"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temporary, final)
    folder_fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(folder_fd)
    finally:
        os.close(folder_fd)
    return final


def fetch_sources(store: Store, settings: Settings, names: Iterable[str] | None = None, *, day: date | None = None,
                  now: datetime, **options) -> FetchReport:
    """Fetch once with a client of its own (closed after)."""
    with Fetcher(store, settings, **options) as fetcher:
        return fetcher.fetch(names, day=day, now=now)
