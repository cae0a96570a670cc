# Everything a fresh machine with python3, make and git needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint run console migrate bench clean lock soak

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests migrations bench
	$(BIN)/ruff format --check src tests migrations bench
	$(BIN)/mypy

# Three pytest-xdist workers on two cores: most tests wait on subprocesses, sockets and
# timers, so three overlap those waits. Four took 6 to 12 min on a machine shared with
# other work and loaded it enough to upset timing assertions now and then. Tests go out
# two at a time in collection order, the longest first (tests/conftest.py), so that no
# long one starts near the end.
test: lint
	$(BIN)/miliabot content validate
	$(BIN)/pytest -n 3 --dist load --maxschedchunk 2

run: $(STAMP)
	$(BIN)/miliabot run

console: $(STAMP)
	$(BIN)/miliabot console

migrate: $(STAMP)
	$(BIN)/miliabot migrate

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# Every benchmark, each ending in one JSON line; they need PostgreSQL too.
bench: $(STAMP)
	$(BIN)/python -m bench.startup
	$(BIN)/python -m bench.dispatch
	$(BIN)/python -m bench.punctuality
	$(BIN)/python -m bench.broadcasts pacing
	$(BIN)/python -m bench.broadcasts during
	$(BIN)/python -m bench.broadcasts memory
	$(BIN)/python -m bench.flood
	$(BIN)/python -m bench.search
	$(BIN)/python -m bench.webhook
	$(BIN)/python -m bench.charts

# requirements.lock: every runtime dependency pinned with hashes, for the Docker image.
# Run after changing the dependencies in pyproject.toml (tests/test_packaging.py checks).
lock: $(STAMP)
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml

# The robustness suite at full size (tests/robustness), ending in one JSON line of figures;
# needs PostgreSQL. `make test` runs the same suite at CI size.
soak: $(STAMP)
	$(BIN)/python -m bench.soak
