"""The default store: a diskcache directory (SQLite, WAL) shared by every process on the box.

Why diskcache: it is SQLite underneath, so a read is an in-process B-tree lookup with no
socket in between, and writes from several processes are serialized by SQLite's lock
(``BEGIN IMMEDIATE``), which is what makes ``incr`` and ``add`` atomic across workers.

What this module must never do:
- pickle. diskcache pickles anything that is not bytes/str/int/float, and *unpickles* whatever
  a row says is a pickle, so a writable cache directory would mean code execution
  (CVE-2025-69872). :class:`_BytesDisk` stores str keys and bytes values only, refuses every
  other type, and treats any row not written that way (pickle, file-backed) as a miss.
- read or delete files named by a row: values always live inline in SQLite.
- turn a damaged cache into errors. A directory deleted or a file corrupted while running costs
  misses: every call checks that ``cache.db`` is still the file this process opened (one
  ``stat``), reopens when it is not, and moves a corrupt directory aside and starts empty.

Reads run on the event loop thread without a thread hop: a read is tens of microseconds, and
a thread hop would cost more than it saves. Writes run on one thread of their own per process:
a write may wait for another process's write lock, and SQLite's busy handler *sleeps* while it
waits, which on the loop's thread would stall every request of the worker. A write waits at
most ``timeout`` seconds, then raises :class:`~monolith.errors.CacheUnavailable`. Generations
(:meth:`Store.bump`, what invalidation does) live in shared memory, not in SQLite.
Eviction is diskcache's "least recently stored" (a read never writes), culled on writes once
the directory passes ``size_limit``. Hit/miss counts are kept in the process: diskcache's own
statistics would make every read a write transaction.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar

import diskcache

from monolith.errors import CacheUnavailable
from monolith.files import private_dir, private_file
from monolith.logs import get_logger
from monolith.state import Scope
from monolith.store.base import Store
from monolith.store.generations import GenerationTable
from monolith.store.windows import WindowTable

T = TypeVar("T")

_DB_NAME = "cache.db"
_CORRUPT = ("malformed", "not a database")
_REOPEN = ("readonly", "no such table", "unable to open", "disk i/o")
_LIVE_ROW = "SELECT rowid, expire_time, value FROM Cache WHERE key = ? AND raw = 1"
_LIVE = "key = ? AND raw = 1 AND value = ? AND (expire_time IS NULL OR expire_time > ?)"
#: A directory that could not be opened (a full disk) is tried again at most this often.
REOPEN_SECONDS = 1.0
#: The suffix of the sibling directory of namespaces kept apart from eviction
#: (:meth:`DiskStore.kept`): ``var/cache`` -> ``var/cache-kept``.
KEPT_SUFFIX = "-kept"

log = get_logger("monolith.store")


class _Unreadable(OSError):
    """A row this module did not write; diskcache turns an OSError from ``fetch`` into a miss."""


class _BytesDisk(diskcache.Disk):  # type: ignore[misc]
    """diskcache's serializer, narrowed to str keys and inline bytes values (never pickle)."""

    def __init__(self, directory: str, **_settings: Any) -> None:
        super().__init__(directory, min_file_size=0, pickle_protocol=0)

    def put(self, key: object) -> tuple[str, bool]:
        if type(key) is not str:
            raise TypeError(f"disk store keys are str, not {type(key).__name__}")
        return key, True

    def get(self, key: object, raw: bool) -> str:
        if not raw or type(key) is not str:
            raise _Unreadable("a key this store did not write")
        return key

    def store(self, value: object, read: bool, key: object = None) -> tuple[int, int, None, bytes]:
        if type(value) is not bytes:
            raise TypeError(f"disk store values are bytes, not {type(value).__name__}")
        return 0, diskcache.core.MODE_RAW, None, value

    def fetch(self, mode: int, filename: str | None, value: object, read: bool) -> bytes:
        if mode != diskcache.core.MODE_RAW or filename is not None or type(value) is not bytes:
            raise _Unreadable("a value this store did not write")
        return value

    def remove(self, file_path: str) -> None:
        """Never delete a file a row names (a forged row could name any path)."""


class _Directory:
    """The one open ``diskcache.Cache`` shared by every namespace view in this process."""

    def __init__(self, path: Path, size_limit: int, timeout: float, *, evict: bool = True) -> None:
        self.path = path
        self.size_limit = size_limit
        self.timeout = timeout
        #: False: nothing is ever evicted here to make room (the sessions' directory).
        self.evict = evict
        self.cache: diskcache.Cache | None = None
        self.ident: tuple[int, int] | None = None
        self.db_file = str(path / _DB_NAME)  # a str: os.stat on a Path costs twice as much
        self._writer: ThreadPoolExecutor | None = None
        self._failed_at = 0.0
        self._failure = ""

    def writer(self) -> ThreadPoolExecutor:
        """The thread this process's writes run on (one: they serialize here, not in SQLite)."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="disk-store-writes")
        return self._writer

    def shutdown(self) -> None:
        self.close()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def open(self) -> None:
        self.close()
        try:
            # 0700: the directory holds sessions; nobody else on the box may read or write it.
            private_dir(self.path)
            os.chmod(self.path, 0o700)
            private_file(Path(self.db_file))  # 0600; SQLite gives -wal and -shm the same mode
            self.ident = self._stat()
            self.cache = diskcache.Cache(
                str(self.path),
                timeout=self.timeout,
                disk=_BytesDisk,
                size_limit=self.size_limit,
                eviction_policy="least-recently-stored" if self.evict else "none",
                statistics=0,
                tag_index=0,
            )
        except (sqlite3.Error, OSError) as exc:
            # A full disk: diskcache cannot even write its settings. Say so once, and let
            # callers get a 503 without trying again more than once per REOPEN_SECONDS.
            if not self._failure:
                log.warning("the disk cache cannot be opened", path=str(self.path), error=str(exc))
            self._failed_at, self._failure = time.monotonic(), str(exc) or type(exc).__name__
            raise
        if self._failure:
            log.info("the disk cache is open again", path=str(self.path))
            self._failure = ""
        self.ident = self._stat()

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.db_file)  # ~1 us, once per call: see the module docstring
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def current(self) -> diskcache.Cache:
        """The open cache: opened on first use, reopened if ``cache.db`` is no longer the file
        it has open."""
        if self.cache is None and time.monotonic() - self._failed_at < REOPEN_SECONDS:
            raise CacheUnavailable(
                f"the disk cache at {self.path} cannot be opened: {self._failure}", retry_after=1
            )
        if self.cache is None or self._stat() != self.ident:
            self.open()
        assert self.cache is not None
        return self.cache

    def recover(self, exc: Exception) -> bool:
        """Reopen after ``exc``; a corrupt file is moved aside first. False: not ours to fix."""
        text = str(exc).lower()
        if isinstance(exc, sqlite3.DatabaseError) and any(w in text for w in _CORRUPT):
            # Move it aside only if it is still the file that failed: another worker may
            # already have replaced it with a fresh one, which must not be thrown away.
            if self._stat() == self.ident and self.path.exists():
                aside = self.path.with_name(
                    f"{self.path.name}.corrupt-{os.getpid()}-{time.time_ns()}"
                )
                try:
                    self.path.rename(aside)
                except OSError:
                    pass
                else:
                    shutil.rmtree(aside, ignore_errors=True)
        elif isinstance(exc, sqlite3.DatabaseError) and not any(w in text for w in _REOPEN):
            return False
        self.open()
        return True


class DiskStore(Store):
    scope: ClassVar[Scope] = "box"

    def __init__(
        self,
        path: str | Path,
        *,
        namespace: str = "monolith",
        size_limit_mb: int = 512,
        timeout: float = 1.0,
    ) -> None:
        super().__init__(namespace)
        #: The directory (``shutil.rmtree`` it and the next call starts an empty one).
        self.path = Path(path).absolute()
        self._dir = _Directory(self.path, size_limit_mb * 1024 * 1024, timeout)
        # Every directory of this store (the main one, and the kept one once asked for),
        # shared by all namespace views so that stop reaches each of them.
        self._dirs: list[_Directory] = [self._dir]
        self._windows = WindowTable(self.path / "windows.bin")
        self._generations_table = GenerationTable(self.path / "generations.bin")

    def kept(self, namespace: str) -> Self:
        """A child namespace in a directory of its own, ``<path>-kept``, with no size limit:
        cache entries filling the main directory never evict what lives here (sessions).
        A sibling rather than a sub-directory: a corrupt main directory is thrown away whole."""
        child = self.with_namespace(namespace)
        kept = next((d for d in self._dirs if not d.evict), None)
        if kept is None:
            path = self.path.with_name(self.path.name + KEPT_SUFFIX)
            kept = _Directory(path, 0, self._dir.timeout, evict=False)
            self._dirs.append(kept)
        child._dir = kept
        return child

    def _open(self) -> None:
        # A directory that cannot be opened now (a full disk) is not a failed start: a worker
        # that cannot start is respawned into a crash loop. Each use tries again (a 503 until
        # it works); the failure is logged once.
        for directory in self._dirs:
            if directory.cache is None:
                try:
                    self._run(lambda c: None, directory)
                except CacheUnavailable:
                    pass

    async def stop(self) -> None:
        for directory in self._dirs:
            directory.shutdown()
        self._windows.close()
        self._generations_table.close()

    async def ping(self) -> None:
        key = self._prefix + "health"
        await self._write(lambda c: c.set(key, b"1", expire=10))
        if self._run(lambda c: c.get(key)) is None:
            raise CacheUnavailable(f"the disk cache at {self._dir.path} lost a write")

    def describe(self) -> str:
        return f"disk://{self._dir.path} (this box; size limit {self._dir.size_limit >> 20} MB)"

    async def delete_expired(self) -> int:
        # Writes cull only a few expired rows each; this sweeps them all (indexed on expiry).
        return sum([int(await self._write(lambda c: c.expire(), d)) for d in self._dirs])

    def _size_bytes(self) -> int | None:
        return int(self._run(lambda c: c.volume()))

    def _run(self, op: Callable[[diskcache.Cache], T], directory: _Directory | None = None) -> T:
        """Run one operation; on a damaged directory, recover and run it once more."""
        directory = directory or self._dir
        for attempt in (1, 2):
            try:
                return op(directory.current())
            except diskcache.Timeout as exc:
                raise CacheUnavailable(
                    f"the disk cache stayed locked for {directory.timeout}s", retry_after=1
                ) from exc
            except (sqlite3.DatabaseError, OSError) as exc:
                if "locked" in str(exc):
                    raise CacheUnavailable("the disk cache is locked", retry_after=1) from exc
                if attempt == 2 or not self._recover(directory, exc):
                    raise CacheUnavailable(f"the disk cache cannot be used: {exc}") from exc
        raise AssertionError("unreachable")

    def _recover(self, directory: _Directory, exc: Exception) -> bool:
        try:
            return directory.recover(exc)
        except (sqlite3.DatabaseError, OSError):
            return False

    async def _get(self, key: str, renew: float | None) -> bytes | None:
        if renew is None:
            value: bytes | None = self._run(lambda c: c.get(key))
            return value

        def get_and_renew(c: diskcache.Cache) -> bytes | None:
            value, expire_time = c.get(key, expire_time=True)
            if value is not None and expire_time is not None:
                c.touch(key, renew)
            return value  # type: ignore[no-any-return]

        return await self._write(get_and_renew)

    async def _write(
        self, op: Callable[[diskcache.Cache], T], directory: _Directory | None = None
    ) -> T:
        """Run a write on the store-writer thread of its directory (see the module docstring)."""
        directory = directory or self._dir
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(directory.writer(), self._run, op, directory)

    async def _set(self, key: str, value: bytes, ttl: float | None) -> None:
        await self._write(lambda c: c.set(key, value, expire=ttl))

    async def _delete(self, key: str) -> None:
        await self._write(lambda c: c.delete(key))

    async def _delete_prefixes(self, *prefixes: str) -> None:
        def delete(c: diskcache.Cache) -> None:
            # A key range on the (key, raw) index: no scan of other namespaces' keys.
            with c.transact():
                for p in prefixes:
                    upper = p[:-1] + chr(ord(p[-1]) + 1)
                    c._sql("DELETE FROM Cache WHERE key >= ? AND key < ?", (p, upper))

        await self._write(delete)

    async def _expiry(self, key: str) -> float | Literal[False] | None:
        value, expire_time = self._run(lambda c: c.get(key, expire_time=True))
        if value is None:
            return False
        return None if expire_time is None else expire_time - time.time()

    async def _incr(self, key: str, amount: int, ttl: float | None) -> int:
        def incr(c: diskcache.Cache) -> int:
            # diskcache's own incr stores Python ints and drops the TTL of a new key; this one
            # keeps ASCII bytes (as Redis does) and touches only the value of a live row, so
            # the window's expiry time stays exactly where its first increment put it.
            with c.transact():
                row = c._sql(_LIVE_ROW, (key,)).fetchone()
                if row is None or (row[1] is not None and row[1] <= time.time()):
                    c.set(key, b"%d" % amount, expire=ttl)
                    return amount
                try:
                    value = int(row[2]) + amount
                except (TypeError, ValueError):
                    raise ValueError(f"the value at {key!r} is not an integer") from None
                c._sql("UPDATE Cache SET value = ? WHERE rowid = ?", (b"%d" % value, row[0]))
                return value

        return await self._write(incr)

    def _hit_window_now(self, key: str, period: int) -> tuple[int, float] | None:
        # Shared memory instead of a SQLite write per request (see monolith.store.windows).
        # None when every slot of this key's run is taken: _hit_window counts in SQLite.
        try:
            return self._windows.hit(key, period, time.time())
        except OSError as exc:
            raise CacheUnavailable(f"the rate-limit table cannot be used: {exc}") from exc

    async def _hit_window(self, key: str, period: int) -> tuple[int, float]:
        counted = self._hit_window_now(key, period)
        if counted is None:  # every slot of this key's run is taken: count in SQLite instead
            return await super()._hit_window(key, period)
        return counted

    async def _add(self, key: str, value: bytes, ttl: float | None) -> bool:
        return bool(await self._write(lambda c: c.add(key, value, expire=ttl)))

    async def _set_keep_ttl(self, key: str, value: bytes) -> None:
        def set_keep_ttl(c: diskcache.Cache) -> None:
            with c.transact():
                row = c._sql(_LIVE_ROW, (key,)).fetchone()
                now = time.time()
                if row is None or (row[1] is not None and row[1] <= now):
                    c.set(key, value)
                else:
                    c._sql(
                        "UPDATE Cache SET value = ?, store_time = ? WHERE rowid = ?",
                        (value, now, row[0]),
                    )

        await self._write(set_keep_ttl)

    async def _delete_if(self, key: str, value: bytes) -> bool:
        # One statement: SQLite runs it under its write lock, so the check and the delete are
        # one step for every process on the box.
        cursor = await self._write(
            lambda c: c._sql(f"DELETE FROM Cache WHERE {_LIVE}", (key, value, time.time()))
        )
        return bool(cursor.rowcount)

    async def _renew_if(self, key: str, value: bytes, ttl: float) -> bool:
        def renew(c: diskcache.Cache) -> Any:
            now = time.time()
            return c._sql(
                f"UPDATE Cache SET expire_time = ? WHERE {_LIVE}", (now + ttl, key, value, now)
            )

        return bool((await self._write(renew)).rowcount)

    # Generations in shared memory (see monolith.store.generations): no SQLite, no await.

    def tokens_now(self, keys: tuple[str, ...]) -> bytes | None:
        try:
            return self._generations_table.read(keys)
        except OSError as exc:
            raise CacheUnavailable(f"the generation table cannot be used: {exc}") from exc

    async def _generations(self, keys: tuple[str, ...]) -> bytes:
        tokens = self.tokens_now(keys)
        assert tokens is not None
        return tokens

    async def _bump(self, keys: tuple[str, ...]) -> None:
        try:
            self._generations_table.bump(keys)
        except OSError as exc:
            raise CacheUnavailable(f"the generation table cannot be used: {exc}") from exc
