"""The fixed-window limiter on Store.hit_window: exact counts, headers, several processes."""

from __future__ import annotations

import asyncio

import pytest

from monolith.config import RateLimit
from monolith.ratelimit import RateLimiter
from monolith.store import Store
from tests.stores import StoreSpec, in_processes

pytestmark = pytest.mark.profile_independent


async def test_the_limit_admits_exactly_n_then_refuses(store: Store) -> None:
    limiter = RateLimiter(store, "login", RateLimit(3, 60))
    decisions = [await limiter.hit("1.2.3.4") for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0, 0]
    other = await limiter.hit("5.6.7.8")
    assert other.allowed


async def test_headers_say_limit_remaining_reset_and_retry_after(store: Store) -> None:
    limiter = RateLimiter(store, "api", RateLimit(1, 60))
    ok = dict((await limiter.hit("c")).headers())
    assert ok["RateLimit-Limit"] == "1"
    assert ok["RateLimit-Remaining"] == "0"
    assert 1 <= int(ok["RateLimit-Reset"]) <= 60
    assert ok["RateLimit-Policy"] == "1;w=60"
    assert "Retry-After" not in ok
    # Another process (a fresh limiter) learns the window's end from the store.
    refused = dict((await RateLimiter(store, "api", RateLimit(1, 60)).hit("c")).headers())
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused["RateLimit-Reset"] == refused["Retry-After"]


async def test_a_new_window_opens_when_the_old_one_ends(store: Store) -> None:
    limiter = RateLimiter(store, "short", RateLimit(1, 1))
    assert (await limiter.hit("c")).allowed
    assert not (await limiter.hit("c")).allowed
    await asyncio.sleep(1.1)
    assert (await limiter.hit("c")).allowed


async def _hammer(index: int, spec: StoreSpec, hits: int) -> int:
    store = spec.open()
    await store.start()
    try:
        limiter = RateLimiter(store, "login", RateLimit(25, 60))
        decisions = await asyncio.gather(*(limiter.hit("same-client") for _ in range(hits)))
        return sum(d.allowed for d in decisions)
    finally:
        await store.stop()


def test_several_processes_share_one_count(shared_spec: StoreSpec) -> None:
    admitted = in_processes(3, _hammer, shared_spec, 20)
    assert sum(admitted) == 25


def test_named_limits_replace_their_default_only() -> None:
    from monolith.config import load_settings

    limits = load_settings(
        {"MONOLITH_RATE_LIMITS": "api=0/minute,login=3/hour"}, dotenv=None
    ).security.rate_limits
    assert limits["api"] == RateLimit(0, 60)
    assert limits["login"] == RateLimit(3, 3600)
    assert limits["signup"] == RateLimit(5, 60)


async def test_a_hit_counted_without_awaiting_is_in_the_same_window(store: Store) -> None:
    """``hit_now`` (the middleware's first try) counts in the window ``hit`` counts in; on a
    store whose count is a round trip away it counts nothing and says so (None)."""
    limiter = RateLimiter(store, "api", RateLimit(4, 60))
    now = limiter.hit_now("c")
    if store.hit_window_now("probe", 60) is None:
        assert now is None
        assert (await limiter.hit("c")).remaining == 3  # nothing was counted by hit_now
        return
    assert now is not None and now.remaining == 3
    assert (await limiter.hit("c")).remaining == 2
    following = limiter.hit_now("c")
    assert following is not None and following.remaining == 1
    assert (await limiter.hit("c")).remaining == 0
    refused = limiter.hit_now("c")
    assert refused is not None and not refused.allowed
