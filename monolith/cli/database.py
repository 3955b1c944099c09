"""``monolith migrate`` and ``monolith seed-demo``."""

from __future__ import annotations

import argparse
import time

from monolith.cli.common import add_json_flag, emit, run, settings_from_env, started_db
from monolith.database import migrate as migrations
from monolith.shop.catalog import model as catalog


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migrate",
        help="apply (or list with --status) database migrations",
        description="Apply every pending migration, or go up or down to one with --to. "
        "Migrations live in monolith/database/migrations (docs/GUIDE.md).",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--status", action="store_true", help="list migrations, applied or pending")
    mode.add_argument(
        "--to",
        metavar="REV",
        help="go up or down to this version (a number such as 3 or 0003, 'base' or 'head')",
    )
    add_json_flag(p)
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("seed-demo", help="load the demo catalog (about 100 products)")
    p.add_argument("--if-empty", action="store_true", help="only when there are no products yet")
    add_json_flag(p)
    p.set_defaults(func=cmd_seed_demo)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from_env(read_only=args.status)

    known = migrations.available()

    async def go() -> list[dict[str, object]]:
        async with started_db(settings, create=not args.status) as db:
            if args.status:
                return [
                    {
                        "version": s.version,
                        "name": s.name,
                        "state": "applied" if s.applied_at else "pending",
                        "applied_at": s.applied_at,
                        "checksum_ok": s.checksum_ok,
                    }
                    for s in await migrations.status(db)
                ]
            target = None if args.to is None else migrations.parse_target(args.to, known)
            return [
                {
                    "version": s.migration.version,
                    "name": s.migration.name,
                    "direction": s.direction,
                }
                for s in await migrations.migrate_to(db, target)
            ]

    rows = run(go())

    def human(data: list[dict[str, object]]) -> str:
        if not args.status:
            if not data:
                return "migrations: nothing to apply, the database is up to date"
            return "\n".join(
                f"{'applied' if r['direction'] == 'up' else 'reverted'} "
                f"{r['version']:04d}_{r['name']}"
                for r in data
            )
        lines = []
        for r in data:
            when = r["applied_at"]
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(when))) if when else ""  # type: ignore[arg-type]
            flag = "" if r["checksum_ok"] else "  CHANGED AFTER APPLY"
            lines.append(f"{r['version']:04d}_{r['name']:<30} {r['state']:<8} {stamp}{flag}")
        return "\n".join(lines)

    emit(args, rows, human)
    if args.status and any(not r["checksum_ok"] for r in rows):
        return 1
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    settings = settings_from_env()

    async def go() -> int:
        async with started_db(settings) as db:
            await migrations.migrate(db)
            return await catalog.seed_demo(db, only_if_empty=args.if_empty)

    added = run(go())
    emit(
        args,
        {"added": added},
        lambda d: (
            f"seed-demo: added {d['added']} products"
            if d["added"]
            else "seed-demo: the catalog already has products, nothing added"
        ),
    )
    return 0
