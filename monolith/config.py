"""Settings, read once from the environment (and a ``.env`` file) into typed objects.

Every default runs on a laptop with no external services: SQLite and the disk cache under
``./var``. Nothing here connects to anything; :func:`monolith.app.create_app` does that.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

from monolith.errors import ConfigError
from monolith.files import private_dir
from monolith.s3url import parse_s3_url

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Env = Literal["development", "production", "test"]

DEFAULT_RATE_LIMITS = "login=10/minute,signup=5/minute,orders=60/minute,api=1200/minute"
_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
#: Where development generates its secret key, under the data dir.
SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret
#: Present in the data dir of a warm standby (``monolith standby``): the app serves reads only.
STANDBY_FILE = "standby.json"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``count`` requests per ``period`` seconds."""

    count: int
    period: int


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    run_jobs: Literal["auto", "no"] = "auto"
    # Seconds granian waits for in-flight requests on stop; systemd's TimeoutStopSec is above it.
    graceful_timeout: int = 20
    # Addresses whose X-Forwarded-For is believed (Caddy on the same box by default).
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    # How many instances (boxes) serve this app; `doctor` fails when state is per box and this > 1.
    instances: int = 1


@dataclass(frozen=True, slots=True)
class JobSettings:
    # How many jobs one runner runs at once (jobs are coroutines; CPU work belongs elsewhere).
    concurrency: int = 100
    # A claimed job is the runner's for this long, renewed by heartbeats every third of it;
    # after a crash its jobs run again once it lapses.
    lease_seconds: int = 30
    # On SIGTERM, jobs in hand get this long to finish before they are handed back.
    grace_seconds: int = 10
    # A lost wake-up costs at most this (the runner also wakes for delayed jobs falling due).
    poll_seconds: float = 1.0
    # Modules imported at start for the jobs and schedules they register.
    modules: tuple[str, ...] = ()
    # Finished jobs (done, cancelled) are kept this long, then pruned (failed ones stay).
    keep_seconds: float = 86400.0
    # How often the prune schedule runs.
    prune_seconds: float = 300.0
    # A running job told to stop that has not returned after this long is stopped.
    cancel_grace_seconds: float = 5.0
    # The queues this process's runner takes jobs from (empty: every queue).
    queues: tuple[str, ...] = ()
    # Jobs of a queue running at once across every runner (a queue not named: no cap).
    queue_limits: Mapping[str, int] = field(default_factory=dict)
    # Which job-running processes run jobs: "every" one, or only the elected "leader" (more
    # runners measured faster on SQLite too, one writer notwithstanding: docs/BENCHMARKS.md).
    runners: Literal["every", "leader"] = "every"


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str = ""
    # SQLite only: NORMAL is durable across process crashes, FULL across power loss.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    busy_timeout_ms: int = 5000
    readers: int = 2
    pool_size: int = 10
    #: ``MONOLITH_WRITE_TIMEOUT``: seconds a write request may wait for the database's write
    #: lock, counted from its arrival; past it a 503 with Retry-After, and nothing committed.
    write_timeout: float = 5.0
    # PostgreSQL: server-side limits set on every pooled connection.
    statement_timeout_ms: int = 30_000
    idle_in_transaction_timeout_ms: int = 60_000
    # PostgreSQL behind PgBouncer (transaction mode): a direct URL for LISTEN and the election.
    direct_url: str = ""


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """The shared key/value store: the cache, rate limits and sessions live in it."""

    #: ``MONOLITH_STORE_URL`` (``MONOLITH_CACHE_URL`` is read as its older name).
    url: str = ""
    size_limit_mb: int = 512
    # Serve product and catalog reads from the cache (off: a database read per request, for
    # measuring the database path or ruling the cache out while debugging).
    cache_products: bool = True


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    secret_key: str = ""
    admin_token: str | None = None
    #: True when the key is development's, generated into the data dir (or to be, by the
    #: first command that writes), rather than given by MONOLITH_SECRET_KEY.
    secret_key_generated: bool = False
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    format: Literal["console", "json"] = "json"


@dataclass(frozen=True, slots=True)
class ObservabilitySettings:
    # A handler that keeps the event loop busy this long gets a warning naming its route.
    loop_block_ms: int = 100
    # A statement slower than this is logged (normalized, without its parameters).
    slow_statement_ms: int = 500
    # How often each process adds its statement statistics to the shared stats file.
    flush_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class ReplicationSettings:
    """Litestream's continuous copy of the SQLite database off the box (``MONOLITH_REPLICA_*``)."""

    # file:///path or s3://BUCKET/PATH?endpoint=URL&region=R; empty: no replication.
    url: str = ""
    # How often Litestream reads the WAL and uploads what is new (its monitor- and
    # sync-interval). A change reaches the replica within `lag_bound` of its commit.
    sync_seconds: float = 1.0
    # A full snapshot this often (restores replay the WAL since the newest one).
    snapshot_hours: int = 24
    # Snapshots and WAL older than this are deleted from the replica: the point-in-time window.
    retention_hours: int = 72
    # The Litestream binary: a path, or a name looked up on PATH.
    litestream: str = "litestream"
    # A standby whose copy is older than this is not ready (/health/ready answers 503).
    standby_max_lag_seconds: float = 30.0
    # True when the data dir holds a standby's copy (STANDBY_FILE): the app serves reads only.
    standby: bool = False

    @property
    def configured(self) -> bool:
        return bool(self.url)

    @property
    def lag_bound(self) -> float:
        """How long after its commit a change is in the replica, on a healthy box: Litestream
        reads the WAL within one interval, uploads within the next, plus a second to upload."""
        return 2 * self.sync_seconds + 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    env: Env = "development"
    data_dir: Path = Path("var")
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    log: LogSettings = field(default_factory=LogSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    replication: ReplicationSettings = field(default_factory=ReplicationSettings)
    # Where pub/sub lives; empty means "with the database".
    channels_url: str = ""
    # How long live events are kept for a client resuming with Last-Event-ID (seconds).
    events_keep: float = 600.0
    # Where uploads live: file://path (default: $DATA_DIR/media) or s3://bucket/prefix?...
    media_url: str = ""
    metrics_dir: Path | None = None
    # Other process trees' metric directories that /metrics adds in (monolith worker's).
    metrics_peers: tuple[Path, ...] = ()

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"

    @property
    def backup_dir(self) -> Path:
        return self.data_dir / "backups"

    @property
    def stats_path(self) -> Path:
        """The shared file of statement statistics and dashboard samples (all processes)."""
        return self.data_dir / "stats.db"

    @property
    def serve_metrics_dir(self) -> Path:
        """Where ``serve``'s workers keep their Prometheus files (wiped when serve starts)."""
        return self.metrics_dir or self.data_dir / "metrics"

    @property
    def worker_metrics_dir(self) -> Path:
        """Where ``monolith worker`` keeps its Prometheus files (must differ from serve's)."""
        return self.metrics_dir or self.data_dir / "metrics-worker"


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=value`` lines, ``#`` comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ")
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path}:{lineno}: expected KEY=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def parse_rate_limits(text: str) -> dict[str, RateLimit]:
    """``login=10/minute,api=1200/minute`` -> {name: RateLimit}."""
    limits: dict[str, RateLimit] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = re.fullmatch(r"([a-z_]+)\s*=\s*(\d+)\s*/\s*(\d*)\s*(second|minute|hour|day)s?", part)
        if not m:
            raise ConfigError(
                f"MONOLITH_RATE_LIMITS: cannot read {part!r}; expected like 'login=10/minute'"
            )
        name, count, mult, unit = m.groups()
        limits[name] = RateLimit(int(count), int(mult or 1) * _PERIODS[unit])
    return limits


def _int(
    env: Mapping[str, str], key: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}: expected a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{key} {value}: must be at most {maximum} (a port is 1-65535)")
    return value


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(env: Mapping[str, str], key: str, default: float, minimum: float = 0.0) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h`` or ``1d``."""
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    m = _DURATION.match(raw)
    if m is None:
        raise ConfigError(f"{key}: expected a duration such as 90s, 15m, 12h or 1d, got {raw!r}")
    value = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if value < minimum:
        raise ConfigError(f"{key}: must be at least {minimum:g}s, got {raw!r}")
    return value


def _names(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_queue_limits(text: str) -> dict[str, int]:
    """``"email=2,reports=1"``: at most that many jobs of the queue run at once, everywhere."""
    limits: dict[str, int] = {}
    for part in _names(text):
        name, sep, count = part.partition("=")
        if not sep or not name.strip() or not count.strip().isdigit() or int(count) < 1:
            raise ConfigError(
                f"MONOLITH_JOBS_QUEUE_LIMITS: expected QUEUE=N (N >= 1), comma separated, "
                f"got {part!r}"
            )
        limits[name.strip()] = int(count)
    return limits


def _seconds(env: Mapping[str, str], key: str, default: float, minimum: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key}: expected a number of seconds, got {raw!r}") from None
    if not value >= minimum:  # also refuses nan
        raise ConfigError(f"{key}: must be at least {minimum:g}, got {raw}")
    return value


def _choice(env: Mapping[str, str], key: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(key, "").strip().lower() or default
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    return value


@lru_cache(maxsize=16)
def trusted_networks(trusted: tuple[str, ...]) -> tuple[tuple[IPNetwork, ...], bool]:
    """The trusted entries as networks, and whether Unix-socket peers are trusted."""
    networks: list[IPNetwork] = []
    unix = False
    for entry in trusted:
        entry = entry.strip()
        if entry.lower() == "unix":
            unix = True
        elif entry:
            # ValueError on a bad entry is a configuration error, raised when settings are checked.
            networks.append(ipaddress.ip_network(entry, strict=False))
    return tuple(networks), unix


def check_trusted(trusted: Iterable[str]) -> None:
    """Raise ``ValueError`` naming an entry that is not an address, a network or ``unix``."""
    trusted_networks(tuple(trusted))


def _store_url(env: Mapping[str, str]) -> str:
    """``MONOLITH_STORE_URL``, or its older name ``MONOLITH_CACHE_URL`` (it always configured
    the whole store: cache, rate limits and sessions); both set to different URLs is an error."""
    url = env.get("MONOLITH_STORE_URL", "").strip()
    alias = env.get("MONOLITH_CACHE_URL", "").strip()
    if url and alias and url != alias:
        raise ConfigError(
            "MONOLITH_STORE_URL and MONOLITH_CACHE_URL (its older name) name different stores; "
            "set only MONOLITH_STORE_URL"
        )
    return url or alias


def _trusted_proxies(raw: str) -> tuple[str, ...]:
    entries = tuple(p.strip() for p in raw.split(",") if p.strip())
    try:
        check_trusted(entries)
    except ValueError as exc:
        raise ConfigError(
            f"MONOLITH_TRUSTED_PROXIES: {exc}; expected addresses, networks (10.0.0.0/8) or 'unix'"
        ) from None
    return entries


def parse_workers(raw: str) -> int:
    """``auto`` means one worker per CPU."""
    if raw.strip().lower() == "auto":
        return os.cpu_count() or 1
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"workers: expected a number or 'auto', got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"workers: must be at least 1, got {value}")
    return value


def _secret_key(env: Env, data_dir: Path, given: str, *, write: bool = True) -> str:
    if given:
        return given
    if env == "production":
        raise ConfigError(
            "MONOLITH_SECRET_KEY is required in production "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    # Development: a key generated once into the data dir, so sessions survive restarts.
    path = data_dir / SECRET_KEY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    if not write:  # a read-only command signs nothing: a key of its own, nothing written
        return secrets.token_urlsafe(48)
    private_dir(data_dir)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another worker wrote it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def replica_url(raw: str) -> str:
    """``MONOLITH_REPLICA_URL`` checked: ``file:///absolute/path``, ``s3://...`` or empty."""
    url = raw.strip()
    if not url:
        return ""
    if url.startswith("s3://"):
        parse_s3_url(url, "MONOLITH_REPLICA_URL")
        return url
    if url.startswith("file://"):
        path = url.removeprefix("file://")
        if not path.startswith("/") or path.rstrip("/") == "":
            raise ConfigError(f"MONOLITH_REPLICA_URL: expected file:///absolute/path, got {url!r}")
        return url
    raise ConfigError(
        f"MONOLITH_REPLICA_URL: expected file:///path or s3://BUCKET/PATH?endpoint=URL, got {url!r}"
    )


def _replication(env_map: Mapping[str, str], data_dir: Path) -> ReplicationSettings:
    return ReplicationSettings(
        url=replica_url(env_map.get("MONOLITH_REPLICA_URL", "")),
        sync_seconds=_seconds(env_map, "MONOLITH_REPLICA_SYNC_SECONDS", 1.0, minimum=0.1),
        snapshot_hours=_int(env_map, "MONOLITH_REPLICA_SNAPSHOT_HOURS", 24, minimum=1),
        retention_hours=_int(env_map, "MONOLITH_REPLICA_RETENTION_HOURS", 72, minimum=1),
        litestream=env_map.get("MONOLITH_LITESTREAM") or "litestream",
        standby_max_lag_seconds=_seconds(
            env_map, "MONOLITH_STANDBY_MAX_LAG_SECONDS", 30.0, minimum=1.0
        ),
        standby=(data_dir / STANDBY_FILE).exists(),
    )


def load_settings(
    environ: Mapping[str, str] | None = None,
    *,
    dotenv: Path | None = Path(".env"),
    write: bool = True,
) -> Settings:
    """Read ``MONOLITH_*`` settings; the process environment wins over ``.env``.

    With ``write=False`` (read-only commands) nothing is written: a development secret key
    that is not in the data dir yet is not created there."""
    env_map: dict[str, str] = {}
    if dotenv is not None:
        env_map.update(read_dotenv(dotenv))
    env_map.update(os.environ if environ is None else environ)

    app_env = _choice(env_map, "MONOLITH_ENV", "development", ("development", "production", "test"))
    data_dir = Path(env_map.get("MONOLITH_DATA_DIR") or "var").expanduser().absolute()
    db_url = env_map.get("MONOLITH_DATABASE_URL") or f"sqlite:///{data_dir / 'monolith.db'}"
    store_url = _store_url(env_map) or f"disk://{data_dir / 'cache'}"
    metrics_dir_raw = env_map.get("MONOLITH_METRICS_DIR") or env_map.get("PROMETHEUS_MULTIPROC_DIR")
    log_format_default = "console" if sys.stderr.isatty() else "json"
    proxies = env_map.get("MONOLITH_TRUSTED_PROXIES", "127.0.0.1,::1")

    server = ServerSettings(
        host=env_map.get("MONOLITH_HOST") or "127.0.0.1",
        port=_int(env_map, "MONOLITH_PORT", 8000, minimum=0, maximum=65535),
        workers=parse_workers(env_map.get("MONOLITH_WORKERS") or "1"),
        run_jobs="no"
        if _choice(env_map, "MONOLITH_RUN_JOBS", "auto", ("auto", "no")) == "no"
        else "auto",
        graceful_timeout=_int(env_map, "MONOLITH_GRACEFUL_TIMEOUT", 20, minimum=1),
        trusted_proxies=_trusted_proxies(proxies),
        instances=_int(env_map, "MONOLITH_INSTANCES", 1, minimum=1),
    )
    database = DatabaseSettings(
        url=db_url,
        sqlite_synchronous="FULL"
        if _choice(env_map, "MONOLITH_SQLITE_SYNCHRONOUS", "normal", ("normal", "full")) == "full"
        else "NORMAL",
        busy_timeout_ms=_int(env_map, "MONOLITH_DB_BUSY_TIMEOUT_MS", 5000, minimum=0),
        readers=_int(env_map, "MONOLITH_DB_READERS", 2, minimum=1),
        pool_size=_int(env_map, "MONOLITH_DB_POOL_SIZE", 10, minimum=1),
        write_timeout=_seconds(env_map, "MONOLITH_WRITE_TIMEOUT", 5.0, 0.1),
        statement_timeout_ms=_int(env_map, "MONOLITH_DB_STATEMENT_TIMEOUT_MS", 30_000),
        idle_in_transaction_timeout_ms=_int(
            env_map, "MONOLITH_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60_000
        ),
        direct_url=env_map.get("MONOLITH_DB_DIRECT_URL", "").strip(),
    )
    store = StoreSettings(
        url=store_url,
        size_limit_mb=_int(env_map, "MONOLITH_CACHE_SIZE_MB", 512, minimum=1),
        cache_products=_choice(env_map, "MONOLITH_CACHE_PRODUCTS", "on", ("on", "off")) == "on",
    )
    security = SecuritySettings(
        secret_key=_secret_key(
            app_env,  # type: ignore[arg-type]
            data_dir,
            env_map.get("MONOLITH_SECRET_KEY", ""),
            write=write,
        ),
        secret_key_generated=not env_map.get("MONOLITH_SECRET_KEY"),
        admin_token=env_map.get("MONOLITH_ADMIN_TOKEN") or None,
        # Named limits replace the defaults one by one; "api=0/minute" turns one off.
        rate_limits=parse_rate_limits(DEFAULT_RATE_LIMITS)
        | parse_rate_limits(env_map.get("MONOLITH_RATE_LIMITS", "")),
    )
    log = LogSettings(
        level=_choice(
            env_map, "MONOLITH_LOG_LEVEL", "info", ("debug", "info", "warning", "error", "critical")
        ),
        format="console"
        if _choice(env_map, "MONOLITH_LOG_FORMAT", log_format_default, ("console", "json"))
        == "console"
        else "json",
    )
    replication = _replication(env_map, data_dir)
    if replication.standby:
        # The standby's copy changes under the app, with no write here to invalidate the
        # cache: product reads go to the copy itself.
        store = replace(store, cache_products=False)
    jobs = JobSettings(
        concurrency=_int(env_map, "MONOLITH_JOBS_CONCURRENCY", 100, minimum=1),
        lease_seconds=_int(env_map, "MONOLITH_JOBS_LEASE_SECONDS", 30, minimum=1),
        grace_seconds=_int(env_map, "MONOLITH_JOBS_GRACE_SECONDS", 10, minimum=0),
        modules=_names(env_map.get("MONOLITH_JOBS_MODULES", "")),
        keep_seconds=_duration(env_map, "MONOLITH_JOBS_KEEP", 86400.0),
        prune_seconds=_duration(env_map, "MONOLITH_JOBS_PRUNE_EVERY", 300.0, minimum=0.1),
        cancel_grace_seconds=_duration(env_map, "MONOLITH_JOBS_CANCEL_GRACE", 5.0),
        queues=_names(env_map.get("MONOLITH_JOBS_QUEUES", "")),
        queue_limits=parse_queue_limits(env_map.get("MONOLITH_JOBS_QUEUE_LIMITS", "")),
        runners=_choice(  # type: ignore[arg-type]
            env_map, "MONOLITH_JOBS_RUNNERS", "every", ("every", "leader")
        ),
    )
    return Settings(
        env=app_env,  # type: ignore[arg-type]
        data_dir=data_dir,
        server=server,
        database=database,
        store=store,
        security=security,
        log=log,
        jobs=jobs,
        replication=replication,
        observability=ObservabilitySettings(
            loop_block_ms=_int(env_map, "MONOLITH_LOOP_BLOCK_MS", 100, minimum=1),
            slow_statement_ms=_int(env_map, "MONOLITH_SLOW_STATEMENT_MS", 500, minimum=1),
        ),
        channels_url=env_map.get("MONOLITH_CHANNELS_URL", ""),
        events_keep=_duration(env_map, "MONOLITH_EVENTS_KEEP", 600.0),
        media_url=env_map.get("MONOLITH_MEDIA_URL", "").strip(),
        metrics_dir=Path(metrics_dir_raw).absolute() if metrics_dir_raw else None,
        metrics_peers=tuple(
            Path(p.strip()).absolute()
            for p in (
                env_map.get("MONOLITH_METRICS_PEERS") or str(data_dir / "metrics-worker")
            ).split(",")
            if p.strip()
        ),
    )
