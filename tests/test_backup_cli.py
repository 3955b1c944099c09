"""`monolith backup` while a real server takes writes, then `monolith restore` into a fresh dir.

The writes come from ``monolith serve --workers 2`` (two writer processes), the backup from a
third process (the CLI, as the systemd timer runs it): the situation on a live box.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest

from tests.server import ADMIN_TOKEN, ServerProcess, base_env, run_cli

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WRITES = 1000


def test_a_backup_taken_during_1000_writes_restores_every_write_acknowledged_before_it(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    acked: list[int] = []
    lock = threading.Lock()
    errors: list[str] = []
    reached = threading.Event()
    # The writers go on until the backup is over and at least WRITES rows exist, whatever the
    # machine's speed, so there are always writes before, during and after the backup.
    stop_at = [10**9]

    with ServerProcess(live, workers=2) as server:

        def write(worker: int) -> None:
            with httpx.Client(base_url=server.url, headers=ADMIN, timeout=30) as client:
                n = worker
                while True:
                    with lock:
                        if len(acked) >= stop_at[0]:
                            return
                    body = {"name": f"written {n}", "price_cents": 100 + n, "stock": 1}
                    response = client.post("/api/products", json=body)
                    if response.status_code != 201:
                        errors.append(f"{response.status_code} {response.text}")
                        return
                    with lock:
                        acked.append(int(response.json()["id"]))
                        if len(acked) >= 300:
                            reached.set()
                    n += 4

        writers = [threading.Thread(target=write, args=(i,)) for i in range(4)]
        for thread in writers:
            thread.start()
        try:
            assert reached.wait(60), errors
            with lock:
                before_backup = set(acked)
            taken = run_cli("backup", "--json", env=base_env(live), timeout=120)
            with lock:
                after_backup = set(acked)
                stop_at[0] = max(WRITES, len(acked) + 20)
        finally:
            with lock:
                if stop_at[0] == 10**9:  # failed before the backup ran: stop the writers now
                    stop_at[0] = 0
            for thread in writers:
                thread.join(120)
    assert errors == []
    assert taken.returncode == 0, taken.stderr
    assert len(acked) >= WRITES
    assert after_backup - before_backup, "no write was acknowledged while the backup ran"

    backup = Path(json.loads(taken.stdout)["path"])
    assert backup.parent == live / "backups"
    fresh = tmp_path / "fresh"
    restored = run_cli("restore", str(backup), env=base_env(fresh))
    assert restored.returncode == 0, restored.stderr

    with sqlite3.connect(fresh / "monolith.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        got = [row[0] for row in conn.execute("SELECT id FROM products ORDER BY id")]
    with sqlite3.connect(live / "monolith.db") as conn:
        everything = [row[0] for row in conn.execute("SELECT id FROM products ORDER BY id")]
    assert before_backup <= set(got)
    # One moment's snapshot: a prefix of the commits (ids are handed out in commit order),
    # without the rows acknowledged after the backup had finished.
    assert got == everything[: len(got)]
    assert not (set(acked) - after_backup) & set(got)

    again = run_cli("restore", str(backup), env=base_env(fresh))
    assert again.returncode == 1
    assert "empty data dir" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    with ServerProcess(fresh, workers=1) as server:
        some = min(before_backup)
        assert httpx.get(f"{server.url}/api/products/{some}").json()["id"] == some


def test_backup_keeps_the_newest_n_and_reports_progress(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    env = base_env(live)
    assert run_cli("seed-demo", env=env).returncode == 0
    made = []
    for _ in range(3):
        result = run_cli("backup", "--keep", "2", env=env)
        assert result.returncode == 0, result.stderr
        assert "integrity ok" in result.stdout
        assert "pages copied" in result.stderr
        made.append(result.stdout.split()[1])
    assert sorted(p.name for p in (live / "backups").iterdir()) == sorted(
        Path(p).name for p in made[1:]
    )


@pytest.mark.postgres
def test_backup_on_postgresql_says_pg_dump_and_fails(tmp_path: Path, fresh_pg_url: str) -> None:
    env = base_env(tmp_path / "var", MONOLITH_DATABASE_URL=fresh_pg_url)
    result = run_cli("backup", env=env)
    assert result.returncode == 1
    assert "pg_dump" in result.stderr
    result = run_cli("restore", str(tmp_path / "x.db"), env=env)
    assert result.returncode == 1
    assert "pg_restore" in result.stderr


def test_restore_of_a_file_that_is_not_a_backup_changes_nothing(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"\x00" * 4096)
    fresh = tmp_path / "fresh"
    result = run_cli("restore", str(bogus), env=base_env(fresh))
    assert (result.returncode, result.stdout) == (1, "")
    assert "not a SQLite database" in result.stderr
    assert not (fresh / "monolith.db").exists()


def test_backup_and_restore_have_help(tmp_path: Path) -> None:
    for command in ("backup", "restore"):
        result = run_cli(command, "--help", env=base_env(tmp_path))
        assert result.returncode == 0
        assert "usage: monolith " + command in result.stdout
