"""What fetching a source means, as values: which request, under which key, into which file, and
how long to wait before trying again. The requests themselves are services/fetch.py.

Sources (DIGESTBOT_SOURCES, or `digestbot fetch SOURCE...`):

- ``hf-daily``: ``GET {DIGESTBOT_HF_API_URL}/daily_papers?date=YYYY-MM-DD`` (one day in UTC);
- ``arxiv:CATS``: ``GET {DIGESTBOT_ARXIV_FEED_URL}/CATS``, categories joined by ``+``
  (``arxiv:cs.CL+cs.LG``). arXiv asks for at most one request every 3 seconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parsedate_to_datetime

from digestbot.errors import UsageError

ARXIV_PAUSE = 3.0  # seconds between two requests to arXiv, at least
MAX_BACKOFF = 60.0  # seconds: a longer Retry-After fails the source now (the next fetch tries again)
_CATEGORY = re.compile(r"[a-z][a-z-]*(?:\.[A-Za-z][A-Za-z-]*)?")


@dataclass(frozen=True)
class Source:
    """One source as named: ``kind`` is ``hf-daily`` or ``arxiv``; ``categories`` for arXiv."""

    name: str
    kind: str
    categories: str = ""

    @property
    def polite(self) -> bool:
        """Whether requests to it must be paced (ARXIV_PAUSE)."""
        return self.kind == "arxiv"


@dataclass(frozen=True)
class Request:
    """The request that fetches a source for a day, the key its state is kept under, and the name of
    the file its answer is written to (without the content hash that ends it)."""

    source: Source
    url: str
    params: dict[str, str]
    key: str
    stem: str
    suffix: str


def parse_sources(names: Iterable[str]) -> list[Source]:
    """The sources named; UsageError for a name that is none (with what is allowed)."""
    out = []
    for name in names:
        if name == "hf-daily":
            out.append(Source(name, "hf-daily"))
        elif name.startswith("arxiv:"):
            cats = name[len("arxiv:"):]
            if not cats or not all(_CATEGORY.fullmatch(c) for c in cats.split("+")):
                raise UsageError(f"bad arXiv categories {cats!r}: use e.g. arxiv:cs.CL or arxiv:cs.CL+cs.LG")
            out.append(Source(name, "arxiv", cats))
        else:
            raise UsageError(f"unknown source {name!r}: use hf-daily or arxiv:CATEGORIES (e.g. arxiv:cs.CL+cs.LG)")
    if not out:
        raise UsageError("no source to fetch: name one (hf-daily, arxiv:cs.CL) or set DIGESTBOT_SOURCES")
    return out


def plan(source: Source, day: date, hf_api_url: str, arxiv_feed_url: str) -> Request:
    """The request for ``source``: for hf-daily, the papers of ``day``; an arXiv feed has only today."""
    if source.kind == "hf-daily":
        return Request(source, f"{hf_api_url.rstrip('/')}/daily_papers", {"date": day.isoformat()},
                       f"hf-daily:{day.isoformat()}", f"hf-daily_{day.isoformat()}", ".json")
    return Request(source, f"{arxiv_feed_url.rstrip('/')}/{source.categories}", {}, source.name,
                   f"arxiv_{source.categories}_{day.isoformat()}", ".xml")


def file_name(request: Request, sha256: str) -> str:
    """The dump file of an answer: distinct per content, so that a new answer never overwrites one
    the watcher may be reading; the watcher ignores the hidden temporary name it is written under."""
    return f"{request.stem}_{sha256[:12]}{request.suffix}"


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header asks to wait (a number, or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def backoff(attempt: int, asked: float | None, base: float = 2.0) -> float | None:
    """How long to wait before attempt ``attempt + 1`` (``attempt`` from 1): what the server asked,
    else ``base`` doubling per attempt; None when it asks for more than MAX_BACKOFF."""
    if asked is not None:
        return asked if asked <= MAX_BACKOFF else None
    return min(base * 2 ** (attempt - 1), MAX_BACKOFF)


def transient(status: int) -> bool:
    """Whether an HTTP status is worth retrying: 429 and the 5xx."""
    return status == 429 or 500 <= status <= 599
