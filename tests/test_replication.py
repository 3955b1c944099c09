"""Replication's parts without a server: the S3 URL, the settings, Litestream's configuration
(checked by the real binary), the lag, doctor and /metrics, and the standby's read-only app."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from monolith.config import STANDBY_FILE, Settings, load_settings
from monolith.doctor import replication_checks
from monolith.errors import ConfigError
from monolith.observability.sources import replication_families
from monolith.replication import Litestream, ReplicationError, open_litestream, open_replica
from monolith.replication.litestream import duration, parse_table, render_config
from monolith.replication.standby import Standby, StandbyStatus, write_standby
from monolith.replication.status import (
    STALE_SECONDS,
    LagTracker,
    ReplicationStatus,
    current_lag,
    positions,
    write_status,
)
from monolith.s3url import parse_s3_url
from tests.apphelpers import app_client
from tests.litestream import require_litestream
from tests.server import box_env, run_cli

pytestmark = pytest.mark.profile_independent


def box_settings(data_dir: Path, **env: str) -> Settings:
    """Settings on the one-box backends (replication is SQLite's) in every test profile."""
    return load_settings(box_env(data_dir, **env), dotenv=None)


S3 = "s3://shop-replica/prod/db?endpoint=http://127.0.0.1:9000/&region=eu-west-1"


def test_an_s3_url_names_bucket_prefix_endpoint_and_region() -> None:
    loc = parse_s3_url(S3, "X")
    assert (loc.bucket, loc.prefix, loc.endpoint, loc.region) == (
        "shop-replica",
        "prod/db",
        "http://127.0.0.1:9000",
        "eu-west-1",
    )
    assert loc.path_style and not loc.skip_verify
    aws = parse_s3_url("s3://shop-replica", "X")
    assert (aws.prefix, aws.endpoint, aws.region, aws.path_style) == ("", None, "us-east-1", False)
    assert parse_s3_url("s3://b-1.x/p?skip_verify=true&endpoint=https://h", "X").skip_verify


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("s3://A_B/p", "not a bucket name"),
        ("s3://key:secret@bucket/p", "credentials do not go in the URL"),
        ("s3://bucket/p?endpont=http://x", "unknown parameter 'endpont'"),
        ("s3://bucket/p?endpoint=ftp://x", "endpoint must be an http(s) URL"),
        ("s3://bucket/a//b", "empty or relative part"),
        ("s3://bucket/p?skip_verify=maybe", "skip_verify must be true or false"),
        ("gs://bucket/p", "expected s3://"),
    ],
)
def test_a_bad_s3_url_names_the_setting_and_the_problem(url: str, words: str) -> None:
    with pytest.raises(ConfigError, match="MONOLITH_MEDIA_URL") as caught:
        parse_s3_url(url, "MONOLITH_MEDIA_URL")
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MONOLITH_REPLICA_URL": "file://relative/path"}, "file:///absolute/path"),
        ({"MONOLITH_REPLICA_URL": "ftp://x/y"}, "expected file:///path or s3://"),
        ({"MONOLITH_REPLICA_URL": "s3://x"}, "not a bucket name"),
        ({"MONOLITH_REPLICA_SYNC_SECONDS": "0"}, "must be at least 0.1"),
        ({"MONOLITH_REPLICA_SYNC_SECONDS": "soon"}, "expected a number of seconds"),
        ({"MONOLITH_STANDBY_MAX_LAG_SECONDS": "nan"}, "must be at least 1"),
    ],
)
def test_replication_settings_refuse_bad_values(
    tmp_path: Path, env: dict[str, str], words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"MONOLITH_DATA_DIR": str(tmp_path), **env}, dotenv=None)
    assert words in str(caught.value)


def test_the_lag_bound_follows_the_sync_interval_and_a_standby_reads_its_mark(
    tmp_path: Path,
) -> None:
    base = {"MONOLITH_DATA_DIR": str(tmp_path)}
    settings = load_settings(base, dotenv=None)
    assert not settings.replication.configured and settings.replication.lag_bound == 3.0
    assert not settings.replication.standby and settings.store.cache_products
    fast = load_settings({**base, "MONOLITH_REPLICA_SYNC_SECONDS": "0.25"}, dotenv=None)
    assert fast.replication.lag_bound == 1.5
    (tmp_path / STANDBY_FILE).write_text("{}")
    standby = load_settings(base, dotenv=None)
    # The copy changes under the app with no write to invalidate its cache: reads go to it.
    assert standby.replication.standby and not standby.store.cache_products


def test_durations_are_go_durations() -> None:
    assert [duration(s) for s in (1, 0.25, 1.5, 86400, 3600 * 72)] == [
        "1s",
        "250ms",
        "1500ms",
        "24h",
        "72h",
    ]


@pytest.mark.parametrize("url", ["file:///srv/replica/shop", S3])
def test_litestream_reads_the_configuration_monolith_writes(tmp_path: Path, url: str) -> None:
    binary = require_litestream()
    settings = load_settings(
        {"MONOLITH_DATA_DIR": str(tmp_path), "MONOLITH_REPLICA_URL": url}, dotenv=None
    )
    replica = open_replica(url)
    assert replica is not None
    db = tmp_path / "monolith.db"
    text = render_config(db, replica, settings.replication, metrics_addr="127.0.0.1:9999")
    assert "secret" not in text.lower() and "AWS_" not in text
    config = tmp_path / "litestream.yml"
    config.write_text(text)
    done = subprocess.run(
        [binary, "databases", "-config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (row,) = parse_table(done.stdout)
    assert row == {"path": str(db), "replicas": replica.kind}


def test_open_litestream_refuses_what_it_cannot_replicate(tmp_path: Path) -> None:
    base = {"MONOLITH_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="MONOLITH_REPLICA_URL is not set"):
        open_litestream(load_settings(base, dotenv=None))
    replicated = {**base, "MONOLITH_REPLICA_URL": "file:///srv/r"}
    pg = {**replicated, "MONOLITH_DATABASE_URL": "postgresql://h/db"}
    with pytest.raises(ConfigError, match="for the SQLite database"):
        open_litestream(load_settings(pg, dotenv=None))
    missing = {**replicated, "MONOLITH_LITESTREAM": str(tmp_path / "nowhere")}
    with pytest.raises(ConfigError, match="cannot find the litestream binary"):
        open_litestream(load_settings(missing, dotenv=None))


def test_the_lag_is_the_age_of_the_oldest_change_the_replica_lacks() -> None:
    lag = LagTracker()
    assert lag.observe((0, 100), (0, 100), now=10.0) == 0.0
    assert lag.observe((0, 200), (0, 100), now=11.0) == 0.0  # first seen now
    assert lag.observe((0, 300), (0, 100), now=12.5) == 1.5  # 200 still missing since 11
    assert lag.observe((0, 400), (0, 200), now=13.0) == 0.5  # 300 missing since 12.5
    assert lag.observe((1, 0), (0, 400), now=14.0) == 0.0  # a new WAL index, seen now
    assert lag.observe((1, 50), (1, 50), now=15.0) == 0.0
    # A new generation starts again from position 0.
    assert lag.observe((0, 10), (0, 0), now=16.0) == 0.0
    assert lag.observe((0, 10), (0, 0), now=17.0) == 1.0


def test_positions_come_from_litestreams_own_metrics() -> None:
    db = Path("/var/lib/monolith/monolith.db")
    text = "\n".join(
        [
            "# HELP litestream_shadow_wal_index The current shadow WAL index",
            f'litestream_shadow_wal_index{{db="{db}"}} 2',
            f'litestream_shadow_wal_size{{db="{db}"}} 65952',
            f'litestream_replica_wal_index{{db="{db}",name="s3"}} 2',
            f'litestream_replica_wal_offset{{db="{db}",name="s3"}} 4.1232e+04',
            'litestream_shadow_wal_size{db="/other.db"} 1',
        ]
    )
    assert positions(text, db) == ((2, 65952), (2, 41232))
    assert positions("litestream_db_size 1", db) is None


def status(lag: float, age: float, now: float) -> ReplicationStatus:
    return ReplicationStatus(
        replica="s3://b/p",
        pid=1,
        updated_at=now - age,
        lag_seconds=lag,
        last_replicated_at=now - age - 1,
        last_snapshot_at=now - 3600,
        generation="g",
    )


def test_a_replicator_that_stopped_reporting_lags_more_every_second() -> None:
    now = 1000.0
    assert current_lag(status(0.5, 1, now), now) == 0.5
    stale = status(0.5, STALE_SECONDS + 20, now)
    assert current_lag(stale, now) == pytest.approx(0.5 + STALE_SECONDS + 20)


def findings(settings_env: dict[str, str], data_dir: Path) -> dict[str, tuple[str, str]]:
    settings = load_settings({"MONOLITH_DATA_DIR": str(data_dir), **settings_env}, dotenv=None)
    return {f.check: (f.level, f.message) for f in replication_checks(settings)}


def test_doctor_says_whether_the_database_is_replicated_and_how_far_behind(
    tmp_path: Path,
) -> None:
    binary = require_litestream()
    found = findings({}, tmp_path)
    assert found["replication"][0] == "ok" and found["replication"][1].startswith("off")
    prod = findings({"MONOLITH_ENV": "production", "MONOLITH_SECRET_KEY": "k" * 40}, tmp_path)
    assert prod["replication"][0] == "warn"
    on = {"MONOLITH_REPLICA_URL": S3, "MONOLITH_LITESTREAM": binary}
    level, message = findings(on, tmp_path)["replication"]
    assert level == "problem" and "monolith replicate has not run here" in message
    now = time.time()
    write_status(tmp_path, status(0.2, 1, now))
    level, message = findings(on, tmp_path)["replication"]
    assert level == "ok" and "lag 0.2s (bound 3s)" in message
    assert "last snapshot 3600s ago" in message
    write_status(tmp_path, status(0.2, 60, now))
    level, message = findings(on, tmp_path)["replication"]
    assert level == "problem" and "monolith replicate is not running" in message
    local = findings({**on, "MONOLITH_REPLICA_URL": f"file://{tmp_path / 'r'}"}, tmp_path)
    assert local["replica location"][0] == "warn"
    pg = findings({**on, "MONOLITH_DATABASE_URL": "postgresql://h/db"}, tmp_path)
    assert pg["replication"][0] == "problem" and "SQLite only" in pg["replication"][1]


async def test_metrics_report_configuration_lag_and_last_snapshot(tmp_path: Path) -> None:
    now = time.time()
    write_status(tmp_path, status(1.25, 1, now))
    settings = box_settings(tmp_path, MONOLITH_REPLICA_URL=S3)
    families = {f.name: f.samples for f in await replication_families(settings)}
    assert families["monolith_replication_configured"][0].value == 1
    assert families["monolith_replication_running"][0].value == 1
    assert families["monolith_replication_lag_seconds"][0].value == 1.25
    assert families["monolith_replication_last_snapshot_timestamp_seconds"][0].value == now - 3600
    off = box_settings(tmp_path / "off")
    families = {f.name: f.samples for f in await replication_families(off)}
    assert families["monolith_replication_configured"][0].value == 0
    assert families["monolith_replication_lag_seconds"] == []


def standby_dir(tmp_path: Path, restored_ago: float | None) -> Path:
    """A data dir holding a migrated database and a standby's mark."""
    data_dir = tmp_path / "var"
    done = run_cli("migrate", env=box_env(data_dir))
    assert done.returncode == 0, done.stderr
    restored = None if restored_ago is None else time.time() - restored_ago
    write_standby(data_dir, StandbyStatus(replica="s3://b/p", updated_at=0, restored_at=restored))
    return data_dir


async def test_a_standby_serves_reads_refuses_writes_and_says_how_far_behind(
    tmp_path: Path,
) -> None:
    data_dir = standby_dir(tmp_path, restored_ago=2.0)
    settings = box_settings(data_dir, MONOLITH_STANDBY_MAX_LAG_SECONDS="10")
    async with app_client(settings) as client:
        assert (await client.get("/api/products")).status_code == 200
        for method, path in (("POST", "/api/auth/signup"), ("DELETE", "/api/products/1")):
            r = await client.request(method, path, json={})
            assert r.status_code == 503 and "standby mode" in r.json()["detail"]
            assert r.headers["retry-after"] == "30"
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert 2 <= ready.json()["standby"]["behind_seconds"] < 10
        assert ready.json()["checks"]["standby"] == "ok"


@pytest.mark.parametrize("restored_ago", [60.0, None], ids=["too-old", "no-copy-yet"])
async def test_a_standby_past_its_bound_is_not_ready(
    tmp_path: Path, restored_ago: float | None
) -> None:
    data_dir = standby_dir(tmp_path, restored_ago=restored_ago)
    settings = box_settings(data_dir, MONOLITH_STANDBY_MAX_LAG_SECONDS="10")
    async with app_client(settings) as client:
        ready = await client.get("/health/ready")
    assert ready.status_code == 503
    assert "standby" in ready.json()["detail"]
    expected = None if restored_ago is None else pytest.approx(restored_ago, abs=5)
    assert ready.json()["standby"]["behind_seconds"] == expected


@pytest.mark.parametrize("command", ["worker", "replicate"])
def test_a_standby_runs_no_jobs_and_replicates_nothing(tmp_path: Path, command: str) -> None:
    data_dir = standby_dir(tmp_path, restored_ago=1.0)
    env = box_env(data_dir, MONOLITH_REPLICA_URL=f"file://{tmp_path / 'r'}")
    done = run_cli(command, env=env, timeout=30)
    assert done.returncode == 1
    assert "is a standby's data dir" in done.stderr


def test_a_standby_never_takes_over_a_data_dir_holding_a_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    assert run_cli("migrate", env=box_env(data_dir)).returncode == 0
    settings = load_settings(
        {"MONOLITH_DATA_DIR": str(data_dir), "MONOLITH_REPLICA_URL": f"file://{tmp_path}/r"},
        dotenv=None,
    )
    replica = open_replica(settings.replication.url)
    assert replica is not None
    litestream = Litestream("litestream", data_dir / "monolith.db", replica, settings.replication)
    with pytest.raises(ReplicationError, match=r"\(is this box the primary\?\)"):
        Standby(litestream, data_dir).claim()
    assert not (data_dir / STANDBY_FILE).exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--timestamp", "2026-01-01T00:00:00Z", "x.db"), "--timestamp goes with --from-replica"),
        (("--from-replica", "x.db"), "not both"),
        ((), "which backup?"),
        (("--from-replica",), "MONOLITH_REPLICA_URL is not set"),
    ],
)
def test_restore_says_what_is_wrong_with_its_arguments(
    tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    done = run_cli("restore", *args, env=box_env(tmp_path / "var"))
    assert done.returncode == 1 and words in done.stderr
    assert not (tmp_path / "var" / "monolith.db").exists()


def test_restore_refuses_a_time_it_cannot_read(tmp_path: Path) -> None:
    done = run_cli(
        "restore", "--from-replica", "--timestamp", "yesterday", env=box_env(tmp_path / "var")
    )
    assert done.returncode == 2 and "not a time" in done.stderr


def test_restore_from_an_empty_replica_says_so(tmp_path: Path) -> None:
    env = box_env(
        tmp_path / "var",
        MONOLITH_REPLICA_URL=f"file://{tmp_path / 'empty'}",
        MONOLITH_LITESTREAM=require_litestream(),
    )
    done = run_cli("restore", "--from-replica", env=env)
    assert done.returncode == 1 and "holds no backup" in done.stderr, done.stderr
    assert not (tmp_path / "var" / "monolith.db").exists()
