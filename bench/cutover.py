"""The write downtime of the fenced cutover: 100,000 products and 200,000 orders (one line
each) in SQLite, moved with ``monolith migrate-data``; prints how long writes were refused.

    .venv/bin/python bench/cutover.py [--products N] [--orders N]

Needs the machine's PostgreSQL (a database of its own is created and dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PG = os.environ.get("MONOLITH_TEST_PG", "postgresql://postgres@127.0.0.1:5432")


def psql(sql: str) -> None:
    subprocess.run(["psql", f"{PG}/postgres", "-qc", sql], check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MONOLITH_DATA_DIR": tmp, "MONOLITH_ENV": "test"}
        cmd = [sys.executable, "-m", "monolith"]
        subprocess.run([*cmd, "migrate"], env=env, check=True, capture_output=True)
        db = sqlite3.connect(Path(tmp) / "monolith.db")
        now = time.time()
        with db:
            db.executemany(
                "INSERT INTO products (id, name, price_cents, stock, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    (i, f"Product {i}", 100 + i % 900, 1000, now, now)
                    for i in range(1, args.products + 1)
                ),
            )
            db.executemany(
                "INSERT INTO orders (id, user_id, status, total_cents, created_at, updated_at) "
                "VALUES (?, ?, 'confirmed', ?, ?, ?)",
                ((i, 1 + i % 500, 100, now, now) for i in range(1, args.orders + 1)),
            )
            db.executemany(
                "INSERT INTO order_items VALUES (?, ?, ?, 1, 100)",
                ((i, 1 + i % args.products, f"Product {i}") for i in range(1, args.orders + 1)),
            )
        db.close()
        name = f"monolith_cutover_{uuid.uuid4().hex[:8]}"
        psql(f'CREATE DATABASE "{name}"')
        try:
            started = time.monotonic()
            done = subprocess.run(
                [
                    *cmd,
                    "migrate-data",
                    "--to",
                    f"{PG}/{name}",
                    "--json",
                    "--batch",
                    str(args.batch),
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            total = time.monotonic() - started
            report = json.loads(done.stdout)
            rows = sum(t["source_rows"] for t in report["tables"])
            print(done.stderr.strip())
            print(
                f"{rows} rows: writes refused for {report['fenced_seconds']:.1f} s "
                f"(whole command {total:.1f} s, ok={report['ok']})"
            )
        finally:
            psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
