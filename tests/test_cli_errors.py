"""A bad argument or setting is one line on stderr and a non-zero exit, checked before
anything is written; read-only commands never create a data dir or a database."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.profile import DEFAULT_BACKENDS
from tests.server import base_env, monolith_cmd
from tests.services import pg_url, require_postgres, unique_name

pytestmark = [pytest.mark.slow, pytest.mark.profile_independent]


def files_under(path: Path) -> list[Path]:
    return sorted(path.rglob("*")) if path.exists() else []


def one_line_failure(args: list[str], env: dict[str, str], cwd: Path) -> str:
    run = subprocess.run(
        monolith_cmd(*args), env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert run.returncode != 0, run.stdout
    assert "Traceback" not in run.stderr + run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"monolith {args[0]}: ")
    return lines[0]


def test_a_port_out_of_range_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "var"
    env = base_env(data, **DEFAULT_BACKENDS)
    line = one_line_failure(["serve", "--port", "99999"], env, tmp_path)
    assert "99999" in line and "65535" in line
    assert not data.exists() and files_under(tmp_path) == []
    env["MONOLITH_PORT"] = "70000"
    assert "MONOLITH_PORT 70000" in one_line_failure(["serve"], env, tmp_path)
    assert not data.exists()


@pytest.mark.postgres
@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["migrate", "--status"]])
def test_a_postgresql_database_that_does_not_exist(tmp_path: Path, command: list[str]) -> None:
    require_postgres()
    missing = unique_name("monolith_missing")
    data = tmp_path / "var"
    data.mkdir()
    env = base_env(data, **(DEFAULT_BACKENDS | {"MONOLITH_DATABASE_URL": pg_url(missing)}))
    line = one_line_failure(command, env, tmp_path)
    assert missing in line and "does not exist" in line
    assert [p.name for p in files_under(data)] in ([], [".secret_key"])


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["seed-demo"]])
def test_a_data_dir_that_cannot_be_written(tmp_path: Path, command: list[str]) -> None:
    # /sys/kernel exists and refuses new files even to root.
    env = base_env(Path("/sys/kernel"), **DEFAULT_BACKENDS)
    line = one_line_failure(command, env, tmp_path)
    assert "MONOLITH_DATA_DIR=/sys/kernel" in line and "cannot write" in line
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("command", [["serve"], ["migrate"]])
def test_a_data_dir_whose_parent_is_missing(tmp_path: Path, command: list[str]) -> None:
    data = tmp_path / "no" / "such" / "dir"
    env = base_env(data, **DEFAULT_BACKENDS)
    line = one_line_failure(command, env, tmp_path)
    assert "does not exist" in line
    assert files_under(tmp_path) == []


def test_a_data_dir_that_is_a_file(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.write_text("not a folder")
    env = base_env(data, **DEFAULT_BACKENDS)
    assert "not a directory" in one_line_failure(["migrate"], env, tmp_path)


@pytest.mark.parametrize(
    "command",
    [
        ["migrate", "--status"],
        ["migrate", "--status", "--json"],
        ["jobs", "list"],
        ["jobs", "stats"],
        ["db", "top"],
    ],
)
def test_read_only_commands_create_nothing(tmp_path: Path, command: list[str]) -> None:
    data = tmp_path / "typo" / "dir"
    env = base_env(data, **DEFAULT_BACKENDS)
    line = one_line_failure(command, env, tmp_path)
    assert "no such directory" in line
    assert files_under(tmp_path) == []
    data.mkdir(parents=True)  # a data dir with no database in it: still nothing created
    line = one_line_failure(command, env, tmp_path)
    assert "no database there yet" in line
    assert files_under(data) == []


def test_doctor_reports_a_missing_data_dir_and_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "typo"
    env = base_env(data, **DEFAULT_BACKENDS)
    run = subprocess.run(
        monolith_cmd("doctor"), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    assert "no such directory" in run.stdout and "Traceback" not in run.stderr + run.stdout
    assert files_under(tmp_path) == []
