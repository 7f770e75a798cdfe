"""`digestbot fetch`: fake Hugging Face and arXiv servers on loopback, real files, a real store."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from conftest import ROOT
from digestbot.core.fetching import ARXIV_PAUSE, backoff, parse_sources, plan, retry_after
from digestbot.errors import ConfigError, UsageError
from digestbot.services.fetch import Fetcher, fetch_sources, write_atomically
from digestbot.settings import Settings
from fakes import FakeSources

HF = (ROOT / "examples" / "sources" / "hf-daily_2025-12-03.json").read_bytes()
RSS = (ROOT / "examples" / "sources" / "arxiv_cs.CL_2025-12-03.xml").read_bytes()
NOW = datetime(2025, 12, 3, 12, 0, tzinfo=UTC)


class Clock:
    """sleep() and monotonic() that advance a fake time, recording each sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def sources() -> Iterator[FakeSources]:
    with FakeSources(today="2025-12-03") as fake:
        fake.daily["2025-12-03"] = HF
        fake.feeds["cs.CL"] = RSS
        fake.feeds["cs.LG"] = RSS.replace(b"cs.CL updates", b"cs.LG updates")
        yield fake


def settings_for(fake: FakeSources, tmp_path: Path, **extra) -> Settings:
    return Settings(watch_dir=tmp_path / "watch", hf_api_url=fake.hf_url, arxiv_feed_url=fake.arxiv_url,
                    fetch_timeout=5.0, **extra)


def fetch(store, settings: Settings, *names: str, clock: Clock | None = None, day: date | None = None):
    clock = clock or Clock()
    return fetch_sources(store, settings, names or None, day=day, now=NOW, sleep=clock.sleep,
                         monotonic=clock.monotonic)


def watched(settings: Settings) -> list[Path]:
    return sorted(settings.watch_dir.iterdir()) if settings.watch_dir.exists() else []


def test_hf_daily_written_atomically_into_the_watch_folder(store, sources, tmp_path) -> None:
    settings = settings_for(sources, tmp_path)
    report = fetch(store, settings)
    [result] = report.sources
    assert result.as_json() == {"source": "hf-daily", "status": "written", "path": result.path, "papers": 4,
                                "error": None}
    [path] = watched(settings)  # no temporary file left beside it
    assert str(path) == result.path and path.name.startswith("hf-daily_2025-12-03_") and path.suffix == ".json"
    assert path.read_bytes() == HF
    [request] = sources.gets("/api/daily_papers")
    assert request.path == "/api/daily_papers?date=2025-12-03"
    assert request.headers["User-Agent"].startswith("digestbot/")


def test_refetch_of_an_unchanged_day_is_one_conditional_request(store, sources, tmp_path) -> None:
    settings = settings_for(sources, tmp_path)
    fetch(store, settings)
    before = len(sources.requests)
    report = fetch(store, settings)
    assert [s.status for s in report.sources] == ["unchanged"]
    assert len(sources.requests) == before + 1
    assert sources.requests[-1].headers["If-None-Match"]  # answered 304
    assert len(watched(settings)) == 1


def test_the_same_content_without_validators_is_unchanged(store, sources, tmp_path) -> None:
    settings = settings_for(sources, tmp_path)
    sources.script(200, HF)  # no ETag, no Last-Modified
    fetch(store, settings)
    sources.script(200, HF)
    assert [s.status for s in fetch(store, settings).sources] == ["unchanged"]
    assert len(watched(settings)) == 1


def test_a_changed_answer_is_written_beside_the_first(store, sources, tmp_path) -> None:
    settings = settings_for(sources, tmp_path)
    fetch(store, settings)
    items = json.loads(HF)
    items[0]["paper"]["upvotes"] = 100
    sources.daily["2025-12-03"] = json.dumps(items).encode()
    [result] = fetch(store, settings).sources
    assert result.status == "written" and len(watched(settings)) == 2


def test_503_then_200_succeeds_after_a_backoff(store, sources, tmp_path) -> None:
    settings = settings_for(sources, tmp_path)
    sources.script(503, "busy")
    clock = Clock()
    [result] = fetch(store, settings, clock=clock).sources
    assert result.status == "written" and clock.sleeps == [2.0]


def test_retry_after_is_honoured(store, sources, tmp_path) -> None:
    settings = settings_for(sources, tmp_path)
    sources.script(429, "slow down", {"Retry-After": "7"})
    clock = Clock()
    assert fetch(store, settings, clock=clock).sources[0].status == "written"
    assert clock.sleeps == [7.0]


def test_transient_faults_past_the_attempts_fail_and_write_nothing(store, sources, tmp_path) -> None:
    settings = settings_for(sources, tmp_path, fetch_attempts=3)
    for _ in range(3):
        sources.script(502, "bad gateway")
    clock = Clock()
    [result] = fetch(store, settings, clock=clock).sources
    assert result.status == "failed" and "HTTP 502" in result.error and "3 attempt" in result.error
    assert clock.sleeps == [2.0, 4.0] and watched(settings) == []


@pytest.mark.parametrize("body, message", [
    (HF[:700], "truncated JSON"),
    (b'{"error": "Invalid token"}', "JSON object"),
    (b"<html>oops</html>", "not an Atom feed"),
])
def test_a_broken_answer_fails_and_writes_nothing(store, sources, tmp_path, body: bytes, message: str) -> None:
    settings = settings_for(sources, tmp_path)
    sources.script(200, body)
    [result] = fetch(store, settings).sources
    assert result.status == "failed" and message in result.error and "\n" not in result.error
    assert watched(settings) == []


def test_a_future_day_and_an_empty_day_are_not_errors(store, sources, tmp_path) -> None:
    settings = settings_for(sources, tmp_path)
    assert fetch(store, settings, day=date(2025, 12, 4)).sources[0].status == "unchanged"  # 400: not begun
    assert fetch(store, settings, day=date(2025, 11, 30)).sources[0].status == "unchanged"  # []
    assert watched(settings) == []


def test_answers_above_the_size_limit_are_refused(store, sources, tmp_path) -> None:
    settings = settings_for(sources, tmp_path, fetch_max_bytes=5_000)
    [result] = fetch(store, settings).sources
    assert result.status == "failed" and "DIGESTBOT_FETCH_MAX_BYTES" in result.error and watched(settings) == []


def test_arxiv_is_paced_and_one_failing_source_does_not_stop_the_others(store, sources, tmp_path) -> None:
    settings = settings_for(sources, tmp_path)
    clock = Clock()
    report = fetch(store, settings, "arxiv:cs.CL", "arxiv:cs.XX", "arxiv:cs.LG", "hf-daily", clock=clock)
    assert [s.status for s in report.sources] == ["written", "failed", "written", "written"]
    assert "HTTP 404" in report.sources[1].error
    assert clock.sleeps == [ARXIV_PAUSE, ARXIV_PAUSE]  # before the 2nd and 3rd arXiv requests, not before HF
    assert report.as_json()["sources"][0]["papers"] == 3


def test_connection_refused_is_retried_then_failed(store, tmp_path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    settings = Settings(watch_dir=tmp_path / "w", hf_api_url=f"http://127.0.0.1:{port}/api", fetch_attempts=2)
    clock = Clock()
    [result] = fetch(store, settings, clock=clock).sources
    assert result.status == "failed" and "could not connect" in result.error and clock.sleeps == [2.0]


def test_the_fetched_file_is_ingested_like_a_dump(store, sources, tmp_path) -> None:
    from digestbot.services.ingest import ingest_paths

    settings = settings_for(sources, tmp_path)
    fetch(store, settings, "hf-daily", "arxiv:cs.CL")
    report = ingest_paths(store, [settings.watch_dir], now=datetime.now(UTC), settle_seconds=0, matcher=None)
    assert [f.status for f in report.files] == ["ingested", "ingested"]
    # The speech paper is in both: the feed (read first, by name) brings it, HF adds its upvotes.
    assert (report.new, report.updated, report.unchanged) == (6, 1, 0)


# ---- the pure parts ----

def test_source_names() -> None:
    assert [s.kind for s in parse_sources(["hf-daily", "arxiv:cs.CL+cs.LG"])] == ["hf-daily", "arxiv"]
    for bad in (["hf"], ["arxiv:"], ["arxiv:cs.CL/../x"], []):
        with pytest.raises(UsageError):
            parse_sources(bad)
    with pytest.raises(ConfigError, match="DIGESTBOT_SOURCES"):
        Settings.load({"DIGESTBOT_SOURCES": "hf-daily rss"}, dotenv_path=None)


def test_plans() -> None:
    [hf, arxiv] = parse_sources(["hf-daily", "arxiv:cs.CL+cs.LG"])
    request = plan(hf, date(2026, 1, 2), "https://huggingface.co/api/", "https://rss.arxiv.org/atom")
    assert (request.url, request.params, request.key) == (
        "https://huggingface.co/api/daily_papers", {"date": "2026-01-02"}, "hf-daily:2026-01-02")
    assert plan(arxiv, date(2026, 1, 2), "x", "https://rss.arxiv.org/atom").url == "https://rss.arxiv.org/atom/cs.CL+cs.LG"


def test_backoff_and_retry_after() -> None:
    assert [backoff(n, None) for n in (1, 2, 3, 10)] == [2.0, 4.0, 8.0, 60.0]
    assert backoff(1, 5.0) == 5.0 and backoff(1, 3600.0) is None
    assert retry_after("12", NOW) == 12.0 and retry_after("soon", NOW) is None and retry_after(None, NOW) is None
    assert retry_after("Wed, 03 Dec 2025 12:00:30 GMT", NOW) == 30.0


def test_write_atomically_leaves_no_temporary_file(tmp_path) -> None:
    path = write_atomically(tmp_path / "new", "a.json", b"[1]")
    assert path.read_bytes() == b"[1]" and [p.name for p in (tmp_path / "new").iterdir()] == ["a.json"]


# ---- the command ----

def test_fetch_command_json_and_exit_code(run, sources, tmp_path) -> None:
    assert run("init").returncode == 0
    env = {"DIGESTBOT_HF_API_URL": sources.hf_url, "DIGESTBOT_ARXIV_FEED_URL": sources.arxiv_url,
           "DIGESTBOT_WATCH_DIR": str(tmp_path / "watch"), "DIGESTBOT_FETCH_ATTEMPTS": "1"}
    ok = run("fetch", "hf-daily", "--date", "2025-12-03", "--json", **env)
    assert ok.returncode == 0, ok.stderr
    [source] = json.loads(ok.stdout)["sources"]
    assert set(source) == {"source", "status", "path", "papers", "error"} and source["status"] == "written"
    failing = run("fetch", "arxiv:cs.XX", "hf-daily", "--date", "2025-12-03", "--json", **env)
    assert failing.returncode == 1
    assert [s["status"] for s in json.loads(failing.stdout)["sources"]] == ["failed", "unchanged"]
    human = run("fetch", "hf-daily", "--date", "2025-12-03", **env)
    assert human.returncode == 0 and "unchanged" in human.stdout
    bad = run("fetch", "nope", **env)
    assert bad.returncode == 2 and "unknown source" in bad.stderr


def test_the_day_before_is_fetched_once_more_after_midnight(store, sources, tmp_path) -> None:
    settings = settings_for(sources, tmp_path, sources="hf-daily arxiv:cs.CL")
    sources.daily["2025-12-02"] = HF
    clock = Clock()
    with Fetcher(store, settings, sleep=clock.sleep, monotonic=clock.monotonic) as fetcher:
        evening = datetime(2025, 12, 2, 23, 0, tzinfo=UTC)
        fetcher.fetch(None, day=None, now=evening)  # 2025-12-02 as today
        after_midnight = datetime(2025, 12, 3, 0, 30, tzinfo=UTC)
        late = fetcher.fetch_late(now=after_midnight)
        assert [(s.source, s.status) for s in late.sources] == [("hf-daily", "unchanged")]  # asked again: 304
        assert sources.gets("/api/daily_papers")[-1].path.endswith("date=2025-12-02")
        asked = len(sources.requests)
        assert fetcher.fetch_late(now=after_midnight.replace(hour=5)).sources == []  # once only
        assert len(sources.requests) == asked


def test_the_run_records_a_failed_fetch_as_a_failed_job(engine, tmp_path) -> None:
    from digestbot.bootstrap import bootstrap
    from digestbot.runner import Bot
    from digestbot.store import JobRun

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(watch_dir=tmp_path / "w", outbox_dir=tmp_path / "o", email_backend="file",
                        slack_backend="file", secret_key="k", hf_api_url=f"http://127.0.0.1:{port}/api",
                        fetch_attempts=1)
    bot = Bot(bootstrap(settings, engine=engine, clock=lambda: NOW))
    try:
        bot.fetch()
    finally:
        bot.stop()
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        run = session.get(JobRun, "fetch")
    assert run.last_status == "failed" and "could not connect" in run.last_error and "\n" not in run.last_error
