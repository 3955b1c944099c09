"""Values on their way from SQLite to PostgreSQL: conversion, and one canonical text for both.

SQLite stores values loosely (a column holds what it was given: int, float, str, bytes or
NULL); asyncpg wants the Python type of the PostgreSQL column. :func:`converter` picks, from
the target column's ``information_schema`` type, a function making a SQLite value fit.

:func:`canonical` is how a value is written into a checksum, on both sides, after conversion:
an int ``5`` in a ``DOUBLE PRECISION`` column is converted to ``5.0`` before the source's
checksum sees it, so a copy that is right checksums the same as its source. Floats are written
with ``repr`` (exact: both databases keep IEEE doubles), bytes as hex, JSON re-encoded with
sorted keys (``jsonb`` reorders keys and drops spaces).

This module must never touch a database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

Convert = Callable[[Any], Any]
Canon = Callable[[Any], str | None]

_INTEGERS = {"smallint", "integer", "bigint"}
_FLOATS = {"double precision", "real"}
_TEXTS = {"text", "character varying", "character", "name", "citext"}
_JSON = {"json", "jsonb"}
_TRUE = {"1", "t", "true", "y", "yes", "on"}
_FALSE = {"0", "f", "false", "n", "no", "off"}


def _to_int(value: Any) -> int:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    raise ValueError(value)


def _to_float(value: Any) -> float:
    if isinstance(value, int | float | str):
        return float(value)
    raise ValueError(value)


def _to_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str | int | float):
        return str(value)
    raise ValueError(value)


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ValueError(value)


def _to_bool(value: Any) -> bool:
    if isinstance(value, int | float):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(value)


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, int | float | str):
        return Decimal(str(value))
    raise ValueError(value)


_CONVERTERS: dict[str, Convert] = {
    **dict.fromkeys(_INTEGERS, _to_int),
    **dict.fromkeys(_FLOATS, _to_float),
    **dict.fromkeys(_TEXTS | _JSON, _to_text),
    "bytea": _to_bytes,
    "boolean": _to_bool,
    "numeric": _to_decimal,
}


def converter(pg_type: str) -> Convert:
    """A function making a SQLite value fit a PostgreSQL column of ``pg_type``; None stays None.

    Raises ``ValueError`` for a value the column cannot hold. Types without a rule (dates,
    arrays) take the value as it is and let PostgreSQL judge.
    """
    convert = _CONVERTERS.get(pg_type)
    if convert is None:
        return lambda value: value
    return lambda value: None if value is None else convert(value)


def canonical(value: Any) -> str | None:
    """One text for a converted value, the same whichever database it was read from."""
    if value is None:
        return None
    if isinstance(value, bool):  # before int: bool is an int
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    return str(value)


def canonical_json(value: Any) -> str | None:
    """JSON text with sorted keys and no spaces (what ``jsonb`` keeps is the meaning only)."""
    if value is None:
        return None
    return json.dumps(json.loads(value), sort_keys=True, separators=(",", ":"))


def canon_for(pg_type: str) -> Canon:
    return canonical_json if pg_type in _JSON else canonical
