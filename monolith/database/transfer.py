"""``monolith migrate-data``: move a SQLite database into PostgreSQL and prove the copy whole.

1. The target is migrated with this code's migrations, so both sides have the same tables;
   a source with pending migrations is refused (``monolith migrate`` first).
2. A target holding anything beyond what a fresh migration puts there is refused unless
   ``force`` (then its rows are replaced).
3. Every table is copied in one PostgreSQL transaction (the target holds every row or none),
   parents before children, in batches, keeping ids; identity sequences then move past the
   largest id, so the app's next insert gets a new one. Jobs move with their state: a job
   that was running keeps its lease, which expires and is claimed again as after a crash.
4. Each table's row count and checksum (:mod:`monolith.database.tables`) are computed on the
   rows read from the source and on the rows read back from the target, and compared.

Before the copy the source is fenced (:mod:`monolith.database.fence`): from then on every
write to it, from any process, fails with a 503, so the rows copied are all the rows there
will ever be, and the app may keep serving reads (and answering writes with ``Retry-After``)
during the move. The fence stays after a successful move (the data now lives in PostgreSQL),
and is lifted again when the copy fails before the target changed. Fencing is the only write
this module makes to the source.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monolith.database import fence, open_database
from monolith.database.base import Database, Transaction
from monolith.database.migrate import available, migrate
from monolith.database.tables import (
    Checksum,
    ProgressBar,
    SQLiteSource,
    TableCheck,
    TablePlan,
    TransferError,
    make_plans,
    quote,
    source_checksum,
    target_checksum,
    target_types,
)
from monolith.errors import StateUnavailable

__all__ = ["Outcome", "TransferError", "move"]

ProgressFactory = Callable[[str, int], ProgressBar]


class _Quiet:
    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


def _quiet(label: str, total: int) -> ProgressBar:
    del label, total
    return _Quiet()


@dataclass(slots=True)
class Outcome:
    source: str
    target: str
    copied: bool
    checks: list[TableCheck] = field(default_factory=list)
    #: Whether the source is fenced now (writes refused); set by a copy.
    fenced: bool = False
    #: How long writes were refused during the copy: fence to verified (or failed) move.
    fenced_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def rows(self) -> int:
        return sum(c.source.rows for c in self.checks)


async def copy_tables(
    source: SQLiteSource,
    target: Database,
    plans: Sequence[TablePlan],
    *,
    size: int,
    progress: ProgressBar | None = None,
) -> dict[str, Checksum]:
    """Replace the target tables' rows with the source's in one transaction.

    Returns the source checksums, computed from the very rows copied.
    """
    sums: dict[str, Checksum] = {}
    async with target.transaction() as tx:
        if plans:
            await tx.execute(f"TRUNCATE {', '.join(quote(p.name) for p in plans)}")
        for plan in plans:
            summer = plan.summer()
            async for rows in source.batches(plan, size):
                for row in rows:
                    summer.add(row)
                await tx.copy_rows(plan.name, plan.columns, rows)
                if progress is not None:
                    progress.advance(len(rows))
            sums[plan.name] = summer.result()
        await reset_sequences(tx, [p.name for p in plans])
    return sums


async def reset_sequences(tx: Transaction, tables: Sequence[str]) -> None:
    """Move each identity/serial sequence past the largest id copied, so new rows get new ids."""
    rows = await tx.fetch_all(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() "
        "AND (is_identity = 'YES' OR column_default LIKE 'nextval(%')"
    )
    wanted = set(tables)
    for table, column in ((r[0], r[1]) for r in rows if r[0] in wanted):
        col = quote(column)
        await tx.fetch_val(
            f"SELECT setval(pg_get_serial_sequence(?, ?), GREATEST(COALESCE(MAX({col}), 0), 1), "
            f"MAX({col}) IS NOT NULL) FROM {quote(table)}",
            (quote(table), column),
        )


async def occupied(
    target: Database, plans: Sequence[TablePlan], baseline: Mapping[str, Checksum], size: int
) -> list[str]:
    """Target tables holding rows other than those a fresh migration puts there."""
    busy = []
    for plan in plans:
        expected = baseline.get(plan.name, Checksum(0, f"{0:064x}"))
        count = int(await target.fetch_val(f"SELECT COUNT(*) FROM {quote(plan.name)}") or 0)
        if count != expected.rows or (
            count and await target_checksum(target, plan, size) != expected
        ):
            busy.append(plan.name)
    return busy


async def baseline(plans: Sequence[TablePlan], size: int) -> dict[str, Checksum]:
    """What a freshly migrated database holds (some migrations insert a row or two)."""
    with tempfile.TemporaryDirectory(prefix="monolith-baseline-") as tmp:
        path = Path(tmp) / "fresh.db"
        fresh = open_database(f"sqlite:///{path}")
        await fresh.start()
        try:
            await migrate(fresh)
        finally:
            await fresh.stop()
        async with SQLiteSource(path) as source:
            return {p.name: await source_checksum(source, p, size) for p in plans}


async def check_versions(source: SQLiteSource) -> None:
    """Refuse a source that is not at exactly this code's migrations."""
    known = {m.version for m in available()}
    applied = await source.applied_migrations()
    if applied - known:
        raise TransferError(
            f"the SQLite database has migrations {sorted(applied - known)} this code does not "
            "know; run the version of monolith that made it"
        )
    if known - applied:
        raise TransferError(
            f"the SQLite database has {len(known - applied)} pending migration(s); run "
            "monolith migrate first, so both databases have the same tables"
        )


async def move(
    source_path: str | Path,
    target_url: str,
    *,
    force: bool = False,
    verify_only: bool = False,
    batch: int = 10_000,
    progress: ProgressFactory = _quiet,
) -> Outcome:
    """Copy (unless ``verify_only``) and verify; raises :class:`TransferError` when refused.

    A copy fences the source first (see the module docstring); the outcome says whether the
    fence still stands.
    """
    target = open_database(target_url)
    if target.dialect != "postgresql":
        raise TransferError(f"the target must be a postgresql:// URL, got {target.describe()}")
    outcome = Outcome(str(source_path), target.describe(), copied=False)
    try:
        await target.start()
    except StateUnavailable as exc:
        raise TransferError(f"cannot reach {target.describe()}: {exc}") from exc
    try:
        async with SQLiteSource(source_path) as source:
            await check_versions(source)
            if not verify_only:
                await migrate(target)
            plans = make_plans(await source.tables(), await target_types(target))
            if not verify_only and not force:
                busy = await occupied(target, plans, await baseline(plans, batch), batch)
                if busy:
                    raise TransferError(
                        f"the target already holds data (tables {', '.join(busy)}); "
                        "pass --force to replace it"
                    )
        fenced_at = time.monotonic()
        if verify_only:
            sums = await _read_source(source_path, plans, batch, progress)
        else:
            sums = await _fenced_copy(source_path, target, plans, batch, progress, outcome)
        bar = progress("verifying", sum(s.rows for s in sums.values()))
        found = {p.name: await target_checksum(target, p, batch, bar) for p in plans}
        bar.finish()
        outcome.checks = [TableCheck(p.name, sums[p.name], found[p.name]) for p in plans]
        if outcome.fenced:
            outcome.fenced_seconds = time.monotonic() - fenced_at
            if outcome.ok:
                await fence.put_up(source_path, fence.moved_message(outcome.target))
        return outcome
    finally:
        await target.stop()


async def _read_source(
    path: str | Path, plans: Sequence[TablePlan], batch: int, progress: ProgressFactory
) -> dict[str, Checksum]:
    async with SQLiteSource(path) as source:
        bar = progress("reading the source", sum([await source.count(p.name) for p in plans]))
        sums = {p.name: await source_checksum(source, p, batch, bar) for p in plans}
        bar.finish()
        return sums


async def _fenced_copy(
    path: str | Path,
    target: Database,
    plans: Sequence[TablePlan],
    batch: int,
    progress: ProgressFactory,
    outcome: Outcome,
) -> dict[str, Checksum]:
    """Fence the source, then copy from a snapshot taken after the fence (every row there is).

    A copy that fails leaves the target as it was (one transaction), so the fence comes down
    again and the app writes on SQLite as before.
    """
    await fence.put_up(path)
    outcome.fenced = True
    try:
        async with SQLiteSource(path) as source:
            bar = progress("copying", sum([await source.count(p.name) for p in plans]))
            sums = await copy_tables(source, target, plans, size=batch, progress=bar)
            bar.finish()
    except BaseException:
        await fence.lift(path)
        outcome.fenced = False
        raise
    outcome.copied = True
    return sums
