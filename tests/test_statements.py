"""Statement statistics: the ``pg_stat_statements`` view, on SQLite and PostgreSQL.

A statement run a thousand times with different values is one normalized row with 1,000
calls in ``monolith db top``, whichever process ran it; ``GET /api/admin/queries`` shows the
same view to admins.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from monolith.cli.common import started_services
from monolith.observability.statements import normalize
from tests.apphelpers import ADMIN, app_client, make_settings
from tests.server import base_env, run_cli
from tests.services import require

MARKER = "obs_marker"


def test_values_and_lists_are_normalized_away() -> None:
    a = normalize("SELECT * FROM t WHERE id = 5 AND name = 'bob'  AND x IN (1, 2, 3)")
    b = normalize("select * FROM t\n WHERE id = 77 AND name = 'it''s' AND x IN (?, ?)")
    expected = "select * from t where id = ? and name = ? and x in (...)"
    assert a[0].lower() == b[0].lower() == expected
    assert a[1] == "select"
    assert normalize('INSERT INTO "t1" (a, b) VALUES (?, ?), (?, ?)')[0] == (
        'INSERT INTO "t1" (a, b) VALUES (...)'
    )
    assert normalize("SELECT $1::text -- why\n")[0] == "SELECT ?::text"


def _env(data_dir: Path, db_url: str) -> dict[str, str]:
    return base_env(data_dir, MONOLITH_DATABASE_URL=db_url)


async def _run_statement(data_dir: Path, db_url: str, times: int) -> None:
    settings = make_settings(data_dir, MONOLITH_DATABASE_URL=db_url)
    async with started_services(settings) as svc:
        for i in range(times):
            # A literal that changes every time: still one statement.
            await svc.db.fetch_one(f"SELECT {i} AS {MARKER}, CAST(? AS INTEGER) AS n", (i,))


def _top(env: dict[str, str], *args: str) -> dict[str, object]:
    result = run_cli("db", "top", "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def _marker_rows(data: dict[str, object]) -> list[dict[str, object]]:
    rows = data["statements"]
    assert isinstance(rows, list)
    return [r for r in rows if MARKER in r["query"]]


async def test_db_top_lists_a_statement_run_1000_times(data_dir: Path, db_url: str) -> None:
    await _run_statement(data_dir, db_url, 1000)
    data = _top(_env(data_dir, db_url), "--limit", "50", "--order", "calls")
    assert data["source"] == "monolith"  # pg_stat_statements is not loaded on this server
    [row] = _marker_rows(data)
    assert row["query"] == f"SELECT ? AS {MARKER}, CAST(? AS INTEGER) AS n"
    assert row["calls"] == 1000
    assert row["rows"] == 1000
    assert row["total_ms"] >= row["max_ms"] >= row["mean_ms"] > 0  # type: ignore[operator]


def test_db_top_adds_up_every_process(data_dir: Path, tmp_path: Path) -> None:
    db_url = f"sqlite:///{data_dir / 'monolith.db'}"
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from tests.test_statements import _run_statement
        asyncio.run(_run_statement(Path({str(data_dir)!r}), {db_url!r}, 500))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=_env(data_dir, db_url))
        for _ in range(2)
    ]
    assert [p.wait(120) for p in procs] == [0, 0]
    [row] = _marker_rows(_top(_env(data_dir, db_url), "--limit", "50"))
    assert row["calls"] == 1000


def test_db_top_in_words_and_bad_limit(data_dir: Path) -> None:
    env = base_env(data_dir)
    # db top reads: it needs a database (tests/test_cli_errors.py: it never makes one).
    assert run_cli("migrate", env=env).returncode == 0
    empty = run_cli("db", "top", env=env)
    assert empty.returncode == 0, empty.stderr
    assert "no statements recorded yet" in empty.stdout
    bad = run_cli("db", "top", "--limit", "0", env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "monolith db top: --limit must be at least 1"


async def test_admin_queries_shows_the_view_to_admins(data_dir: Path) -> None:
    settings = make_settings(data_dir)
    async with app_client(settings) as client:
        for i in range(25):  # each page size is its own cache entry: 25 queries
            r = await client.get(f"/api/products?limit={i + 1}")
            assert r.status_code == 200
        assert (await client.get("/api/admin/queries")).status_code == 401
        r = await client.get("/api/admin/queries?limit=5&order=calls", headers=ADMIN)
        assert r.status_code == 200
        body = r.json()
        assert body["source"] == "monolith"
        assert body["order"] == "calls"
        assert 0 < len(body["statements"]) <= 5
        top = body["statements"][0]
        assert top["query"].startswith("SELECT") and "FROM products" in top["query"]
        assert top["calls"] >= 25
        assert set(top) == {"query", "calls", "total_ms", "mean_ms", "max_ms", "rows"}
        bad = await client.get("/api/admin/queries?order=fastest", headers=ADMIN)
        assert bad.status_code == 422
        assert bad.json()["detail"].startswith("order:")


@pytest.mark.postgres
async def test_pg_stat_statements_is_read_where_loaded(fresh_pg_url: str, data_dir: Path) -> None:
    import asyncpg

    conn = await asyncpg.connect(fresh_pg_url)
    try:
        loaded = await conn.fetchval("SHOW shared_preload_libraries")
        require(
            "pg_stat_statements",
            "pg_stat_statements" in loaded,
            "add it to the server's shared_preload_libraries and restart it (.ci/run does)",
        )
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()
    await _run_statement(data_dir, fresh_pg_url, 50)
    data = _top(_env(data_dir, fresh_pg_url), "--limit", "100", "--order", "calls")
    assert data["source"] == "pg_stat_statements"
    assert any(r["calls"] >= 50 for r in _marker_rows(data))
