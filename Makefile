# digestbot: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test browser bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install when the project's metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# A fresh SQLite database in ./demo: sample subscriptions, the sample dumps ingested and
# matched, the digests due a week from now built and "sent" by the file backend to demo/outbox.
demo: $(STAMP)
	rm -rf demo && mkdir -p demo/dumps  # demo/dumps: the watch folder of `digestbot run` there
	@# The demo's own .env asks for the file backends by name: `digestbot run` and `serve` refuse
	@# to write mail into files unless told to (production mail must never land there silently).
	@# It stays offline: `digestbot run` there fetches no source (see the README's "Sources").
	printf 'DIGESTBOT_EMAIL_BACKEND=file\nDIGESTBOT_SLACK_BACKEND=file\nDIGESTBOT_FETCH_MINUTES=0\n' > demo/.env
	cd demo && ../$(BIN)/digestbot init
	cd demo && ../$(BIN)/digestbot import-subscriptions ../examples/subscriptions.csv
	@# The samples are complete files: no need to wait for them to "settle" after a fresh clone.
	cd demo && DIGESTBOT_SETTLE_SECONDS=0 ../$(BIN)/digestbot ingest ../examples/dumps
	@# What `digestbot fetch` writes: a Hugging Face daily-papers answer and an arXiv feed (ids, authors, upvotes).
	cd demo && DIGESTBOT_SETTLE_SECONDS=0 ../$(BIN)/digestbot ingest ../examples/sources
	@# "More like these": Carol gets the papers most like one she liked (examples must be stored first).
	cd demo && ../$(BIN)/digestbot subscribe carol@example.org --like "fMRI-3D: A Comprehensive Dataset for Enhancing fMRI-based 3D Reconstruction" --cadence weekly --tz Europe/Paris --backfill 7
	cd demo && ../$(BIN)/digestbot digest --now "$$(../$(BIN)/python -c 'import datetime as d; print((d.datetime.now(d.UTC) + d.timedelta(days=7)).isoformat())')"
	cd demo && ../$(BIN)/digestbot send
	cd demo && ../$(BIN)/digestbot status
	@echo
	@echo "Open the digests: demo/outbox/email/*.eml (any mail client) and demo/outbox/slack/*.json"
	@echo "(paste a payload's blocks into https://app.slack.com/block-kit-builder). Try: cd demo && ../$(BIN)/digestbot search 'quantiz*'"
	@echo "The web pages (subscribe, manage, unsubscribe): cd demo && ../$(BIN)/digestbot serve, then open http://127.0.0.1:8000"

test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser test (tests/test_browser.py) drives the system's Chromium, DIGESTBOT_CHROMIUM
# (default /usr/bin/chromium), never a Playwright download. Install Debian's package if it is
# missing, with sudo when not root; where that cannot be done (no apt, no sudo), say so and go on:
# the test then skips, or fails under DIGESTBOT_REQUIRE_BROWSER=1 (as .ci/run sets).
CHROMIUM_PATH := $(or $(DIGESTBOT_CHROMIUM),/usr/bin/chromium)
browser:
	@[ -x "$(CHROMIUM_PATH)" ] || { \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else sudo=none; fi; \
	  if [ "$$sudo" != none ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser test"; \
	    $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
	      || { $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q \
	           && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }; \
	  fi; \
	  [ -x "$(CHROMIUM_PATH)" ] || echo "warning: no Chromium at $(CHROMIUM_PATH): the browser test will skip (fail with DIGESTBOT_REQUIRE_BROWSER=1)"; \
	}

# The benchmarks of BENCHMARKS.md (a few minutes in all).
bench: $(STAMP)
	$(BIN)/python benchmarks/ingest_bench.py
	$(BIN)/python benchmarks/delivery_bench.py
	$(BIN)/python benchmarks/match_bench.py
	$(BIN)/python benchmarks/web_bench.py
	$(BIN)/python benchmarks/relevance_bench.py
	$(BIN)/python benchmarks/sources_bench.py
	$(BIN)/python benchmarks/scheduler_bench.py

clean:
	rm -rf $(VENV) demo .pytest_cache .hypothesis
