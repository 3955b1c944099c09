"""``monolith migrate-data --to postgresql://…``: move the SQLite data to PostgreSQL, verified."""

from __future__ import annotations

import argparse
import sys

from monolith.cli.common import Progress, add_json_flag, emit, fail, run, settings_from_env
from monolith.database.transfer import Outcome, TransferError, move
from monolith.db import sqlite_path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "migrate-data",
        help="copy every table from the SQLite database into PostgreSQL, then verify it",
        description="Migrate the PostgreSQL database, copy every table of the SQLite database "
        "into it in one transaction (ids kept, sequences moved past them), then compare each "
        "table's row count and checksum on both sides. Stop the app first: writes made after "
        "the copy starts are not moved. Refuses a target that already holds data unless "
        "--force. Exits 1 when verification finds a difference.",
    )
    p.add_argument("--to", required=True, metavar="URL", help="the target, postgresql://...")
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
        "--batch", type=int, default=1000, metavar="N", help="rows per batch (default 1000)"
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
    except TransferError as exc:
        return fail("migrate-data", str(exc))
    emit(args, to_json(outcome), lambda _: render(outcome))
    if not outcome.ok:
        differ = ", ".join(c.table for c in outcome.checks if not c.ok)
        print(f"monolith migrate-data: verification failed for {differ}", file=sys.stderr)
        return 1
    return 0


def to_json(outcome: Outcome) -> dict[str, object]:
    return {
        "ok": outcome.ok,
        "copied": outcome.copied,
        "source": outcome.source,
        "target": outcome.target,
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
    return "\n".join(lines)
