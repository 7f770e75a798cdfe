"""`digestbot run` with DIGESTBOT_SOURCES="hf-daily arxiv:cs.CL" against fake Hugging Face and arXiv
servers: it fetches, ingests, matches and delivers digests with real links and author names."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime, timedelta

from conftest import ROOT
from fakes import FakeSendGrid, FakeSlack, FakeSources
from test_run_e2e import Run, clean_env, cli, runs, wait_for  # noqa: F401 - runs is a fixture

HF = (ROOT / "examples" / "sources" / "hf-daily_2025-12-03.json").read_bytes()
RSS = (ROOT / "examples" / "sources" / "arxiv_cs.CL_2025-12-03.xml").read_bytes()
HOSTILE = "<!channel> <script>alert(1)</script> {{ 7*7 }}"


def test_run_fetches_ingests_matches_and_delivers_with_links_and_authors(tmp_path, runs) -> None:
    today = datetime.now(UTC).date()
    items = json.loads(HF)
    items[3]["paper"]["authors"].append({"_id": "x", "name": HOSTILE})  # a hostile name stays data
    with FakeSources(today=today.isoformat()) as sources, FakeSendGrid() as sendgrid, FakeSlack() as slack:
        sources.daily[today.isoformat()] = json.dumps(items).encode()
        sources.feeds["cs.CL"] = RSS
        env = clean_env(
            DIGESTBOT_DATABASE_URL=f"sqlite:///{tmp_path / 'digestbot.db'}", DIGESTBOT_WATCH_DIR=str(tmp_path / "w"),
            DIGESTBOT_POLL_SECONDS="1", DIGESTBOT_SETTLE_SECONDS="1", DIGESTBOT_EMAIL_BACKEND="sendgrid",
            SENDGRID_API_KEY="SG.test", SENDGRID_API_HOST=sendgrid.url, SLACK_BOT_TOKEN="xoxb-test",
            SLACK_API_URL=slack.api_url, DIGESTBOT_OUTBOX_DIR=str(tmp_path / "outbox"),
            DIGESTBOT_SOURCES="hf-daily arxiv:cs.CL", DIGESTBOT_FETCH_MINUTES="60",
            DIGESTBOT_HF_API_URL=sources.hf_url, DIGESTBOT_ARXIV_FEED_URL=sources.arxiv_url,
        )
        cli(env, tmp_path, "init")
        cli(env, tmp_path, "subscribe", "alice@example.org", "speech enhancement", "--cadence", "instant")
        cli(env, tmp_path, "subscribe", "slack:#papers", "quantization OR citation", "--cadence", "instant")
        run = Run(env, tmp_path, tmp_path / "run.log")
        runs.append(run)
        wait_for(lambda: sendgrid.mails and len(slack.posts) >= 1, 60, "the alerts of the fetched papers", run)

        [mail] = sendgrid.mails
        html = next(c["value"] for c in mail["content"] if c["type"] == "text/html")
        text = next(c["value"] for c in mail["content"] if c["type"] == "text/plain")
        assert "https://huggingface.co/papers/2512.01873" in html and "https://arxiv.org/pdf/2512.01873" in html
        assert "Zoë Ångström, Ravi Patel, Mei Lin et al." in text and "https://arxiv.org/abs/2512.01873" in text

        posted = json.dumps([p.json for p in slack.posts], ensure_ascii=False)
        assert "https://huggingface.co/papers/2512.02210" in posted and "https://huggingface.co/papers/2512.02544" in posted
        assert "Amara Okafor, Jonas Weber, &lt;!channel&gt; &lt;script&gt;alert(1)&lt;/script&gt; {{ 7*7 }}" in posted
        assert "<!channel>" not in posted and "49" not in posted

        # Both sources were asked once each (and the day before once), with a descriptive User-Agent.
        assert len(sources.gets("/atom/cs.CL")) == 1
        days = sorted(r.path.rsplit("=", 1)[1] for r in sources.gets("/api/daily_papers"))
        assert days == [(today - timedelta(days=1)).isoformat(), today.isoformat()]
        assert all(r.headers["User-Agent"].startswith("digestbot/") for r in sources.requests)

        status = json.loads(cli(env, tmp_path, "status", "--json").stdout)
        assert status["jobs"]["fetch"]["status"] == "ok"
        papers = json.loads(cli(env, tmp_path, "papers", "--json").stdout)
        speech = next(p for p in papers if p["arxiv_id"] == "2512.01873")
        assert speech["url"] == "https://huggingface.co/papers/2512.01873" and speech["authors"][0] == "Zoë Ångström"
        assert len(papers) == 6  # the speech paper is in both answers: one paper
        run.signal(signal.SIGTERM)
        assert run.wait(30) == 0
