"""The catalog every system is loaded with: the same ~100 products, stock that never runs out."""

from __future__ import annotations

PRODUCTS = 100
# Stock large enough that a bench run's orders never hit "409 not enough stock".
STOCK = 1_000_000_000


def products(count: int = PRODUCTS) -> list[dict[str, object]]:
    return [
        {
            "name": f"Product {i:03d}",
            "description": f"A sturdy thing, number {i}, that the benchmark sells over and over.",
            "price_cents": 199 + 100 * (i % 37),
            "stock": STOCK,
        }
        for i in range(1, count + 1)
    ]
