"""The disk store's shared-memory window table: exact, shared, self-healing, never stuck."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from monolith.store import windows
from monolith.store.disk import DiskStore
from monolith.store.windows import WindowTable

pytestmark = pytest.mark.profile_independent


def test_a_window_counts_then_restarts_after_its_period(tmp_path: Path) -> None:
    table = WindowTable(tmp_path / "w.bin")
    assert table.hit("k", 10, now=100.0) == (1, 10.0)
    assert table.hit("k", 10, now=103.0) == (2, 7.0)
    assert table.hit("other", 10, now=103.0) == (1, 10.0)
    assert table.hit("k", 10, now=110.0) == (1, 10.0)  # the old window ended
    table.close()


def test_two_tables_on_one_file_share_counts(tmp_path: Path) -> None:
    a, b = WindowTable(tmp_path / "w.bin"), WindowTable(tmp_path / "w.bin")
    assert a.hit("k", 60, now=1.0)[0] == 1
    assert b.hit("k", 60, now=2.0)[0] == 2
    assert a.hit("k", 60, now=3.0)[0] == 3
    a.close()
    b.close()


def test_a_deleted_file_is_recreated_empty_at_the_next_look(tmp_path: Path) -> None:
    """The path is looked at once per ``RECHECK`` (a stat costs a third of a hit): until then
    the table in hand counts on; after it, a fresh file is made and counting starts over."""
    table = WindowTable(tmp_path / "w.bin")
    table.hit("k", 60, now=1.0)
    (tmp_path / "w.bin").unlink()
    assert table.hit("k", 60, now=2.0) == (2, 59.0)  # within RECHECK: the table in hand
    assert not (tmp_path / "w.bin").exists()
    table._checked -= windows.RECHECK  # as if RECHECK seconds had passed
    assert table.hit("k", 60, now=3.0) == (1, 60.0)
    assert (tmp_path / "w.bin").stat().st_size == windows.FILE_SIZE
    table.close()


def test_a_full_run_of_slots_says_so_instead_of_sharing(
    tmp_path: Path, monkeypatch: object
) -> None:
    """With every slot of a key's run live, hit() returns None (the store then uses SQLite)."""

    mp = pytest.MonkeyPatch()
    mp.setattr(windows, "SLOTS", windows.PROBE + 1)  # a table whose every key maps to one run
    try:
        table = WindowTable(tmp_path / "w.bin")
        results = [table.hit(f"key{i}", 60, now=1.0) for i in range(windows.PROBE + 1)]
        assert results[: windows.PROBE] == [(1, 60.0)] * windows.PROBE
        assert results[windows.PROBE] is None
        assert table.hit("key0", 60, now=2.0) == (2, 59.0)  # existing keys still count
        table.close()
    finally:
        mp.undo()


async def test_the_disk_store_counts_windows_in_the_table(tmp_path: Path) -> None:
    store = DiskStore(tmp_path / "cache")
    await store.start()
    try:
        assert (await store.hit_window("login:1.2.3.4", 60))[0] == 1
        count, left = await store.hit_window("login:1.2.3.4", 60)
        assert count == 2
        assert 59 < left <= 60
        assert (tmp_path / "cache" / "windows.bin").exists()
    finally:
        await store.stop()


def _hammer(path: str, hits: int, start: object, out: object) -> None:
    table = WindowTable(Path(path))
    start.wait()  # type: ignore[attr-defined]
    counts = [table.hit("one client", 3600, now=1000.0)[0] for _ in range(hits)]  # type: ignore[index]
    table.close()
    out.put(counts)  # type: ignore[attr-defined]


def test_processes_hitting_one_key_at_once_lose_no_hit(tmp_path: Path) -> None:
    """Four processes count one client's hits at the same moment (the bench's case: every
    request from one address, answered by several workers). A hit first tries the run's lock
    without waiting; whichever way it gets it, every hit gets its own count: no count seen
    twice (a lost update), none missing."""
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(4), context.Queue()
    hits = 3000
    workers = [
        context.Process(target=_hammer, args=(str(tmp_path / "w.bin"), hits, start, out))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    try:
        seen = [count for _ in workers for count in out.get(timeout=120)]
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert sorted(seen) == list(range(1, 4 * hits + 1))
