"""The peer's web app: FastAPI routes over SQLAlchemy, the ``@cached`` decorator and arq.

Run as the articles say: ``uvicorn bench.peers.seed.app:app --workers 2``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bench.peers.seed import settings
from bench.peers.seed.cache import cache, cached, key_for
from bench.peers.seed.models import Order, OrderItem, Product, SessionLocal, engine

logging.basicConfig(level=logging.INFO)
logger = logging.getLogger(__name__)

CACHE_HEADERS = {"Cache-Control": "public, max-age=60"}
state: dict[str, ArqRedis] = {}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    state["arq"] = await create_pool(
        RedisSettings.from_dsn(settings.REDIS_URL), default_queue_name=settings.QUEUE
    )
    yield
    await state["arq"].aclose()
    await cache.aclose()
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


async def get_db() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


Db = Annotated[AsyncSession, Depends(get_db)]


async def current_user(request: Request) -> int:
    """Sessions live in Redis: the checklist's fix for "sticky session assumptions"."""
    token = request.cookies.get("session")
    raw = await cache.get(f"{settings.PREFIX}:session:{token}") if token else None
    if raw is None:
        raise HTTPException(status_code=401, detail="sign in first")
    return int(json.loads(raw)["user_id"])


def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
    if not settings.ADMIN_TOKEN or authorization != f"Bearer {settings.ADMIN_TOKEN}":
        raise HTTPException(status_code=403, detail="admin only")


class ItemIn(BaseModel):
    product_id: int
    quantity: int = Field(gt=0, le=1000)


class OrderIn(BaseModel):
    items: list[ItemIn] = Field(min_length=1, max_length=50)


class ProductIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    price_cents: int = Field(ge=0)
    stock: int = Field(ge=0, default=0)


@app.get("/health/ready")
async def ready() -> dict[str, str]:
    return {"status": "ok"}


@cached("catalog", ttl=60)
async def fetch_catalog(limit: int) -> list[dict[str, Any]]:
    async with SessionLocal() as session:
        rows = await session.scalars(select(Product).order_by(Product.id).limit(limit))
        return [p.to_dict() for p in rows]


@app.get("/api/products")
async def list_products(limit: int = 20) -> JSONResponse:
    items = await fetch_catalog(min(max(limit, 1), 100))
    return JSONResponse({"items": items, "next_cursor": None}, headers=CACHE_HEADERS)


async def load_product(product_id: int) -> dict[str, Any] | None:
    async with SessionLocal() as session:
        product = await session.get(Product, product_id)
        return product.to_dict() if product else None


cached_product = cached("product", ttl=300)(load_product)


@app.get("/api/products/{product_id}")
async def get_product(product_id: int) -> JSONResponse:
    fetch = cached_product if settings.CACHE_PRODUCTS else load_product
    product = await fetch(product_id)
    if product is None:
        raise HTTPException(status_code=404, detail="no such product")
    return JSONResponse(product)


@app.post("/api/products", status_code=201, dependencies=[Depends(require_admin)])
async def create_product(body: ProductIn, db: Db) -> JSONResponse:
    now = time.time()
    product = Product(**body.model_dump(), created_at=now, updated_at=now)
    async with db.begin():
        db.add(product)
    await cache.delete(key_for("catalog", 20))
    return JSONResponse(product.to_dict(), status_code=201)


def order_dict(order: Order, items: list[OrderItem]) -> dict[str, Any]:
    return {
        "id": order.id,
        "status": order.status,
        "total_cents": order.total_cents,
        "items": [
            {
                "product_id": i.product_id,
                "product_name": i.product_name,
                "quantity": i.quantity,
                "unit_price_cents": i.unit_price_cents,
            }
            for i in items
        ],
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "confirmed_at": order.confirmed_at,
    }


@app.post("/api/orders", status_code=201)
async def create_order(body: OrderIn, db: Db, user_id: int = Depends(current_user)) -> JSONResponse:
    wanted: dict[int, int] = {}
    for item in body.items:
        wanted[item.product_id] = wanted.get(item.product_id, 0) + item.quantity
    now = time.time()
    async with db.begin():
        # Row locks in id order so two orders for the same products never deadlock.
        query = select(Product).where(Product.id.in_(wanted)).order_by(Product.id)
        products = list(await db.scalars(query.with_for_update()))
        if len(products) != len(wanted):
            raise HTTPException(status_code=422, detail="items: no such product")
        for p in products:
            if p.stock < wanted[p.id]:
                raise HTTPException(status_code=409, detail=f"not enough stock of {p.id}")
            p.stock -= wanted[p.id]
            p.updated_at = now
        total = sum(p.price_cents * wanted[p.id] for p in products)
        order = Order(
            user_id=user_id, status="pending", total_cents=total, created_at=now, updated_at=now
        )
        db.add(order)
        await db.flush()
        items = [
            OrderItem(
                order_id=order.id,
                product_id=p.id,
                product_name=p.name,
                quantity=wanted[p.id],
                unit_price_cents=p.price_cents,
            )
            for p in products
        ]
        db.add_all(items)
    # After the commit, as arq jobs are not part of the database transaction.
    await state["arq"].enqueue_job("confirm_order", order.id, _job_id=settings.job_id())
    await cache.delete(*(key_for("product", pid) for pid in wanted))
    return JSONResponse(order_dict(order, items), status_code=201)


@app.get("/api/orders/{order_id}")
async def get_order(order_id: int, db: Db, user_id: int = Depends(current_user)) -> JSONResponse:
    order = await db.get(Order, order_id)
    if order is None or order.user_id != user_id:
        raise HTTPException(status_code=404, detail="no such order")
    items = list(await db.scalars(select(OrderItem).where(OrderItem.order_id == order_id)))
    return JSONResponse(order_dict(order, items))
