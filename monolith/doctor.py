"""``monolith doctor``: where each piece of state lives, and whether the configuration holds.

The report has two parts:

- **State**: one line per piece of state (database, cache, rate limits, sessions, the session
  key, jobs, schedules, pub/sub, uploads, metrics) with the backend holding it and its scope,
  read from the component itself (see :mod:`monolith.state`), and what would break with a
  second instance. A piece that is per box is a problem once ``MONOLITH_INSTANCES`` says there
  are several instances; one that is per process is a problem as soon as there are several
  processes (workers or instances).
- **Checks**: the settings (secret key, admin token, trusted proxies), every backend answering
  (a clear line, never a traceback), migrations, and ``app.state`` holding nothing.

This module judges; it never repairs and never writes data. It knows what each piece of state
is for (the words an operator reads) but never which backend gives which scope: components say.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from monolith import fingerprint
from monolith.app import create_app
from monolith.channels import namespace as channels_namespace
from monolith.config import SECRET_KEY_FILE, Settings
from monolith.database.migrate import LEGACY_CHECKSUMS, available
from monolith.db import Database, sqlite_path
from monolith.errors import ConfigError
from monolith.replication import open_replica
from monolith.replication.litestream import find_litestream
from monolith.replication.standby import behind, read_standby
from monolith.replication.status import current_lag, read_status, running
from monolith.services import Services, build_services
from monolith.state import SCOPES, HoldsState

Level = Literal["ok", "warn", "problem"]

#: The fix for state that moves with the database URL.
_DATABASE_FIX = "MONOLITH_DATABASE_URL=postgresql://... (move the data with monolith migrate-data)"
_CACHE_FIX = "MONOLITH_STORE_URL=redis://..."


@dataclass(frozen=True, slots=True)
class StateSpec:
    """What one piece of state is, in an operator's words."""

    name: str
    #: What goes wrong when two instances do not share it.
    breaks: str
    #: The setting that makes it shared.
    fix: str
    #: Fine per box: each instance is meant to keep its own (metrics, scraped per instance).
    per_instance: bool = False


CATALOGUE: tuple[StateSpec, ...] = (
    StateSpec(
        "database",
        "each instance writes its own database: users, products and orders differ by instance",
        _DATABASE_FIX,
    ),
    StateSpec(
        "cache",
        "a write through one instance invalidates only its own cache; the other serves stale data",
        _CACHE_FIX,
    ),
    StateSpec(
        "rate limits",
        "each instance counts on its own: a limit of N becomes N per instance",
        _CACHE_FIX,
    ),
    StateSpec(
        "sessions",
        "a user signed in through one instance is signed out on the other",
        _CACHE_FIX,
    ),
    StateSpec(
        "session key",
        "a session cookie signed by one instance is rejected by the other",
        "the same MONOLITH_SECRET_KEY on every instance",
    ),
    StateSpec(
        "jobs",
        "jobs enqueued on one instance run only where its queue lives, and vanish with that box",
        _DATABASE_FIX,
    ),
    StateSpec(
        "schedules",
        "each instance elects its own leader: every recurring job fires once per instance",
        _DATABASE_FIX,
    ),
    StateSpec(
        "pub/sub",
        "an event published on one instance never reaches subscribers connected to the other",
        "MONOLITH_CHANNELS_URL=redis://..., or the database on PostgreSQL",
    ),
    StateSpec(
        "uploads",
        "a file uploaded through one instance is a 404 on the other",
        "MONOLITH_MEDIA_URL=s3://BUCKET/PREFIX?endpoint=... (a bucket every instance reads), "
        "or the media directory on a network filesystem that every instance mounts",
    ),
    StateSpec(
        "metrics",
        "each instance reports only its own counters",
        "scrape every instance; Prometheus adds them up",
        per_instance=True,
    ),
)


@dataclass(frozen=True, slots=True)
class StateItem:
    name: str
    #: The backend's description, or "" when this build has no such component.
    backend: str
    #: process, box, shared, or "absent".
    scope: str
    level: Level
    #: What breaks with a second instance ("" when shared).
    breaks: str
    fix: str


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    level: Level
    message: str


@dataclass(slots=True)
class Report:
    env: str = ""
    instances: int = 0
    workers: int = 0
    state: list[StateItem] = field(default_factory=list)
    checks: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> int:
        levels = [i.level for i in self.state] + [c.level for c in self.checks]
        return levels.count("problem")

    @property
    def warnings(self) -> int:
        levels = [i.level for i in self.state] + [c.level for c in self.checks]
        return levels.count("warn")

    @property
    def ok(self) -> bool:
        return self.problems == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "env": self.env,
            "instances": self.instances,
            "workers": self.workers,
            "state": [asdict(i) for i in self.state],
            "checks": [asdict(c) for c in self.checks],
        }


def judge(spec: StateSpec, scope: str, *, instances: int, workers: int) -> Level:
    """Whether state of this scope holds up with this many instances and workers each."""
    if scope == "shared":
        return "ok"
    if scope == "box":
        return "problem" if instances > 1 and not spec.per_instance else "ok"
    if scope == "process":
        return "problem" if workers > 1 or instances > 1 else "ok"
    return "problem"  # a component that does not say where its state lives


class SessionKey:
    """The key that signs sessions: per box when development generated it into the data dir."""

    def __init__(self, settings: Settings) -> None:
        self._path = settings.data_dir / SECRET_KEY_FILE
        self.scope = "box" if settings.security.secret_key_generated else "shared"

    def describe(self) -> str:
        if self.scope == "box":
            return f"generated into {self._path}"
        return "MONOLITH_SECRET_KEY (the same on every instance, as far as this box knows)"


def state_items(settings: Settings, holders: Mapping[str, HoldsState]) -> list[StateItem]:
    """The catalogue, each piece judged by the scope its component reports."""
    instances, workers = settings.server.instances, settings.server.workers
    known = {spec.name for spec in CATALOGUE}
    # Pieces registered after this catalogue was written are judged with generic words.
    specs = list(CATALOGUE) + [
        StateSpec(name, f"{name} is not shared between instances", "")
        for name in holders
        if name not in known
    ]
    items = []
    for spec in specs:
        holder = holders.get(spec.name)
        if holder is None:
            items.append(StateItem(spec.name, "", "absent", "ok", "", spec.fix))
            continue
        scope = str(holder.scope)
        level = judge(spec, scope, instances=instances, workers=workers)
        breaks = "" if scope == "shared" else spec.breaks
        if scope == "process":
            breaks += " (and between the worker processes of one box)"
        elif scope not in SCOPES:
            breaks = f"its component reports an unknown scope {scope!r}"
        items.append(StateItem(spec.name, holder.describe(), scope, level, breaks, spec.fix))
    return items


def _secret_check(check: str, setting: str, value: str, minimum: int, strict: bool) -> Finding:
    if strict and len(value) < minimum:
        return Finding(
            check,
            "problem",
            f"{setting} has {len(value)} characters; use at least {minimum} random ones",
        )
    return Finding(check, "ok", "set")


def settings_checks(settings: Settings) -> list[Finding]:
    """Secret key, admin token and trusted proxies, judged for the environment."""
    strict = settings.production
    key = settings.security.secret_key
    found = [_secret_check("secret key", "MONOLITH_SECRET_KEY", key, 32, strict)]
    token = settings.security.admin_token
    if token is None:
        found.append(
            Finding(
                "admin token",
                "warn",
                "MONOLITH_ADMIN_TOKEN is not set: /metrics answers only on loopback and the "
                "admin endpoints need a signed-in admin",
            )
        )
    else:
        found.append(_secret_check("admin token", "MONOLITH_ADMIN_TOKEN", token, 16, strict))
    found.append(_proxies_check(settings.server.trusted_proxies))
    return found


def _proxies_check(proxies: tuple[str, ...]) -> Finding:
    """Entries are valid (settings refuse others); trusting every address is the risk left."""
    everyone = [
        entry
        for entry in proxies
        if entry.lower() != "unix" and ipaddress.ip_network(entry, strict=False).prefixlen == 0
    ]
    if everyone:
        return Finding(
            "trusted proxies",
            "warn",
            f"MONOLITH_TRUSTED_PROXIES trusts everyone ({', '.join(everyone)}): any client can "
            "claim any address in X-Forwarded-For and step around per-IP rate limits",
        )
    listed = ", ".join(proxies) or "none"
    return Finding("trusted proxies", "ok", f"X-Forwarded-For believed from {listed}")


def _ago(moment: float | None, now: float) -> str:
    return "never" if moment is None else f"{now - moment:.0f}s ago"


def replication_checks(settings: Settings, *, now: float | None = None) -> list[Finding]:
    """Whether the database is replicated off the box (Litestream), how far behind, the last
    snapshot; and on a standby, how old its copy is."""
    now = time.time() if now is None else now
    rep = settings.replication
    sqlite = settings.database.url.lower().startswith("sqlite:")
    found: list[Finding] = []
    if rep.standby:
        copy = read_standby(settings.data_dir)
        late = behind(copy, now) if copy is not None else None
        if late is None:
            found.append(Finding("standby", "problem", "standby mode, but no copy restored yet"))
        else:
            level: Level = "ok" if late <= rep.standby_max_lag_seconds else "problem"
            found.append(
                Finding(
                    "standby",
                    level,
                    f"read-only standby; its copy is {late:.1f}s behind the replica (bound "
                    f"{rep.standby_max_lag_seconds:g}s); monolith promote makes it primary",
                )
            )
        return found
    if not rep.configured:
        if sqlite:
            found.append(
                Finding(
                    "replication",
                    "warn" if settings.production else "ok",
                    "off: the database lives only on this box (and its backups); set "
                    "MONOLITH_REPLICA_URL and run monolith replicate to copy it off the box",
                )
            )
        return found
    if not sqlite:
        return [
            Finding(
                "replication",
                "problem",
                "MONOLITH_REPLICA_URL is set, but Litestream replicates SQLite only; PostgreSQL "
                "replicates with its own tools",
            )
        ]
    try:
        replica = open_replica(rep.url)
        find_litestream(rep.litestream)
    except ConfigError as exc:
        return [Finding("replication", "problem", str(exc))]
    assert replica is not None
    if replica.scope == "box":
        found.append(
            Finding(
                "replica location",
                "warn",
                f"{replica.describe()} is on this box's own disks: losing the box loses it too",
            )
        )
    status = read_status(settings.data_dir)
    if status is None:
        found.append(
            Finding(
                "replication",
                "problem",
                f"to {replica.describe()}, but monolith replicate has not run here",
            )
        )
        return found
    lag = current_lag(status, now)
    detail = (
        f"to {replica.describe()}: lag {lag:.1f}s (bound {rep.lag_bound:g}s), last change "
        f"replicated {_ago(status.last_replicated_at, now)}, last snapshot "
        f"{_ago(status.last_snapshot_at, now)}"
    )
    if not running(status, now):
        found.append(
            Finding("replication", "problem", f"monolith replicate is not running; {detail}")
        )
    else:
        found.append(Finding("replication", "ok" if lag <= rep.lag_bound else "warn", detail))
    return found


def app_state_check(state: Mapping[str, Any]) -> Finding:
    """``app.state`` must hold nothing: each worker process would see its own copy."""
    if not state:
        return Finding("app.state", "ok", "holds nothing; handlers reach state through Services")
    return Finding(
        "app.state",
        "problem",
        f"app.state holds {', '.join(sorted(state))}: per process, so each worker sees its own",
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or exc.__class__.__name__


async def reach(
    holders: Mapping[str, HoldsState], patience: float
) -> tuple[list[Finding], list[Any]]:
    """Ping each distinct holder that can be pinged (started first if it starts): findings, and
    what to stop."""
    groups: dict[int, tuple[HoldsState, list[str]]] = {}
    for name, holder in holders.items():
        groups.setdefault(id(holder), (holder, []))[1].append(name)
    found: list[Finding] = []
    started: list[Any] = []
    for holder, names in groups.values():
        start, ping = getattr(holder, "start", None), getattr(holder, "ping", None)
        if not callable(ping):
            continue
        label = ", ".join(names)
        try:
            if callable(start):  # a client that connects on first use needs no start
                await asyncio.wait_for(start(), patience)
                started.append(holder)
            await asyncio.wait_for(ping(), patience)
        except TimeoutError:
            found.append(
                Finding(
                    label, "problem", f"{holder.describe()} did not answer within {patience:g}s"
                )
            )
        except Exception as exc:
            found.append(
                Finding(label, "problem", f"cannot reach {holder.describe()}: {_one_line(exc)}")
            )
        else:
            found.append(Finding(label, "ok", f"{holder.describe()} answers"))
    return found, started


async def migrations_check(db: Database) -> Finding:
    """Pending migrations are fine (serve applies them); unknown or changed ones are not."""
    known = {m.version: m for m in available()}
    try:
        rows = await db.fetch_all("SELECT version, checksum FROM schema_migrations")
    except Exception:  # no table yet: nothing applied
        rows = []
    applied = {int(r[0]): str(r[1]) for r in rows}
    unknown = sorted(set(applied) - set(known))
    if unknown:
        return Finding(
            "migrations",
            "problem",
            f"the database has migrations {unknown} this code does not know: an older monolith?",
        )
    changed = sorted(
        v
        for v, c in applied.items()
        if known[v].checksum != c and c not in LEGACY_CHECKSUMS.get(v, frozenset())
    )
    if changed:
        return Finding("migrations", "problem", f"migrations {changed} changed after they ran")
    pending = sorted(set(known) - set(applied))
    if pending:
        return Finding(
            "migrations",
            "warn",
            f"{len(pending)} pending (monolith migrate, or serve at start, applies them)",
        )
    return Finding("migrations", "ok", f"up to date ({len(known)} applied)")


async def fence_check(db: Database) -> Finding:
    """A database fenced by ``monolith migrate-data`` refuses every write."""
    why = await db.fenced()
    if why is None:
        return Finding("database fence", "ok", "writes are open")
    return Finding("database fence", "problem", f"fenced, every write answers 503: {why}")


#: Where a running ``monolith serve`` says how many workers it runs (``doctor`` reads it).
SERVE_FILE = "serve.json"


def running_workers(settings: Settings) -> tuple[int, str]:
    """The worker count of the ``serve`` running on this data dir, and where it was read."""
    try:
        info = json.loads((settings.data_dir / SERVE_FILE).read_text())
        pid, workers = int(info["pid"]), int(info["workers"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return settings.server.workers, "MONOLITH_WORKERS (no monolith serve running here)"
    return workers, f"monolith serve (pid {pid})"


def write_serve_file(settings: Settings, workers: int) -> None:
    """Called by ``monolith serve`` before it forks its workers."""
    with contextlib.suppress(OSError):
        path = settings.data_dir / SERVE_FILE
        path.write_text(json.dumps({"pid": os.getpid(), "workers": workers}))


async def store_check(svc: Services) -> Finding:
    """The shared store holds data of this database, not of another one."""
    other = await fingerprint.stored(svc.store)
    mine = fingerprint.of(svc.db)
    if other is None or other == mine:
        return Finding("store fingerprint", "ok", f"the store caches {svc.db.describe()}")
    return Finding(
        "store fingerprint",
        "problem",
        f"the store {svc.store.describe()} holds data cached for another database "
        f"({other.split(' ', 1)[-1]}), not {svc.db.describe()}: cached products and sessions "
        "would come from it; run monolith cache clear",
    )


def _missing_sqlite(url: str) -> Path | None:
    """The file of a SQLite URL when it does not exist, else None."""
    if not url.lower().startswith("sqlite:"):
        return None
    path = Path(sqlite_path(url)).expanduser().absolute()
    return None if path.exists() else path


#: Connections a process opens besides its pool: LISTEN and the job runner's election lock.
DIRECT_CONNECTIONS = 2


def pool_budget(settings: Settings, limit: int) -> Finding:
    """Every pool of every worker of every instance, against what the server admits."""
    instances, workers = settings.server.instances, settings.server.workers
    per_process = settings.database.pool_size + DIRECT_CONNECTIONS
    total = instances * workers * per_process
    sums = (
        f"{instances} instance(s) x {workers} worker(s) x (MONOLITH_DB_POOL_SIZE "
        f"{settings.database.pool_size} + {DIRECT_CONNECTIONS} direct) = up to {total} "
        f"connections; the server admits {limit} (max_connections less the superuser reserve)"
    )
    if total > limit:
        return Finding(
            "connections",
            "problem",
            f"{sums}: lower MONOLITH_DB_POOL_SIZE or the workers, raise max_connections, "
            "or put PgBouncer in front (MONOLITH_DB_DIRECT_URL)",
        )
    if total > 0.8 * limit:
        return Finding("connections", "warn", f"{sums}: little room for anything else")
    return Finding("connections", "ok", sums)


async def backend_checks(svc: Any, settings: Settings, started: list[Any]) -> list[Finding]:
    """What the backends say about themselves: the connection budget, session retention."""
    found: list[Finding] = []
    if svc.db in started:
        try:
            limit = await svc.db.connection_limit()
        except Exception as exc:
            found.append(Finding("connections", "warn", f"cannot read: {_one_line(exc)}"))
        else:
            if limit is not None:
                found.append(pool_budget(settings, limit))
    if svc.store in started:
        try:
            risks = await svc.store.retention_risks()
        except Exception as exc:
            risks = [f"cannot tell whether sessions are kept: {_one_line(exc)}"]
        found += [Finding("sessions kept", "warn", risk) for risk in risks]
    return found


async def examine(settings: Settings, *, patience: float = 5.0) -> Report:
    """The whole report for these settings (opens backends to ping them, then closes them)."""
    workers, source = running_workers(settings)
    settings = dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, workers=workers)
    )
    report = Report(settings.env, settings.server.instances, settings.server.workers)
    report.checks.append(Finding("workers", "ok", f"{workers} worker(s), from {source}"))
    try:
        svc = build_services(settings)
    except ConfigError as exc:
        report.checks.append(Finding("settings", "problem", str(exc)))
        return report
    holders: dict[str, HoldsState] = {**svc.state, "session key": SessionKey(settings)}
    report.state = state_items(settings, holders)
    report.checks += settings_checks(settings)
    report.checks += replication_checks(settings)
    report.checks.append(app_state_check(dict(create_app(settings, svc).state)))
    # doctor reads: a SQLite database that does not exist yet is reported, never created.
    missing = _missing_sqlite(settings.database.url)
    reachable = {n: h for n, h in svc.state.items() if missing is None or h is not svc.db}
    found, started = await reach(reachable, patience)
    report.checks += found
    if (channels := svc.state.get("pub/sub")) is not None:
        report.checks.append(Finding("pub/sub namespace", "ok", channels_namespace(channels)))
    if svc.store in started and all(f.level == "ok" for f in found if "cache" in f.check):
        try:
            report.checks.append(await store_check(svc))
        except Exception as exc:
            report.checks.append(Finding("store fingerprint", "warn", _one_line(exc)))
    if missing is not None:
        report.checks.append(
            Finding("database", "warn", f"no database at {missing} yet (monolith migrate makes it)")
        )
        report.checks.append(
            Finding("migrations", "warn", f"{len(available())} pending (no database yet)")
        )
    try:
        if svc.db in started and all(f.level == "ok" for f in found if "database" in f.check):
            report.checks.append(await migrations_check(svc.db))
            report.checks.append(await fence_check(svc.db))
        report.checks += await backend_checks(svc, settings, started)
    finally:
        for holder in reversed(started):
            try:
                await holder.stop()
            except Exception:  # noqa: S110 - closing after a diagnosis; the findings stand
                pass
    return report
