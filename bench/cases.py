"""The benchmark's cases: what load each one puts on a system, and the targets it must reach.

Every HTTP case is a weighted mix of request templates (``bench.wrk.Request``); placeholders
``{cookie}``, ``{admin}`` and ``{oid}`` are filled from the started system's params, ``{pid}``
with a random product id. The ceiling and Litestar hello answer the same routes with a
constant, so the same pool measures them and ratios compare like with like.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.wrk import Request

CATALOG = Request("GET", "/api/products?limit=20")
PRODUCT = Request("GET", "/api/products/{pid}")
ORDER_READ = Request("GET", "/api/orders/{oid}", headers={"Cookie": "{cookie}"})
ORDER = Request(
    "POST", "/api/orders", '{"items":[{"product_id":{pid},"quantity":1}]}', {"Cookie": "{cookie}"}
)
# The write case until orders exist on the monolith side: catalog writes with the admin token.
PRODUCT_CREATE = Request(
    "POST",
    "/api/products",
    '{"name":"Bench product {pid}","description":"","price_cents":100,"stock":1}',
    {"Authorization": "{admin}"},
)

ALL = ("ceiling", "hello", "monolith", "seed")


@dataclass(frozen=True)
class Targets:
    vs_hello: float | None = None  # monolith req/s at least this fraction of Litestar hello
    vs_seed: float | None = None  # ... at least this multiple of the seed stack
    min_rate: float | None = None  # jobs/s (or req/s) at least this
    paced_p99_ms: float | None = None  # p99 at half of the maximum, at most this


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    variant: str = "default"
    mix: tuple[tuple[float, Request], ...] = ()
    systems: tuple[str, ...] = ALL
    #: The case whose seed-stack numbers are this one's baseline, when the seed stack does
    #: not run it (SQLite's synchronous=FULL has no PostgreSQL counterpart to restart into).
    seed_baseline: str | None = None
    #: A monolith case this one is compared with (the same load without one thing added):
    #: the report shows this case's rate and p99 as a ratio of that one's.
    monolith_baseline: str | None = None
    targets: Targets = field(default_factory=Targets)

    @property
    def is_jobs(self) -> bool:
        return not self.mix


def build(write: Request = ORDER) -> list[Case]:
    """The cases, with ``write`` as the write request (orders, or product creation before).

    The mix always writes orders: its uncached read is the user's own order.
    """
    what = "POST /api/orders" if write is ORDER else "POST /api/products (admin)"
    return [
        Case(
            "catalog",
            "cached catalog GET /api/products?limit=20",
            mix=((1, CATALOG),),
            targets=Targets(vs_hello=0.6, vs_seed=2.5, paced_p99_ms=10),
        ),
        Case(
            "product",
            "product by id, cache off (a database read each)",
            variant="cache_off",
            mix=((1, PRODUCT),),
            targets=Targets(vs_hello=0.4, vs_seed=3),
        ),
        Case(
            "write",
            f"{what}, synchronous=NORMAL",
            mix=((1, write),),
            targets=Targets(vs_seed=2),
        ),
        Case(
            "write_full",
            f"{what}, synchronous=FULL",
            variant="sync_full",
            mix=((1, write),),
            systems=("monolith",),
            seed_baseline="write",
            targets=Targets(vs_seed=1),
        ),
        Case(
            "write_replicated",
            f"{what}, synchronous=NORMAL, monolith replicate (Litestream) running",
            variant="replicated",
            mix=((1, write),),
            systems=("monolith",),
            seed_baseline="write",
            monolith_baseline="write",
        ),
        Case(
            "jobs",
            "no-op jobs, enqueue to completion (jobs/s)",
            systems=("monolith", "seed"),
            targets=Targets(vs_seed=2, min_rate=5000),
        ),
        Case(
            "mix",
            "mix: 80% cached catalog, 15% own order read, 5% orders",
            mix=((80, CATALOG), (15, ORDER_READ), (5, ORDER)),
        ),
    ]


def fill(req: Request, params: dict[str, str]) -> Request:
    """``req`` with the system's ``{cookie}``/``{admin}``/``{oid}`` filled in."""

    def sub(text: str) -> str:
        for key, value in params.items():
            text = text.replace("{" + key + "}", value)
        return text

    return Request(
        req.method,
        sub(req.path),
        sub(req.body) if req.body else None,
        {k: sub(v) for k, v in req.headers.items()},
    )
