"""``monolith cache clear [--namespace N]``: empty the shared cache, or one namespace of it."""

from __future__ import annotations

import argparse

from monolith import fingerprint
from monolith.cli.common import fail, run, settings_from_env
from monolith.db import open_database
from monolith.errors import MonolithError
from monolith.services import KEPT_NAMESPACES
from monolith.store import open_store
from monolith.store.base import check_segment


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("cache", help="the shared cache (MONOLITH_STORE_URL)")
    cache = p.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    clear = cache.add_parser(
        "clear",
        help="empty the shared cache",
        description="Delete every cached entry (the 'cache' namespace of MONOLITH_STORE_URL) "
        "and record the configured database as the one the store caches for. With "
        "--namespace, delete that namespace of the store instead (e.g. 'sessions' signs "
        "everybody out, 'ratelimit' resets the limits).",
    )
    clear.add_argument(
        "--namespace", default="cache", metavar="N", help="the namespace to empty (default cache)"
    )
    clear.set_defaults(func=cmd_clear)


def cmd_clear(args: argparse.Namespace) -> int:
    settings = settings_from_env()
    try:
        check_segment(args.namespace)
    except ValueError as exc:
        return fail("cache clear", f"--namespace: {exc}")

    async def clear() -> str:
        store = open_store(settings.store.url, size_limit_mb=settings.store.size_limit_mb)
        db = open_database(settings.database.url)
        await store.start()
        try:
            name = args.namespace
            space = store.kept(name) if name in KEPT_NAMESPACES else store.with_namespace(name)
            await space.delete_all()
            await fingerprint.reset(store, db)
            return store.describe()
        finally:
            await store.stop()

    try:
        where = run(clear())
    except MonolithError as exc:
        return fail("cache clear", str(exc))
    print(f"cleared namespace {args.namespace!r} of {where}")
    return 0
