"""Web benchmark: latency of the pages and endpoints under `digestbot serve`, over real HTTP.

    .venv/bin/python benchmarks/web_bench.py [--subscriptions 100000] [--requests 200] [--database-url URL] [--json]

A fresh database gets --subscriptions subscriptions (10 per recipient) and the sample dumps
(342 papers first seen today: about two weeks of the Daily Papers listing). The application
runs under waitress (as `digestbot serve` runs it) on a free loopback port, and the script
times, over keep-alive HTTP connections:

- ``slack``: signed `/digest subscribe …` slash commands (goal: every answer within Slack's 3 s);
- ``preview``: the subscribe page's as-you-type check and preview, `GET /api/query`;
- ``subscribe``: the subscribe form, `POST /` (a pending subscription and its confirmation email);
- ``manage``: a recipient's manage page;
- ``concurrent``: the preview again from 8 client threads at once, as throughput.

Exit status 1 when a goal is missed (the slowest slash command takes 3 s or more).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import hmac
import http.client
import itertools
import io
import json
import logging
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from _common import ROOT, Database, machine  # noqa: E402  (also puts the checkout on sys.path)

import waitress.server  # noqa: E402

from digestbot.bootstrap import bootstrap  # noqa: E402
from digestbot.services.ingest import ingest_paths  # noqa: E402
from digestbot.services.matching import SubscriptionMatcher  # noqa: E402
from digestbot.services.subscriptions import import_subscriptions  # noqa: E402
from digestbot.settings import Settings  # noqa: E402
from digestbot.store import Store  # noqa: E402
from digestbot.web import create_app  # noqa: E402
from digestbot.web.app import site_of  # noqa: E402

SECRET = "bench-signing-secret"
QUERIES = ['"diffusion model"', "quantiz* OR pruning", "agent -survey", "title:video", "reinforcement learning",
           "retrieval augmented", "vision-language", "benchmark"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def seed(engine, subscriptions: int) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["recipient", "query", "cadence"])
    writer.writerows([f"reader{i // 10}@example.org", QUERIES[i % len(QUERIES)], "weekly"] for i in range(subscriptions))
    report = import_subscriptions(Store(engine), text.getvalue(), datetime.now(UTC))
    assert report.imported == subscriptions, report.as_json()
    samples = sorted((ROOT / "examples" / "dumps").iterdir())
    ingest_paths(Store(engine), samples, now=datetime.now(UTC), settle_seconds=0, matcher=SubscriptionMatcher())


class Client:
    """One keep-alive HTTP connection, made again from another loopback address (127.0.x.y)
    every PER_ADDRESS requests: the preview's own limit (60 a minute per client address) would
    otherwise refuse the benchmark's few clients."""

    PER_ADDRESS = 50
    _addresses = itertools.count(1)

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""
        self._connect()

    def _connect(self) -> None:
        n = next(self._addresses)
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                                     source_address=(f"127.0.{n >> 8 & 255}.{n & 255 or 1}", 0))
        self.sent = 0

    def request(self, method: str, path: str, body: str | None = None, headers: dict | None = None) -> tuple[int, bytes, float]:
        if self.sent == self.PER_ADDRESS:
            self.connection.close()
            self._connect()
        self.sent += 1
        headers = dict(headers or {})
        if self.cookie:
            headers["Cookie"] = self.cookie
        start = time.perf_counter()
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
        if cookie := response.getheader("Set-Cookie"):
            self.cookie = cookie.split(";", 1)[0]
        return response.status, data, elapsed


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"requests": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 2), "max_ms": round(ordered[-1] * 1000, 2)}


def slack_body(i: int) -> tuple[str, dict]:
    body = urlencode({"command": "/digest", "text": f"subscribe {QUERIES[i % len(QUERIES)]} daily",
                      "channel_id": f"C{i:08d}", "user_id": "U1"})
    timestamp = str(int(time.time()))
    signature = "v0=" + hmac.new(SECRET.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return body, {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature,
                  "Content-Type": "application/x-www-form-urlencoded"}


def measure(port: int, requests: int, manage_path: str) -> dict:
    client = Client(port)
    results: dict[str, dict] = {}

    times = []
    for i in range(requests):
        body, headers = slack_body(i)
        status, data, elapsed = client.request("POST", "/slack/commands", body, headers)
        assert status == 200 and b"subscribed this channel" in data, data
        times.append(elapsed)
    results["slack"] = summary(times)

    times = []
    for i in range(requests):
        status, data, elapsed = client.request("GET", "/api/query?" + urlencode({"q": QUERIES[i % len(QUERIES)]}))
        assert status == 200 and json.loads(data)["ok"], data
        times.append(elapsed)
    results["preview"] = summary(times)

    status, page, _ = client.request("GET", "/")
    csrf = re.search(rb'name="csrf" value="([^"]+)"', page).group(1).decode()
    times = []
    for i in range(requests):
        form = urlencode({"csrf": csrf, "email": f"new{i}@example.org", "query": QUERIES[i % len(QUERIES)],
                          "cadence": "daily", "at": "08:00", "day": "mon", "tz": "Europe/Paris"})
        status, data, elapsed = client.request("POST", "/", form, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 303, (status, data[:300])
        times.append(elapsed)
    results["subscribe"] = summary(times)

    times = []
    for _ in range(requests):
        status, data, elapsed = client.request("GET", manage_path)
        assert status == 200 and data.count(b'class="sub"') == 10, status
        times.append(elapsed)
    results["manage"] = summary(times)

    def preview_worker(_: int) -> int:
        worker = Client(port)
        for i in range(requests // 4):
            status, _, _ = worker.request("GET", "/api/query?" + urlencode({"q": QUERIES[i % len(QUERIES)]}))
            assert status == 200
        return requests // 4

    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        done = sum(pool.map(preview_worker, range(8)))
    elapsed = time.perf_counter() - start
    results["concurrent"] = {"clients": 8, "requests": done, "per_second": round(done / elapsed, 1)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database-url")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "Task queue depth is 1": expected under load

    with tempfile.TemporaryDirectory() as workdir:
        database = Database(args.database_url, Path(workdir))
        try:
            started = time.perf_counter()
            seed(database.engine, args.subscriptions)
            seeded = time.perf_counter() - started
            settings = Settings.load(env={
                "DIGESTBOT_DATABASE_URL": database.url, "DIGESTBOT_OUTBOX_DIR": f"{workdir}/outbox",
                "DIGESTBOT_EMAIL_BACKEND": "file", "SLACK_SIGNING_SECRET": SECRET,
                # The benchmark is one client making many requests: lift the per-client and per-address limits.
                "DIGESTBOT_WEB_CLIENT_LIMIT": "1000000", "DIGESTBOT_WEB_ADDRESS_LIMIT": "1000000",
            }, dotenv_path=None)
            parts = bootstrap(settings, engine=database.engine)
            app = create_app(parts)
            site_of(app).start()  # as `digestbot serve` does: confirmations are sent at once
            port = free_port()
            server = waitress.server.create_server(app, host="127.0.0.1", port=port, threads=8)
            threading.Thread(target=server.run, daemon=True).start()
            manage_path = parts.signer.manage_url(1).removeprefix(settings.base_url)
            results = measure(port, args.requests, manage_path)
            time.sleep(0.5)  # a thread that answered the last request still wakes the server's loop
            server.close()
            site_of(app).stop()
        finally:
            database.close()

    report = {"machine": machine(), "backend": database.backend, "subscriptions": args.subscriptions,
              "seed_seconds": round(seeded, 1), **results}
    goal_met = results["slack"]["max_ms"] < 3000
    report["goals"] = {"slack answered within 3 s": goal_met}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{database.backend}, {args.subscriptions:,} subscriptions (seeded in {seeded:.1f} s), "
              f"load {report['machine']['load_average']}")
        for name in ("slack", "preview", "subscribe", "manage"):
            r = results[name]
            print(f"  {name:<10} p50 {r['p50_ms']:>8.2f} ms   p95 {r['p95_ms']:>8.2f} ms   max {r['max_ms']:>8.2f} ms"
                  f"   ({r['requests']} requests)")
        c = results["concurrent"]
        print(f"  preview from {c['clients']} clients at once: {c['per_second']} requests/s")
        print(f"  goal: every slash command answered within 3 s: {'met' if goal_met else 'NOT met'}")
    return 0 if goal_met else 1


if __name__ == "__main__":
    sys.exit(main())
