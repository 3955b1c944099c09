"""The catalog's model: products, their JSON, the queries and the writes that change them.

Reads return encoded JSON bytes, so a cache can hold exactly what is sent and an ETag is a
hash of those bytes. Every write goes through one transaction; what follows a committed write
(cache keys to drop, events to publish) is :mod:`monolith.shop.catalog.effects`.
"""

from __future__ import annotations

import base64
import binascii
import random
import time
from collections.abc import Iterable
from typing import Annotated, Any

import msgspec

from monolith.db import Database, Queries, Row, Transaction
from monolith.errors import InvalidInput
from monolith.patch import Patch

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Description = Annotated[str, msgspec.Meta(max_length=5000)]
Cents = Annotated[int, msgspec.Meta(ge=0, le=10_000_000_000)]
Stock = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]

MAX_PAGE = 100
DEFAULT_PAGE = 20


class ProductIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    price_cents: Cents
    description: Description = ""
    stock: Stock = 0


class ProductPatch(Patch):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    price_cents: Cents | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    stock: Stock | msgspec.UnsetType = msgspec.UNSET


class Product(msgspec.Struct):
    id: int
    name: str
    description: str
    price_cents: int
    stock: int
    image_url: str | None
    created_at: float
    updated_at: float


class ProductPage(msgspec.Struct):
    items: list[Product]
    next_cursor: str | None


PRODUCT_COLUMNS = "id, name, description, price_cents, stock, image_key, created_at, updated_at"
_encoder = msgspec.json.Encoder()


class InvalidCursor(InvalidInput):
    """A pagination cursor this server did not return (HTTP 400)."""


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"p{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("p"):
            raise ValueError(raw)
        value = int(raw[1:])
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("cursor: not a cursor this server returned") from None
    if value < 0:
        raise InvalidCursor("cursor: not a cursor this server returned")
    return value


def to_product(row: Row) -> Product:
    key = row["image_key"]
    return Product(
        id=int(row["id"]),
        name=row["name"],
        description=row["description"],
        price_cents=int(row["price_cents"]),
        stock=int(row["stock"]),
        image_url=f"/media/{key}" if key else None,
        created_at=float(row["created_at"]),
        updated_at=float(row["updated_at"]),
    )


async def get_product(q: Queries, product_id: int) -> Product | None:
    row = await q.fetch_one(f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?", (product_id,))
    return None if row is None else to_product(row)


async def get_products(q: Queries, product_ids: Iterable[int]) -> list[Product]:
    """The products among ``product_ids`` that exist, in id order."""
    ids = sorted(set(product_ids))
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    rows = await q.fetch_all(
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id IN ({marks}) ORDER BY id", ids
    )
    return [to_product(r) for r in rows]


async def product_json(db: Database, product_id: int) -> bytes | None:
    """One product as JSON bytes, or None when there is no such product."""
    product = await get_product(db, product_id)
    return None if product is None else _encoder.encode(product)


async def page_json(db: Database, limit: int, after: int) -> bytes:
    """One page of the catalog (keyset pagination on id) as JSON bytes."""
    rows = await db.fetch_all(
        f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id > ? ORDER BY id LIMIT ?",
        (after, limit + 1),
    )
    items = [to_product(r) for r in rows[:limit]]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit and items else None
    return _encoder.encode(ProductPage(items=items, next_cursor=next_cursor))


async def create_product(tx: Transaction, data: ProductIn) -> Product:
    now = time.time()
    row = await tx.fetch_one(
        "INSERT INTO products (name, description, price_cents, stock, created_at, updated_at) "
        f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {PRODUCT_COLUMNS}",
        (data.name, data.description, data.price_cents, data.stock, now, now),
    )
    assert row is not None
    return to_product(row)


async def update_product(
    tx: Transaction, product_id: int, changes: dict[str, Any]
) -> Product | None:
    if not changes:
        return await get_product(tx, product_id)
    # Column names come from ProductPatch's fields, never from the client.
    assignments = ", ".join(f"{column} = ?" for column in changes)
    row = await tx.fetch_one(
        f"UPDATE products SET {assignments}, updated_at = ? "
        f"WHERE id = ? RETURNING {PRODUCT_COLUMNS}",
        (*changes.values(), time.time(), product_id),
    )
    return None if row is None else to_product(row)


async def delete_product(tx: Transaction, product_id: int) -> bool:
    return await tx.execute("DELETE FROM products WHERE id = ?", (product_id,)) > 0


async def count_products(db: Database) -> int:
    return int(await db.fetch_val("SELECT COUNT(*) FROM products") or 0)


_ADJECTIVES = [
    "Amber",
    "Brisk",
    "Cedar",
    "Dusky",
    "Ember",
    "Frost",
    "Golden",
    "Harbor",
    "Ivory",
    "Juniper",
]
_NOUNS = [
    "Kettle",
    "Lantern",
    "Mug",
    "Notebook",
    "Pillow",
    "Quilt",
    "Rucksack",
    "Scarf",
    "Teapot",
    "Umbrella",
]


def demo_products(count: int = 100, seed: int = 7) -> list[ProductIn]:
    """A deterministic demo catalog: the same ``count`` products on every machine."""
    rng = random.Random(seed)
    products = []
    for i in range(count):
        adjective = _ADJECTIVES[i % len(_ADJECTIVES)]
        noun = _NOUNS[(i // len(_ADJECTIVES)) % len(_NOUNS)]
        products.append(
            ProductIn(
                name=f"{adjective} {noun}" + (f" No. {i // 100 + 1}" if i >= 100 else ""),
                description=f"A {adjective.lower()} {noun.lower()}, made to last.",
                price_cents=rng.randrange(500, 20000, 5),
                stock=rng.randrange(0, 200),
            )
        )
    return products


async def seed_demo(db: Database, *, only_if_empty: bool = False) -> int:
    """Load the demo catalog; returns how many products were added."""
    if only_if_empty and await count_products(db) > 0:
        return 0
    now = time.time()
    rows = [(p.name, p.description, p.price_cents, p.stock, now, now) for p in demo_products()]
    async with db.transaction() as tx:
        await tx.execute_many(
            "INSERT INTO products (name, description, price_cents, stock, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
    return len(rows)
