"""`monolith doctor`: it says where each piece of state lives and fails when that cannot hold."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.datastructures import State

from monolith.app import create_app
from monolith.channels import open_channels
from monolith.config import load_settings
from monolith.database.postgres import PostgresDatabase
from monolith.database.sqlite import SQLiteDatabase
from monolith.doctor import CATALOGUE, app_state_check, judge, state_items
from monolith.jobqueue import open_queue
from monolith.media import open_media
from monolith.services import build_services
from monolith.state import HoldsState, filesystem_scope
from tests.server import box_env, run_cli
from tests.services import free_port

# Doctor is judged here on backends each test names (the one-box defaults unless it says
# otherwise); the two-instance test runs it on PostgreSQL and Redis.
pytestmark = pytest.mark.profile_independent


def doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    """Run ``monolith doctor --json``; the exit code, the report, and stdout+stderr."""
    done = run_cli("doctor", "--json", *args, env=env)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    return done.returncode, json.loads(done.stdout), output


def item(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in report["state"] if i["name"] == name)


def check(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["check"] == name)


def dev_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A development box as `make run` sets it up: the secret key generated into the data dir."""
    env = box_env(data_dir, MONOLITH_ENV="development", **extra)
    del env["MONOLITH_SECRET_KEY"]
    return env


def test_one_box_is_fine_and_hears_what_a_second_instance_would_break(data_dir: Path) -> None:
    env = dev_env(data_dir)
    code, report, _ = doctor(env)
    assert code == 0 and report["ok"] is True
    database = item(report, "database")
    assert database["scope"] == "box" and database["level"] == "ok"
    assert database["backend"].startswith(f"sqlite:///{data_dir}/monolith.db")
    assert "each instance writes its own database" in database["breaks"]
    key = item(report, "session key")
    assert key["scope"] == "box" and "generated into" in key["backend"]
    # doctor reads: no database yet is said, and not made.
    assert check(report, "database")["level"] == "warn"
    assert "no database at" in check(report, "database")["message"]
    assert check(report, "migrations")["level"] == "warn"  # nothing applied yet
    assert not (data_dir / "monolith.db").exists()

    assert run_cli("migrate", env=env).returncode == 0
    done = run_cli("doctor", env=env)
    assert done.returncode == 0
    assert "with a second instance: each instance writes its own database" in done.stdout
    assert "migrations: up to date" in done.stdout and done.stdout.rstrip().endswith("no problems")


def test_metrics_are_per_box_and_fine_with_several_instances(data_dir: Path) -> None:
    # Each box keeps its own numbers in files all its processes add to; each box is scraped.
    _, report, _ = doctor(dev_env(data_dir, MONOLITH_INSTANCES="2"))
    metrics = item(report, "metrics")
    assert (metrics["scope"], metrics["level"]) == ("box", "ok")
    assert metrics["backend"].startswith(f"Prometheus multi-process files in {data_dir}/metrics")
    assert f"plus {data_dir}/metrics-worker" in metrics["backend"]


def test_several_instances_with_per_box_state_fail_naming_the_fix(data_dir: Path) -> None:
    code, report, _ = doctor(dev_env(data_dir, MONOLITH_INSTANCES="2"))
    assert code == 1 and report["ok"] is False and report["instances"] == 2
    problems = {i["name"] for i in report["state"] if i["level"] == "problem"}
    assert problems == {
        "database",
        "cache",
        "rate limits",
        "sessions",
        "session key",
        "jobs",
        "schedules",
        "pub/sub",
        "uploads",
    }
    assert item(report, "database")["fix"].startswith("MONOLITH_DATABASE_URL=postgresql://")
    assert item(report, "cache")["fix"].startswith("MONOLITH_STORE_URL=redis://")

    done = run_cli("doctor", env=dev_env(data_dir, MONOLITH_INSTANCES="2"))
    assert done.returncode == 1
    assert "PROBLEM database" in done.stdout and "fix: MONOLITH_DATABASE_URL=" in done.stdout
    assert "9 problem(s)" in done.stdout


@pytest.mark.postgres
def test_postgresql_shares_data_jobs_schedules_and_pub_sub_but_not_uploads(
    data_dir: Path, fresh_pg_url: str
) -> None:
    env = box_env(data_dir, MONOLITH_DATABASE_URL=fresh_pg_url, MONOLITH_INSTANCES="2")
    code, report, _ = doctor(env)
    for name in ("database", "session key", "jobs", "schedules", "pub/sub"):
        assert (item(report, name)["scope"], item(report, name)["level"]) == ("shared", "ok")
    assert item(report, "database")["breaks"] == ""
    assert item(report, "schedules")["backend"].startswith("an advisory lock in postgresql://")
    assert check(report, "database")["level"] == "ok"
    # Uploads sit in a local directory: doctor says why a second instance cannot read them.
    uploads = item(report, "uploads")
    assert (uploads["scope"], uploads["level"]) == ("box", "problem")
    assert "a 404 on the other" in uploads["breaks"]
    assert code == 1


@pytest.mark.redis
def test_pub_sub_on_redis_is_shared_and_checked(data_dir: Path, redis_url: str) -> None:
    code, report, _ = doctor(box_env(data_dir, MONOLITH_CHANNELS_URL=redis_url))
    assert code == 0
    assert item(report, "pub/sub")["scope"] == "shared"
    assert check(report, "pub/sub") == {
        "check": "pub/sub",
        "level": "ok",
        "message": f"{redis_url} answers",
    }

    down = f"redis://127.0.0.1:{free_port()}/0"
    code, report, _ = doctor(box_env(data_dir, MONOLITH_CHANNELS_URL=down))
    assert code == 1
    assert check(report, "pub/sub")["message"].startswith(f"cannot reach {down}: ")


def test_in_process_pub_sub_fails_with_several_workers(data_dir: Path) -> None:
    env = box_env(data_dir, MONOLITH_CHANNELS_URL="memory://", MONOLITH_WORKERS="2")
    code, report, _ = doctor(env)
    pubsub = item(report, "pub/sub")
    assert (pubsub["scope"], pubsub["level"]) == ("process", "problem")
    assert "between the worker processes of one box" in pubsub["breaks"]
    assert code == 1


def test_an_unreachable_postgresql_is_one_clear_line(data_dir: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    code, report, _ = doctor(box_env(data_dir, MONOLITH_DATABASE_URL=url))
    assert code == 1
    assert check(report, "database") == {
        "check": "database",
        "level": "problem",
        "message": f"cannot reach {url}: PostgreSQL is unavailable: ConnectionRefusedError",
    }
    assert "migrations" not in {c["check"] for c in report["checks"]}


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word (a hung server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def test_a_backend_that_hangs_is_reported_within_the_timeout(
    data_dir: Path, silent_port: int
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{silent_port}/hung"
    env = box_env(data_dir, MONOLITH_DATABASE_URL=url)
    code, report, _ = doctor(env, "--timeout", "0.5")
    assert code == 1
    assert check(report, "database")["message"] == f"{url} did not answer within 0.5s"


def test_production_without_a_secret_key_is_a_problem_not_a_traceback(data_dir: Path) -> None:
    env = box_env(data_dir, MONOLITH_ENV="production")
    del env["MONOLITH_SECRET_KEY"]
    code, report, _ = doctor(env)
    assert code == 1
    assert "MONOLITH_SECRET_KEY is required in production" in check(report, "settings")["message"]
    done = run_cli("doctor", env=env)
    assert done.returncode == 1 and "PROBLEM settings: MONOLITH_SECRET_KEY" in done.stdout


def test_production_refuses_short_secrets(data_dir: Path) -> None:
    env = box_env(
        data_dir, MONOLITH_ENV="production", MONOLITH_SECRET_KEY="short", MONOLITH_ADMIN_TOKEN="x"
    )
    code, report, _ = doctor(env)
    assert code == 1
    assert check(report, "secret key")["level"] == "problem"
    assert check(report, "admin token")["message"].startswith("MONOLITH_ADMIN_TOKEN has 1 char")


def test_a_missing_admin_token_warns_without_failing(data_dir: Path) -> None:
    env = box_env(data_dir)
    del env["MONOLITH_ADMIN_TOKEN"]
    code, report, _ = doctor(env)
    assert code == 0
    assert check(report, "admin token")["level"] == "warn"


@pytest.mark.parametrize(
    ("proxies", "code", "level", "words"),
    [
        ("127.0.0.1,10.0.0.0/8,unix", 0, "ok", "believed from 127.0.0.1, 10.0.0.0/8, unix"),
        ("0.0.0.0/0", 0, "warn", "trusts everyone"),
    ],
)
def test_trusted_proxies_are_checked(
    data_dir: Path, proxies: str, code: int, level: str, words: str
) -> None:
    got, report, _ = doctor(box_env(data_dir, MONOLITH_TRUSTED_PROXIES=proxies))
    assert got == code
    assert check(report, "trusted proxies")["level"] == level
    assert words in check(report, "trusted proxies")["message"]


def test_a_trusted_proxy_that_is_not_an_address_is_a_settings_problem(data_dir: Path) -> None:
    env = box_env(data_dir, MONOLITH_TRUSTED_PROXIES="127.0.0.1,caddy.local")
    code, report, _ = doctor(env)
    assert code == 1
    assert "'caddy.local'" in check(report, "settings")["message"]


def test_app_state_must_hold_nothing(data_dir: Path) -> None:
    settings = load_settings(box_env(data_dir), dotenv=None)
    assert app_state_check(dict(create_app(settings).state)).level == "ok"
    leaky = Litestar(route_handlers=[], state=State({"visits": 0, "cache": {}}))
    finding = app_state_check(dict(leaky.state))
    assert finding.level == "problem" and "cache, visits" in finding.message


@pytest.mark.parametrize(
    ("scope", "instances", "workers", "level"),
    [
        ("shared", 3, 8, "ok"),
        ("box", 1, 8, "ok"),
        ("box", 2, 1, "problem"),
        ("process", 1, 1, "ok"),
        ("process", 1, 2, "problem"),
        ("process", 2, 1, "problem"),
        ("galaxy", 1, 1, "problem"),
    ],
)
def test_scope_against_instances_and_workers(
    scope: str, instances: int, workers: int, level: str
) -> None:
    spec = CATALOGUE[0]
    assert judge(spec, scope, instances=instances, workers=workers) == level


def test_metrics_per_box_are_fine_with_several_instances() -> None:
    metrics = next(s for s in CATALOGUE if s.name == "metrics")
    assert judge(metrics, "box", instances=4, workers=2) == "ok"
    assert judge(metrics, "process", instances=1, workers=2) == "problem"


def test_components_report_their_own_scope(data_dir: Path) -> None:
    sqlite = SQLiteDatabase(data_dir / "x.db")
    postgres = PostgresDatabase("postgresql://u:secret@db.example:5432/app")
    holders = {
        "sqlite": (sqlite, "box"),
        "postgres": (postgres, "shared"),
        "channels on sqlite": (open_channels("", sqlite), "box"),
        "channels on postgres": (open_channels("", postgres), "shared"),
        "channels in memory": (open_channels("memory://", sqlite), "process"),
        "channels on redis": (open_channels("redis://u:secret@cache:6379/0", sqlite), "shared"),
        "media": (open_media(data_dir / "media"), "box"),
        "queue on sqlite": (open_queue(sqlite, data_dir), "box"),
        "queue on postgres": (open_queue(postgres, data_dir), "shared"),
        "election on sqlite": (open_queue(sqlite, data_dir).election(), "box"),
        "election on postgres": (open_queue(postgres, data_dir).election(), "shared"),
    }
    for name, (holder, scope) in holders.items():
        assert isinstance(holder, HoldsState), name
        assert holder.scope == scope, name
        assert "secret" not in holder.describe(), name

    settings = load_settings(box_env(data_dir, MONOLITH_INSTANCES="2"), dotenv=None)
    svc = build_services(settings)
    assert svc.state["database"] is svc.db
    # A piece of state the catalogue does not know yet is still judged by its scope.
    items = state_items(settings, {**svc.state, "search index": sqlite})
    extra = next(i for i in items if i.name == "search index")
    assert extra.scope == "box" and extra.level == "problem"


MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
fileserver:/export/media /srv/media nfs4 rw,relatime 0 0
/dev/sdb1 /srv/media/local ext4 rw 0 0
//nas/share /mnt/my\\040share cifs rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        ("/srv/media", "shared"),
        ("/srv/media/products/a.png", "shared"),
        ("/srv/media/local/a.png", "box"),  # the deeper mount decides
        ("/srv/mediakit", "box"),
        ("/mnt/my share/x", "shared"),
        ("/var/lib/monolith", "box"),
    ],
)
def test_a_directory_on_a_network_filesystem_is_shared(path: str, scope: str) -> None:
    assert filesystem_scope(Path(path), MOUNTS) == scope


def test_a_local_directory_is_per_box(tmp_path: Path) -> None:
    assert filesystem_scope(tmp_path) == "box"
