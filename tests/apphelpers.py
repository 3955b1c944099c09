"""Building an in-process app for tests (Litestar's test client, real databases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar.testing import AsyncTestClient

from monolith.app import create_app
from monolith.config import Settings, load_settings
from monolith.db import Params, open_database
from tests.server import ADMIN_TOKEN, base_env

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def make_settings(data_dir: Path, **env: str) -> Settings:
    return load_settings(base_env(data_dir, **env), dotenv=None)


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        yield client


async def behind_its_back(settings: Settings, sql: str, params: Params = ()) -> None:
    """Run one statement on the app's database from outside the app (SQLite or PostgreSQL,
    whichever the settings name), as another program or an operator would."""
    db = open_database(settings.database.url)
    await db.start()
    try:
        async with db.transaction() as tx:
            await tx.execute(sql, params)
    finally:
        await db.stop()
