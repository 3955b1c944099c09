"""``monolith db top``: the statements with the most total time, the ``pg_stat_statements`` view.

On SQLite (and on PostgreSQL without ``pg_stat_statements`` loaded) the numbers are the
app's own, gathered by every process and added up in ``$DATA_DIR/stats.db``; a running worker
adds its latest numbers every ``flush`` interval (10 s) and when it stops.
"""

from __future__ import annotations

import argparse
import shutil
from typing import Any

from monolith.cli.common import add_json_flag, emit, fail, run, settings_from_env, started_db
from monolith.observability.statements import ORDERS, Order, Statement, pg_stat_statements
from monolith.observability.statsfile import StatsFile


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="database diagnostics (db top)")
    db_sub = db.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    p = db_sub.add_parser(
        "top",
        help="the statements with the most total time (pg_stat_statements view)",
        description="Normalized statements (literals out) with calls, total, mean and max "
        "time and rows, over every process. Reads pg_stat_statements on PostgreSQL where it "
        "is loaded, else the app's own statistics.",
    )
    p.add_argument("--limit", type=int, default=20, help="how many statements (default 20)")
    p.add_argument("--order", choices=ORDERS, default="total", help="sort by (default total)")
    p.add_argument(
        "--reset", action="store_true", help="forget the app's own statistics (not the server's)"
    )
    add_json_flag(p)
    p.set_defaults(func=cmd_top)


def cmd_top(args: argparse.Namespace) -> int:
    if args.limit < 1:
        return fail("db top", "--limit must be at least 1")
    settings = settings_from_env(read_only=not args.reset)
    stats = StatsFile(settings.stats_path)
    order: Order = args.order
    if args.reset:
        stats.reset_statements()

    async def go() -> tuple[str, list[Statement]]:
        async with started_db(settings, create=False) as db:
            rows = await pg_stat_statements(db, args.limit, order)
        if rows is not None:
            return "pg_stat_statements", rows
        return "monolith", stats.top(args.limit, order)

    source, rows = run(go())
    data = {"source": source, "order": order, "statements": [r.as_dict() for r in rows]}
    emit(args, data, _table)
    return 0


def _table(data: dict[str, Any]) -> str:
    rows = data["statements"]
    if not rows:
        return "db top: no statements recorded yet"
    width = max(60, shutil.get_terminal_size((140, 20)).columns)
    head = f"{'calls':>9} {'total ms':>11} {'mean ms':>9} {'max ms':>9} {'rows':>9}  query"
    lines = [f"source: {data['source']}, by {data['order']}", head]
    room = max(20, width - len(head) + len("query"))
    for r in rows:
        query = r["query"] if len(r["query"]) <= room else r["query"][: room - 1] + "…"
        lines.append(
            f"{r['calls']:>9} {r['total_ms']:>11.2f} {r['mean_ms']:>9.3f} "
            f"{r['max_ms']:>9.3f} {r['rows']:>9}  {query}"
        )
    return "\n".join(lines)
