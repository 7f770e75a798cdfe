"""The garbage-collection policy is the process's, set once by its entry point
(``digestbot.bootstrap.settle_the_collector``), and holds in every thread: nothing in digestbot
turns the collector off or on around its own work, where a thread leaving its work would turn it
back on under another thread still in the middle of its own.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

# Two threads ingest and match a dump each, into databases of their own, while the main thread
# watches the collector. Run in a process of its own: the policy is the whole process's.
WATCHED_INGESTS = r"""
import gc, json, sys, threading, time
from datetime import UTC, datetime
from pathlib import Path

from digestbot.bootstrap import settle_the_collector
from digestbot.services.ingest import ingest_paths
from digestbot.services.matching import SubscriptionMatcher
from digestbot.services.subscriptions import import_subscriptions
from digestbot.store import Store, connect, migrate

folder, papers = Path(sys.argv[1]), int(sys.argv[2])
now = datetime(2025, 3, 14, 12, tzinfo=UTC)
body = "".join(f"Diffusion transformers for task {i}\n\nWe study diffusion models on task {i} with "
               f"self-attention and report results on {i % 97} benchmarks.\n\n" for i in range(papers))
stores, dumps = [], []
for name in ("a", "b"):
    store = Store(connect(f"sqlite:///{folder / name}.db"))
    migrate(store.engine)
    import_subscriptions(store, "recipient,query\nreader@example.org,diffusion\nother@example.org,self-attention\n",
                         now)
    dump = folder / f"{name}.txt"
    dump.write_text(f"Daily Papers\n\nMar 13\n\n{body}", encoding="utf-8")
    stores.append(store)
    dumps.append(dump)

settle_the_collector()
thresholds = gc.get_threshold()
reports = [None, None]

def ingest(k):
    reports[k] = ingest_paths(stores[k], [dumps[k]], now=now, settle_seconds=0, matcher=SubscriptionMatcher())

threads = [threading.Thread(target=ingest, args=(k,)) for k in (0, 1)]
for thread in threads:
    thread.start()
looks = off = moved = 0
while any(thread.is_alive() for thread in threads):
    looks += 1
    off += not gc.isenabled()
    moved += gc.get_threshold() != thresholds
    time.sleep(0.0005)
for thread in threads:
    thread.join()
print(json.dumps({
    "looks": looks, "off": off, "moved": moved, "enabled_after": gc.isenabled(),
    "thresholds_after": list(gc.get_threshold()), "thresholds": list(thresholds),
    "new": [report.new for report in reports], "matches": [report.matches for report in reports],
}))
"""


def test_the_collector_stays_on_in_every_thread_while_dumps_are_ingested_and_matched(tmp_path: Path) -> None:
    papers = 4000
    done = subprocess.run([sys.executable, "-c", WATCHED_INGESTS, str(tmp_path), str(papers)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["new"] == [papers, papers]
    assert seen["matches"] == [2 * papers, 2 * papers]  # both subscriptions match every paper: matching ran
    assert seen["looks"] > 20  # the collector was watched throughout, not once
    assert seen["off"] == 0
    assert seen["moved"] == 0
    assert seen["enabled_after"] is True
    assert seen["thresholds_after"] == seen["thresholds"]


def test_only_the_entry_points_policy_touches_the_collector() -> None:
    """No module of digestbot but bootstrap (whose ``settle_the_collector`` the entry points call)
    imports ``gc``, and nothing anywhere in digestbot turns the collector off."""
    importers, switches = set(), []
    for path in sorted((ROOT / "digestbot").rglob("*.py")):
        shown = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Import) and any(alias.name == "gc" for alias in node.names)) or (
                    isinstance(node, ast.ImportFrom) and node.module == "gc"):
                importers.add(shown)
            if isinstance(node, ast.Attribute) and node.attr in ("disable", "enable") and (
                    isinstance(node.value, ast.Name) and node.value.id == "gc"):
                switches.append(f"{shown}:{node.lineno}")
    assert importers == {"digestbot/bootstrap.py"}
    assert switches == []
