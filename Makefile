# digestbot: `make demo` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install when the project's metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# A fresh SQLite database in ./demo, the sample dumps ingested, and what happened printed.
demo: $(STAMP)
	rm -rf demo && mkdir -p demo
	cd demo && ../$(BIN)/digestbot init
	@# The samples are complete files: no need to wait for them to "settle" after a fresh clone.
	cd demo && DIGESTBOT_SETTLE_SECONDS=0 ../$(BIN)/digestbot ingest ../examples/dumps
	cd demo && ../$(BIN)/digestbot status
	cd demo && ../$(BIN)/digestbot papers --limit 5
	@echo "demo database: demo/digestbot.db  (try: cd demo && ../$(BIN)/digestbot papers)"

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest_bench.py

clean:
	rm -rf $(VENV) demo .pytest_cache .hypothesis
