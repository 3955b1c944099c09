"""Building an in-process app for tests (Litestar's test client, real databases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from litestar.testing import AsyncTestClient

from monolith.app import create_app
from monolith.config import Settings, load_settings
from tests.server import ADMIN_TOKEN, base_env

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def make_settings(data_dir: Path, **env: str) -> Settings:
    return load_settings(base_env(data_dir, **env), dotenv=None)


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        yield client
