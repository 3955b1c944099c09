"""The migrations shipped (``migrations/NNNN_name.py``) and what is known about them: their
order, checksums, the checksums of the SQL files that 0001-0005 used to be, and ``--to``.

No database access here; :mod:`monolith.database.migrate` reads the database and
:mod:`monolith.database.migrator` changes it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

from monolith.errors import MigrationError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.py$")
_SQL_NAME = re.compile(r"^\d{4}_.*\.sql$")
LOCK_KEY = 0x6D6F6E6F  # "mono": the advisory lock id on PostgreSQL

#: sha256 of the SQL files (one per database) that migrations 0001-0006 were until they were
#: converted: a database that recorded one of these is up to date with that version.
LEGACY_CHECKSUMS: dict[int, frozenset[str]] = {
    1: frozenset(
        {
            "8cdff40193a7c9e2ec7d3858a519934c2a2c466b0d9c322095a138d40d83f2df",
            "44ddf8526c57225989d01b673fad216c100a0657c9ec6af08a7f7a0e8d308af8",
        }
    ),
    2: frozenset(
        {
            "f324bc23a9aac53c0826a8cd78079b8d68a64e82e3aace65f608b691063d8671",
            "8152530eeba102bb4331f337a3c0d57e0026ecb45236f08f052182bf4a66a0db",
        }
    ),
    3: frozenset(
        {
            "4b70b6c1e02db2bc6c57fc403f58d415a99e02d9693cb27504b7954df4c8b539",
            "83dbae4ebaa5f4ea36c18f1074b133bec68b100db0973d310e9b1798160985c7",
        }
    ),
    4: frozenset(
        {
            "09fd2719940e0e0c99e6b26428c1338385a796471d6ce771eb69fa7f78511372",
            "753bb89120dabc35894d7c11499790dbef02b63e3fa5e2ec24ec06c980aa47c6",
        }
    ),
    5: frozenset(
        {
            "bb63b393a7b2a3a54b2fe890c60cf5318a31a5e8717f9db012449364d24892de",
            "83cfa8dced0e9a067c6dff3857bb97dd54a30427988fe6359116956ea3833fd1",
        }
    ),
    6: frozenset(
        {
            "337bbab917729cec700051b557688d8be7ab4008d68f24ce7b2bc017cd450366",
            "7e1a432ddcaf5eadbd5c4f5c469c35808b8bd0b131498c4b9e68bc766cc12d10",
        }
    ),
    7: frozenset(
        {
            "d0f45f0c076642f96edf32fd4595a4d6abd1400f53a6499a41915a1582ed5010",
            "aa67a1347d5a421c4aa9b31173c29f98f0ff8cca5db15d01f7096ab90d26f5d3",
        }
    ),
    8: frozenset(
        {
            "3d6b5cf4591957b0582eac57c0cbdcb3f0d6344021b3a25d2e03d684bca000ec",
            "58ac7db96a23b5b3d3650c3076283f682282970c8228a42ef2ead575bb1c5bc3",
        }
    ),
}


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    source: str
    #: Where the file is, for loading it (a path on disk: the package is not zipped).
    path: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: float | None
    checksum_ok: bool


@dataclass(frozen=True, slots=True)
class Step:
    """One migration applied (``up``) or reverted (``down``) by a run."""

    migration: Migration
    direction: str


def _folder() -> Traversable:
    return resources.files("monolith.database") / "migrations"


def available(dialect: str | None = None) -> list[Migration]:
    """The migrations shipped, in version order (the same for every database: ``dialect``
    is accepted for callers of the time when each database had its own files). Numbers may
    have gaps (some are reserved for work in progress); each applies once, in order.

    Raises :class:`MigrationError` on a stray SQL file or two files of one version.
    """
    del dialect
    found: list[Migration] = []
    stray: list[str] = []
    for entry in _folder().iterdir():
        if entry.is_dir():  # the old per-database folders: any SQL file left in them is stray
            stray += [f"{entry.name}/{e.name}" for e in entry.iterdir() if _SQL_NAME.match(e.name)]
            continue
        if _SQL_NAME.match(entry.name):
            stray.append(entry.name)
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(), str(entry)))
    if stray:
        raise MigrationError(
            f"SQL migration files are no longer read: {', '.join(sorted(stray))} in "
            "monolith/database/migrations; write each once as NNNN_name.py "
            "(docs/GUIDE.md, 'Writing a migration') and delete the .sql files"
        )
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a version: {versions}")
    return found


def parse_target(text: str, known: list[Migration]) -> int:
    """``--to REV``: a version number (``3``, ``0003``), a file name, ``base`` (0) or ``head``."""
    value = text.strip().lower().removesuffix(".py")
    if value == "head":
        return known[-1].version if known else 0
    if value == "base":
        return 0
    number = value.split("_", 1)[0]
    if not number.isdigit():
        raise MigrationError(f"--to {text}: not a version (a number, base or head)")
    target = int(number)
    if target not in {m.version for m in known} | {0}:
        raise MigrationError(f"--to {text}: no such migration (the last is {known[-1].label})")
    return target


def check(known: list[Migration], applied: dict[int, tuple[str, str, float]]) -> list[int]:
    """Refuse unknown or changed migrations; returns the versions recorded with a legacy
    (SQL file) checksum, which the runner re-stamps."""
    by_version = {m.version: m for m in known}
    legacy: list[int] = []
    for version, (name, checksum, _) in sorted(applied.items()):
        mig = by_version.get(version)
        if mig is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{name} which this code does not know; "
                "is an older version of monolith running against a newer database?"
            )
        if mig.checksum == checksum:
            continue
        if checksum in LEGACY_CHECKSUMS.get(version, frozenset()):
            legacy.append(version)
            continue
        raise MigrationError(
            f"migration {mig.label} changed after it was applied "
            f"(recorded {checksum[:12]}, file {mig.checksum[:12]}); add a new migration instead"
        )
    return legacy
