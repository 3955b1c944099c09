"""Fixtures shared by every suite: fresh databases per run, Redis key prefixes, data dirs;
and the test profile (``MONOLITH_TEST_PROFILE``, :mod:`tests.profile`): its line at the top of
a run, its servers checked before anything runs, and its databases owned by fixtures and tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from monolith.database.migrate import migrate
from monolith.db import Database, open_database
from monolith.services import Services, build_services
from tests import profile
from tests.apphelpers import make_settings
from tests.services import (
    REDIS_URL,
    pg_admin,
    pg_url,
    redis_delete_prefix,
    require_postgres,
    require_redis,
    unique_name,
)


def pytest_configure(config: pytest.Config) -> None:
    reason = profile.problem()
    if reason:
        raise pytest.UsageError(reason)


def pytest_report_header(config: pytest.Config) -> str:
    return f"monolith test profile: {profile.describe()}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The scale-out run leaves out the tests that would run exactly as in the default run."""
    if not profile.SCALEOUT:
        return
    same = [item for item in items if item.get_closest_marker("profile_independent")]
    if same:
        config.hook.pytest_deselected(items=same)
        items[:] = [item for item in items if not item.get_closest_marker("profile_independent")]


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
) -> Iterator[object]:
    # A database the profile creates while a fixture is set up lives as long as that fixture.
    with profile.owned_by(request):
        return (yield)


@pytest.fixture(autouse=True)
def _profile_apps(request: pytest.FixtureRequest) -> Iterator[None]:
    """Databases the profile creates in a test's body are dropped after the test."""
    with profile.owned_by(request):
        yield


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A brand-new PostgreSQL database for one test, dropped afterwards."""
    require_postgres()
    name = unique_name("monolith_t")
    pg_admin(f'CREATE DATABASE "{name}"')
    yield pg_url(name)
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> str:
    """The machine's Redis; tests namespace their keys with :func:`redis_prefix`."""
    require_redis()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = unique_name("monolith_test") + ":"
    yield prefix
    redis_delete_prefix(prefix)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "var"
    path.mkdir()
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each backend in turn: a fresh SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
    else:
        yield request.getfixturevalue("fresh_pg_url")


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    """A started, migrated database of each backend."""
    database = open_database(db_url)
    await database.start()
    await migrate(database)
    try:
        yield database
    finally:
        await database.stop()


@pytest.fixture
async def svc(db_url: str, data_dir: Path) -> AsyncIterator[Services]:
    """The app's services on each backend, started, with no job runner: a test runs a job
    itself through its registry entry."""
    services = build_services(make_settings(data_dir, MONOLITH_DATABASE_URL=db_url))
    await services.start()
    yield services
    await services.stop()


pytest_plugins = ["tests.stores"]
