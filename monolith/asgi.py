"""The ASGI entry point granian loads in each worker: settings from the environment."""

from __future__ import annotations

from litestar import Litestar

from monolith.app import create_app
from monolith.config import load_settings
from monolith.logs import configure_logging


def app_factory() -> Litestar:
    settings = load_settings()
    configure_logging(settings.log)
    return create_app(settings, worker=True)
