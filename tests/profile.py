"""Test profiles: which backends an app built by a test runs on, picked by one switch.

``MONOLITH_TEST_PROFILE``:

- ``default`` (or unset): the app's own defaults, SQLite and the disk cache in the data dir,
  pub/sub through SQLite. Nothing outside the machine.
- ``scaleout``: every app whose test does not choose its backends runs on a fresh PostgreSQL
  database, the machine's Redis for the cache, rate limits and sessions (a namespace of its
  own) and Redis pub/sub (a channel prefix of its own). Both servers must be reachable, or
  the run stops at once naming the missing one.

The switch is read where tests build an app's settings or environment
(:func:`tests.server.base_env`, and :func:`tests.apphelpers.make_settings` through it); a
setting a test passes itself always wins. One data dir is one app: every process and command
started with the same data dir gets the same database and namespace, like the instances of one
deployment, and a test's second data dir is a second deployment.

Each database and namespace belongs to the fixture being set up when it was first asked for
(a module's servers), else to the test itself, and is dropped when that fixture or test is
torn down (:func:`owned_by`, wired in ``conftest.py``).

Tests that would run the same in every profile, because they pick their own backends or build
no app at all, are marked ``profile_independent``; the scale-out run leaves them out.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.services import (
    IN_CI,
    PG_ADMIN_URL,
    REDIS_URL,
    pg_admin,
    pg_url,
    reachable_postgres,
    reachable_redis,
    redis_delete_prefix,
    unique_name,
)

PROFILES = ("default", "scaleout")
PROFILE = os.environ.get("MONOLITH_TEST_PROFILE", "").strip().lower() or "default"
SCALEOUT = PROFILE == "scaleout"

#: What an app's environment gets from the profile; a test's own settings replace these.
BACKEND_SETTINGS = ("MONOLITH_DATABASE_URL", "MONOLITH_CACHE_URL", "MONOLITH_CHANNELS_URL")
#: For ``base_env(data_dir, **DEFAULT_BACKENDS)``: the app's defaults in every profile (an empty
#: setting means the default: SQLite and the disk cache in the data dir, pub/sub on SQLite).
DEFAULT_BACKENDS = dict.fromkeys(BACKEND_SETTINGS, "")


def describe() -> str:
    """One line for the top of a run: which profile, which backends."""
    if not SCALEOUT:
        return "default (SQLite and the disk cache in each app's data dir, pub/sub on SQLite)"
    pg = PG_ADMIN_URL.rsplit("/", 1)[0]
    return (
        f"scaleout (a fresh PostgreSQL database per app on {pg}, the cache, rate limits, "
        f"sessions and pub/sub on {REDIS_URL} under a namespace per app)"
    )


def problem(scaleout: bool = SCALEOUT) -> str | None:
    """Why the profile (or ``scaleout``) cannot run here, or None."""
    if PROFILE not in PROFILES:
        return f"MONOLITH_TEST_PROFILE={PROFILE!r}: expected one of {', '.join(PROFILES)}"
    if not scaleout:
        return None
    missing = [
        what
        for what, ok in (
            (f"PostgreSQL ({PG_ADMIN_URL})", reachable_postgres()),
            (f"Redis ({REDIS_URL})", reachable_redis()),
        )
        if not ok
    ]
    if missing:
        return f"the scale-out profile needs {' and '.join(missing)}"
    return None


# -- PostgreSQL databases and Redis namespaces, per app ----------------------------------------


@dataclass
class _App:
    """The shared backends of one app (one data dir)."""

    namespace: str
    database: str | None = None

    def cleanup(self) -> None:
        if self.database is not None:
            pg_admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        redis_delete_prefix(f"{self.namespace}:")


@dataclass(frozen=True)
class Owner:
    """Who a new app belongs to: a fixture being set up, or a test."""

    add_finalizer: Callable[[Callable[[], None]], None]
    #: The test or module; its ``profile_independent`` marker is checked.
    node: pytest.Item | pytest.Collector


@dataclass
class _Registry:
    apps: dict[Path, _App] = field(default_factory=dict)
    #: Where a new app's cleanup goes: the fixture being set up (innermost last), else the test.
    owners: list[Owner] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self, data_dir: Path, *, database: bool) -> _App:
        key = data_dir.absolute()
        with self.lock:
            app = self.apps.get(key)
            if app is None:
                app = self.apps[key] = _App(unique_name("monolith_t"))
                self._own(key, app)
            if database and app.database is None:
                pg_admin(f'CREATE DATABASE "{app.namespace}"')
                app.database = app.namespace
            return app

    def _own(self, key: Path, app: _App) -> None:
        def release() -> None:
            with self.lock:
                self.apps.pop(key, None)
            app.cleanup()

        if self.owners:
            self.owners[-1].add_finalizer(release)
        else:  # asked for outside any test (a helper run by hand): cleaned up at exit
            import atexit

            atexit.register(release)


_registry = _Registry()


def backend_env(data_dir: Path, given: dict[str, str]) -> dict[str, str]:
    """The profile's backend settings for the app in ``data_dir``, minus what ``given`` sets.

    A test marked ``profile_independent`` must set them all (the scale-out run leaves it out,
    so a backend it took from the profile would never be tested there): it fails otherwise,
    in every profile.
    """
    wanted = [name for name in BACKEND_SETTINGS if name not in given]
    if not wanted:
        return {}
    node = _registry.owners[-1].node if _registry.owners else None
    if node is not None and node.get_closest_marker("profile_independent"):
        pytest.fail(
            f"{node.nodeid} is marked profile_independent but takes {', '.join(wanted)} from "
            "the test profile: pass them (base_env(..., **DEFAULT_BACKENDS)) or drop the marker",
            pytrace=False,
        )
    if not SCALEOUT:
        return {}
    app = _registry.app(data_dir, database="MONOLITH_DATABASE_URL" in wanted)
    urls = {
        "MONOLITH_DATABASE_URL": pg_url(str(app.database)),
        "MONOLITH_CACHE_URL": f"{REDIS_URL}?namespace={app.namespace}:cache",
        "MONOLITH_CHANNELS_URL": f"{REDIS_URL}?namespace={app.namespace}:channels",
    }
    return {name: urls[name] for name in wanted}


@contextmanager
def owned_by(request: pytest.FixtureRequest) -> Iterator[None]:
    """Apps first asked for inside this block are cleaned up with ``request``'s fixture/test."""
    _registry.owners.append(Owner(request.addfinalizer, request.node))
    try:
        yield
    finally:
        _registry.owners.pop()


def main() -> int:
    """``python -m tests.profile``: exit 0 when the scale-out run should go ahead (its servers
    answer, or under CI=true, where a missing server is an error), else 1 and the reason."""
    reason = problem(scaleout=True)
    if reason is None:
        return 0
    if IN_CI:
        print(f"{reason}; CI=true, so the scale-out run goes ahead (and fails)", file=sys.stderr)
        return 0
    print(reason, file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
