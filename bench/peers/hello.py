"""Plain Litestar "hello": the benchmark's routes, each returning a constant.

What the framework costs (routing, path parameters, serialization of a small dict) without
any of the app's work. ``monolith`` is measured as a fraction of this.
"""

from __future__ import annotations

from litestar import Litestar, get, post

HELLO = {"hello": "world"}


@get("/api/products", sync_to_thread=False)
def catalog() -> dict[str, str]:
    return HELLO


@get("/api/products/{product_id:int}", sync_to_thread=False)
def product(product_id: int) -> dict[str, str]:
    return HELLO


@get("/api/orders/{order_id:int}", sync_to_thread=False)
def order(order_id: int) -> dict[str, str]:
    return HELLO


@post("/api/orders", sync_to_thread=False)
def create_order() -> dict[str, str]:
    return HELLO


@post("/api/products", sync_to_thread=False)
def create_product() -> dict[str, str]:
    return HELLO


@get("/health/ready", sync_to_thread=False)
def ready() -> dict[str, str]:
    return HELLO


app = Litestar([catalog, product, order, create_order, create_product, ready])
