"""``monolith migrate-data --to postgresql://…``: move the SQLite data to PostgreSQL, verified."""

from __future__ import annotations

import argparse
import sys

from monolith.cli.common import Progress, add_json_flag, emit, fail, run, settings_from_env
from monolith.database import fence
from monolith.database.transfer import Outcome, TransferError, move
from monolith.db import sqlite_path
from monolith.errors import StateUnavailable


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migrate-data",
        help="copy every table from the SQLite database into PostgreSQL, then verify it",
        description="Migrate the PostgreSQL database, fence the SQLite database (from then on "
        "every write to it, from any process, is answered 503 with Retry-After; reads keep "
        "working), copy every table into PostgreSQL in one transaction (ids kept, sequences "
        "moved past them), then compare each table's row count and checksum on the fenced "
        "source and the target. The fence stays after a successful move (restart the app on "
        "PostgreSQL); a copy that fails lifts it again; --unfence lifts it by hand. Refuses a "
        "target that already holds data unless --force. Exits 1 when verification finds a "
        "difference.",
    )
    p.add_argument("--to", metavar="URL", help="the target, postgresql://...")
    p.add_argument(
        "--from",
        dest="source",
        metavar="URL",
        help="the source, sqlite:///path (default: MONOLITH_DATABASE_URL)",
    )
    p.add_argument("--force", action="store_true", help="replace what the target already holds")
    p.add_argument(
        "--verify-only", action="store_true", help="copy nothing; compare source and target"
    )
    p.add_argument(
        "--unfence",
        action="store_true",
        help="lift the source's write fence (a move that is abandoned); copies nothing",
    )
    p.add_argument(
        "--batch", type=int, default=10_000, metavar="N", help="rows per batch (default 10000)"
    )
    add_json_flag(p)
    p.set_defaults(func=cmd_migrate_data)


def cmd_migrate_data(args: argparse.Namespace) -> int:
    settings = settings_from_env()
    source_url = args.source or settings.database.url
    if not source_url.lower().startswith("sqlite:"):
        return fail(
            "migrate-data",
            f"the source must be a SQLite database, not {source_url.split('://')[0]}://...; "
            "pass --from sqlite:///path/to/monolith.db",
        )
    if args.batch < 1:
        return fail("migrate-data", "--batch must be at least 1")
    if args.unfence:
        return unfence(sqlite_path(source_url))
    if not args.to:
        return fail("migrate-data", "--to postgresql://... is required (or --unfence)")
    try:
        outcome = run(
            move(
                sqlite_path(source_url),
                args.to,
                force=args.force,
                verify_only=args.verify_only,
                batch=args.batch,
                progress=Progress,
            )
        )
    except (TransferError, StateUnavailable) as exc:
        return fail("migrate-data", str(exc))
    emit(args, to_json(outcome), lambda _: render(outcome))
    if not outcome.ok:
        differ = ", ".join(c.table for c in outcome.checks if not c.ok)
        print(f"monolith migrate-data: verification failed for {differ}", file=sys.stderr)
        if outcome.fenced:
            print(
                "monolith migrate-data: the SQLite database stays fenced (writes answer 503); "
                "copy again with --force, or give up with --unfence",
                file=sys.stderr,
            )
        return 1
    return 0


def unfence(path: str) -> int:
    try:
        had = run(fence.lift(path))
    except StateUnavailable as exc:
        return fail("migrate-data", str(exc))
    print(f"{path}: " + ("fence lifted; writes are open again" if had else "was not fenced"))
    return 0


def to_json(outcome: Outcome) -> dict[str, object]:
    return {
        "ok": outcome.ok,
        "copied": outcome.copied,
        "source": outcome.source,
        "target": outcome.target,
        "fenced": outcome.fenced,
        "fenced_seconds": round(outcome.fenced_seconds, 3),
        "tables": [
            {
                "table": c.table,
                "ok": c.ok,
                "source_rows": c.source.rows,
                "target_rows": c.target.rows,
                "source_checksum": c.source.digest,
                "target_checksum": c.target.digest,
            }
            for c in outcome.checks
        ],
    }


def render(outcome: Outcome) -> str:
    lines = []
    for c in outcome.checks:
        if c.ok:
            state = "ok"
        elif c.source.rows != c.target.rows:
            state = f"DIFFERS: {c.target.rows} rows in the target"
        else:
            state = "DIFFERS: same row count, different values"
        lines.append(f"  {c.table:<24}{c.source.rows:>10} rows  {state}")
    verb = "copied and verified" if outcome.copied else "verified"
    if outcome.ok:
        lines.append(
            f"{verb} {len(outcome.checks)} tables, {outcome.rows} rows: {outcome.source} -> "
            f"{outcome.target}; every row count and checksum matches"
        )
    if outcome.copied and outcome.fenced:
        lines.append(
            f"writes were refused for {outcome.fenced_seconds:.1f}s; the SQLite database stays "
            "fenced: set MONOLITH_DATABASE_URL to the target and restart the app "
            "(monolith migrate-data --unfence only to abandon the move)"
        )
    return "\n".join(lines)
