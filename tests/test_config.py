"""Settings: read once from the environment and .env, with clear errors for bad values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monolith.config import RateLimit, load_settings, parse_rate_limits
from monolith.errors import ConfigError
from tests.server import run_cli

pytestmark = pytest.mark.profile_independent


def test_defaults_run_on_a_laptop(tmp_path: Path) -> None:
    s = load_settings({"MONOLITH_DATA_DIR": str(tmp_path)}, dotenv=None)
    assert s.env == "development"
    assert s.database.url == f"sqlite:///{tmp_path / 'monolith.db'}"
    assert s.store.url == f"disk://{tmp_path / 'cache'}"
    assert (s.server.host, s.server.port, s.server.workers) == ("127.0.0.1", 8000, 1)
    assert s.security.rate_limits["login"] == RateLimit(10, 60)
    # development generates a secret key once, into the data dir, and keeps it
    key = s.security.secret_key
    assert len(key) > 40
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert (
        load_settings({"MONOLITH_DATA_DIR": str(tmp_path)}, dotenv=None).security.secret_key == key
    )


def test_production_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MONOLITH_SECRET_KEY is required in production"):
        load_settings(
            {"MONOLITH_ENV": "production", "MONOLITH_DATA_DIR": str(tmp_path)}, dotenv=None
        )


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\nMONOLITH_PORT=9001\nexport MONOLITH_HOST='192.0.2.7'\nMONOLITH_WORKERS=3\n"
    )
    s = load_settings({"MONOLITH_WORKERS": "2", "MONOLITH_DATA_DIR": str(tmp_path)}, dotenv=dotenv)
    assert s.server.port == 9001
    assert s.server.host == "192.0.2.7"
    assert s.server.workers == 2


def test_workers_auto_is_the_cpu_count(tmp_path: Path) -> None:
    s = load_settings({"MONOLITH_WORKERS": "auto", "MONOLITH_DATA_DIR": str(tmp_path)}, dotenv=None)
    assert s.server.workers == (os.cpu_count() or 1)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("MONOLITH_PORT", "eighty", "MONOLITH_PORT: expected a whole number"),
        ("MONOLITH_WORKERS", "0", "workers: must be at least 1"),
        ("MONOLITH_ENV", "staging", "MONOLITH_ENV: expected one of"),
        ("MONOLITH_RUN_JOBS", "maybe", "MONOLITH_RUN_JOBS: expected one of"),
        ("MONOLITH_RATE_LIMITS", "login=ten/minute", "MONOLITH_RATE_LIMITS: cannot read"),
    ],
)
def test_bad_values_say_which_setting(tmp_path: Path, key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({key: value, "MONOLITH_DATA_DIR": str(tmp_path)}, dotenv=None)


def test_rate_limits_parse() -> None:
    assert parse_rate_limits("login=10/minute, api=1200/minute,x=5/10second,y=1/day") == {
        "login": RateLimit(10, 60),
        "api": RateLimit(1200, 60),
        "x": RateLimit(5, 10),
        "y": RateLimit(1, 86400),
    }


def test_a_command_with_bad_settings_prints_one_line_and_fails(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "MONOLITH_ENV": "production",
        "MONOLITH_DATA_DIR": str(tmp_path),
    }
    result = run_cli("migrate", env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, no traceback
    assert "MONOLITH_SECRET_KEY is required in production" in result.stderr


def test_the_store_url_has_its_name_and_the_older_name_still_works(tmp_path: Path) -> None:
    new = load_settings(
        {"MONOLITH_DATA_DIR": str(tmp_path), "MONOLITH_STORE_URL": "memory://"}, dotenv=None
    )
    old = load_settings(
        {"MONOLITH_DATA_DIR": str(tmp_path), "MONOLITH_CACHE_URL": "memory://"}, dotenv=None
    )
    assert new.store.url == old.store.url == "memory://"
    with pytest.raises(ConfigError, match="MONOLITH_STORE_URL and MONOLITH_CACHE_URL"):
        load_settings(
            {
                "MONOLITH_DATA_DIR": str(tmp_path),
                "MONOLITH_STORE_URL": "memory://",
                "MONOLITH_CACHE_URL": f"disk://{tmp_path}",
            },
            dotenv=None,
        )
