"""The ``monolith`` command line (also ``python -m monolith``).

Each command group lives in its own module exposing ``register(subparsers)``; a command's
handler takes the parsed arguments and returns the exit code. A failure prints one line to
stderr and exits non-zero; never a traceback for an expected problem.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from monolith import __version__
from monolith.cli import (
    accounts,
    backup,
    database,
    db,
    doctor,
    jobs,
    migrate_data,
    replication,
    server,
    worker,
)
from monolith.errors import MonolithError

#: Command groups, in the order ``--help`` lists them.
GROUPS = [
    server,
    worker,
    database,
    db,
    accounts,
    jobs,
    backup,
    replication,
    migrate_data,
    doctor,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monolith",
        description="A single-box web service on SQLite that scales out by changing URLs.",
    )
    parser.add_argument("--version", action="version", version=f"monolith {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except MonolithError as exc:
        print(f"monolith {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"monolith {args.command}: interrupted", file=sys.stderr)
        return 130
    return code
