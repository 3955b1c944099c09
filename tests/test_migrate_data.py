"""`monolith migrate-data`: a SQLite database moves to PostgreSQL whole, and the check proves it."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.apphelpers import ADMIN, app_client, make_settings
from tests.server import base_env, run_cli
from tests.services import free_port

EXTRA_PRODUCTS = 3000


def _add_products(db_path: Path, count: int) -> None:
    """Rows that stress the copy: unicode, quotes, empty and NULL fields, float times."""
    conn = sqlite3.connect(db_path)
    with conn:
        now = time.time()
        conn.executemany(
            "INSERT INTO products (name, description, price_cents, stock, image_key, "
            "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    f"Prodüct {i} «quoted» 'single' \"double\"",
                    "" if i % 7 else "line one\nline two\ttab",
                    i * 37 % 1_000_000,
                    i % 500,
                    None if i % 3 else f"{i:020d}abcdef.png",
                    now + i / 7,
                    now + i / 3,
                )
                for i in range(count)
            ],
        )
    conn.close()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A data dir made the way `make run` makes one (migrate, seed-demo), plus many rows."""
    data_dir = tmp_path_factory.mktemp("source") / "var"
    env = base_env(data_dir)
    for command in (("migrate",), ("seed-demo",)):
        done = run_cli(*command, env=env)
        assert done.returncode == 0, done.stderr
    _add_products(data_dir / "monolith.db", EXTRA_PRODUCTS)
    return env


def _pg(url: str, sql: str, *args: object) -> object:
    async def go() -> object:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def _migrate_data(env: dict[str, str], *args: str) -> tuple[int, dict[str, object], str]:
    done = run_cli("migrate-data", "--json", *args, env=env, timeout=120)
    data = json.loads(done.stdout) if done.stdout.strip() else {}
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, data, done.stderr


def _table(report: dict[str, object], name: str) -> dict[str, object]:
    tables: list[dict[str, object]] = report["tables"]  # type: ignore[assignment]
    return next(t for t in tables if t["table"] == name)


async def _all_pages(client: AsyncTestClient) -> list[bytes]:
    pages, cursor = [], ""
    while True:
        r = await client.get(f"/api/products?limit=100{cursor}")
        assert r.status_code == 200, r.text
        pages.append(r.content)
        next_cursor = r.json()["next_cursor"]
        if not next_cursor:
            return pages
        cursor = f"&cursor={next_cursor}"


@pytest.mark.postgres
@pytest.mark.slow
async def test_the_copy_verifies_and_the_app_serves_the_same_data(
    source: dict[str, str], fresh_pg_url: str, tmp_path: Path
) -> None:
    code, report, stderr = await asyncio.to_thread(
        _migrate_data, source, "--to", fresh_pg_url, "--batch", "500"
    )
    assert code == 0, stderr
    assert report["ok"] is True and report["copied"] is True
    products = _table(report, "products")
    assert products["source_rows"] == products["target_rows"] == 100 + EXTRA_PRODUCTS
    assert products["source_checksum"] == products["target_checksum"]
    assert re.search(r"copying: (\d+)/\1 done", stderr), stderr  # the progress bar's last line

    # No job runner: the source stays as it was for the other tests of this module.
    sqlite_app = make_settings(Path(source["MONOLITH_DATA_DIR"]), MONOLITH_RUN_JOBS="no")
    pg_app = make_settings(tmp_path / "pg", MONOLITH_DATABASE_URL=fresh_pg_url)
    async with app_client(sqlite_app) as on_sqlite, app_client(pg_app) as on_postgres:
        assert await _all_pages(on_postgres) == await _all_pages(on_sqlite)
        # Ids were kept and the identity sequence moved past them: a new product gets a new id.
        r = await on_postgres.post(
            "/api/products", json={"name": "After the move", "price_cents": 100}, headers=ADMIN
        )
        assert r.status_code == 201, r.text
        assert r.json()["id"] == 100 + EXTRA_PRODUCTS + 1


@pytest.fixture
def copied(source: dict[str, str], fresh_pg_url: str) -> str:
    """A fresh PostgreSQL database the source was copied into; its URL."""
    code, _, stderr = _migrate_data(source, "--to", fresh_pg_url)
    assert code == 0, stderr
    return fresh_pg_url


@pytest.mark.postgres
@pytest.mark.slow
def test_verification_catches_a_changed_or_missing_row(source: dict[str, str], copied: str) -> None:
    code, report, _ = _migrate_data(source, "--to", copied, "--verify-only")
    assert code == 0 and report["copied"] is False and report["ok"] is True

    _pg(copied, "UPDATE products SET price_cents = price_cents + 1 WHERE id = 1234")
    code, report, stderr = _migrate_data(source, "--to", copied, "--verify-only")
    assert code == 1
    assert "verification failed for products" in stderr
    products = _table(report, "products")
    assert products["ok"] is False and products["source_rows"] == products["target_rows"]

    _pg(copied, "DELETE FROM products WHERE id = 99")
    code, report, _ = _migrate_data(source, "--to", copied, "--verify-only")
    products = _table(report, "products")
    assert code == 1 and products["target_rows"] == products["source_rows"] - 1


@pytest.mark.postgres
@pytest.mark.slow
def test_a_target_holding_data_is_refused_unless_forced(
    source: dict[str, str], copied: str
) -> None:
    _pg(copied, "UPDATE products SET name = 'changed in the target' WHERE id = 7")

    code, _, stderr = _migrate_data(source, "--to", copied)
    assert code == 1
    assert "already holds data (tables " in stderr and "products" in stderr
    assert "pass --force to replace it" in stderr
    assert _pg(copied, "SELECT name FROM products WHERE id = 7") == "changed in the target"

    code, report, stderr = _migrate_data(source, "--to", copied, "--force")
    assert code == 0 and report["ok"] is True, stderr
    assert _pg(copied, "SELECT name FROM products WHERE id = 7") != "changed in the target"
    assert _pg(copied, "SELECT COUNT(*) FROM products") == 100 + EXTRA_PRODUCTS


@pytest.mark.postgres
def test_a_source_behind_on_migrations_is_refused(tmp_path: Path, fresh_pg_url: str) -> None:
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    sqlite3.connect(data_dir / "monolith.db").close()  # exists, never migrated
    code, _, stderr = _migrate_data(base_env(data_dir), "--to", fresh_pg_url)
    assert code == 1
    assert "pending migration(s); run monolith migrate first" in stderr


@pytest.mark.postgres
def test_a_table_the_target_does_not_have_is_refused(tmp_path: Path, fresh_pg_url: str) -> None:
    env = base_env(tmp_path / "var")
    assert run_cli("migrate", env=env).returncode == 0
    conn = sqlite3.connect(tmp_path / "var" / "monolith.db")
    conn.execute("CREATE TABLE scratch (id INTEGER PRIMARY KEY, note TEXT)")
    conn.close()
    code, _, stderr = _migrate_data(env, "--to", fresh_pg_url)
    assert code == 1
    assert "table scratch is in the SQLite database but not in the target" in stderr


def test_an_unreachable_target_is_one_clear_line(source: dict[str, str]) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    code, _, stderr = _migrate_data(source, "--to", url)
    assert code == 1
    assert stderr.strip().splitlines() == [
        f"monolith migrate-data: cannot reach {url}: "
        "PostgreSQL is unavailable: ConnectionRefusedError"
    ]


def test_the_source_must_be_sqlite(tmp_path: Path) -> None:
    env = base_env(tmp_path / "var", MONOLITH_DATABASE_URL="postgresql://postgres@127.0.0.1/x")
    code, _, stderr = _migrate_data(env, "--to", "postgresql://postgres@127.0.0.1/y")
    assert code == 1
    assert "the source must be a SQLite database" in stderr and "--from sqlite:///" in stderr
