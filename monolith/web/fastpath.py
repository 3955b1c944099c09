"""Cache hits on public GETs without Litestar's route pipeline: per-process copies of responses
that are never served stale.

A route opts in with ``opt=MEMO`` when its answer is a function of its URL and of its
``invalidate-on-write`` cached reads alone (the catalog's pages, a product, a profile: nothing
from the session, no uncached query). The first time such a request is answered 200, this
layer keeps the response's bytes and headers, keyed by the exact path and query string, with
the generation tokens its cached reads used (:func:`monolith.cache.recording`; the tokens are
read *before* the data). A later request for the same URL reads those tokens again (shared
memory on the disk store: well under a microsecond; one ``MGET`` on Redis) and, when none was
bumped, gets the kept bytes at once; otherwise it goes through Litestar as usual, and its
answer is kept in place of the old one. A write bumps the tokens after its commit, so once it
is acknowledged no process serves the old copy: that is the whole staleness argument, and it
holds across workers and instances because the tokens live in the shared store.

What a hit keeps of the full path: the rate limit (the layer outside this one), the request id,
access line and metrics by route template (the request context, outside; the route template
is the one Litestar matched when the copy was made), ``ETag``/``Cache-Control`` and a 304 for
a matching ``If-None-Match`` (computed here from the kept ETag), and the cache-hit counts.
Anything else (another method, a route that did not opt in, a status other than 200, a store
that cannot be read) goes through Litestar untouched.

Measured in-process on a cached catalog page (``python -m bench.profile_app``): the copy with
its token check costs a few microseconds where Litestar's pipeline costs ~100.

Direct reads (:class:`DirectRead`): a public JSON read whose answer is its body bytes alone
(one product by id) may also be served here when no copy is kept, without Litestar: the
route's own read runs, and the answer is built as :func:`monolith.web.conditional.cacheable_json`
builds it (``ETag``, ``Cache-Control``, a 304 for a matching ``If-None-Match``), then kept as a
copy under the tokens the read used. Anything else goes through Litestar, which answers it as
it always does: a query string, a path the route would refuse, no such row (the 404), a read
that fails (its 503). The Litestar route stays the one that documents the API and the one
``tests/test_catalog.py`` compares this answer with, header for header. Measured in-process
on an uncached product (``MONOLITH_CACHE_PRODUCTS=off``): Litestar's pipeline was ~55% of the
request's CPU.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Send

from monolith.cache import Cache, Read, recording, stop_recording
from monolith.errors import StateUnavailable
from monolith.web.conditional import PUBLIC_MAX_AGE, etag_of, matches_etag

#: ``opt=MEMO`` on a route handler: its 200 answers may be kept (see the module docstring).
MEMO = {"memo": True}
#: Copies kept per process; the oldest goes first. Bodies above ``MAX_BODY`` are never kept.
MAX_ENTRIES = 2048
MAX_BODY = 256 * 1024


@dataclass(frozen=True, slots=True)
class DirectRead:
    """A public GET answered without Litestar (module docstring): ``prefix`` + one path
    segment. ``parse`` turns the segment into the read's argument, or None when the route
    would not accept it (Litestar then answers); ``read`` returns the body, or None when
    there is nothing to show (Litestar then answers, with its 404)."""

    template: str
    prefix: str
    parse: Callable[[str], Any]
    read: Callable[[Any], Awaitable[bytes | None]]


def _json_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    # What cacheable_json's Response sends, in Litestar's order.
    return [
        (b"etag", etag_of(body).encode()),
        (b"cache-control", b"public, max-age=%d" % PUBLIC_MAX_AGE),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ]


class _Copy:
    __slots__ = ("etag", "keys", "not_modified", "ok", "prefixes", "template", "tokens")

    def __init__(
        self,
        template: str,
        prefixes: tuple[str, ...],
        keys: tuple[str, ...],
        tokens: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        self.template = template
        self.prefixes = prefixes
        self.keys = keys
        self.tokens = tokens
        self.etag = b""
        kept = []
        for name, value in headers:
            if name == b"etag":
                self.etag = value
            kept.append((name, value))
        self.ok: tuple[Any, Any] = (
            {"type": "http.response.start", "status": 200, "headers": kept},
            {"type": "http.response.body", "body": body, "more_body": False},
        )
        validators = [(n, v) for n, v in kept if n in (b"etag", b"cache-control")]
        self.not_modified: tuple[Any, Any] = (
            {"type": "http.response.start", "status": 304, "headers": validators},
            {"type": "http.response.body", "body": b"", "more_body": False},
        )


class FastPath:
    """The raw ASGI layer in front of Litestar that serves kept copies (module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        cache: Cache,
        *,
        max_entries: int = MAX_ENTRIES,
        direct: tuple[DirectRead, ...] = (),
    ) -> None:
        self.app = app
        self.cache = cache
        self.store = cache.store
        self.max_entries = max_entries
        self.copies: dict[tuple[str, bytes], _Copy] = {}
        self.direct = direct

    # The scope is typed Any on this hot path: Litestar's TypedDict unions cost casts, not time.
    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        key = (scope["path"], scope["query_string"])
        copy = self.copies.get(key)
        if copy is not None:
            try:
                tokens = self.store.tokens_now(copy.keys)
                if tokens is None:
                    tokens = await self.store.tokens(copy.keys)
            except StateUnavailable:
                tokens = None
            if tokens == copy.tokens:
                await self._serve(copy, scope, send)
                return
        if not scope["query_string"]:
            path: str = scope["path"]
            for route in self.direct:
                if path.startswith(route.prefix):
                    if await self._direct(route, key, scope, send):
                        return
                    break
        await self._through(key, scope, receive, send)

    async def _direct(
        self, route: DirectRead, key: tuple[str, bytes], scope: Any, send: Any
    ) -> bool:
        """Answer with the route's own read; False: nothing sent, Litestar answers."""
        segment = scope["path"][len(route.prefix) :]
        if not segment or "/" in segment:
            return False
        arg = route.parse(segment)
        if arg is None:
            return False
        reads: list[Read] = []
        token = recording(reads)
        try:
            body = await route.read(arg)
        except Exception:  # Litestar reads it again and answers the failure in its own shape
            return False
        finally:
            stop_recording(token)
        if body is None:
            return False
        scope["path_template"] = route.template
        copy = self._keep(key, route.template, reads, _json_headers(body), body)
        await self._send(copy, scope, send)  # the read counted its own cache hit or miss
        return True

    async def _serve(self, copy: _Copy, scope: Any, send: Any) -> None:
        scope["path_template"] = copy.template
        for prefix in copy.prefixes:
            self.cache.count_hit(prefix)
        await self._send(copy, scope, send)

    @staticmethod
    async def _send(copy: _Copy, scope: Any, send: Any) -> None:
        """The copy's 200, or its 304 for a matching ``If-None-Match``."""
        start, body = copy.ok
        if copy.etag:
            for name, value in scope["headers"]:
                if name == b"if-none-match":
                    if matches_etag(value.decode("latin-1"), copy.etag.decode("latin-1")):
                        start, body = copy.not_modified
                    break
        # Outer layers give a message a new list of headers (never add to the kept one), but
        # they may set its "headers": each request gets its own message.
        await send({**start})
        await send(body)

    async def _through(
        self, key: tuple[str, bytes], scope: Any, receive: Receive, send: Send
    ) -> None:
        reads: list[Read] = []
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []
        size = 0

        async def capture(message: Message) -> None:
            nonlocal status, headers, size
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
            elif message["type"] == "http.response.body" and status == 200:
                body = message.get("body", b"")
                size += len(body)
                if size <= MAX_BODY:
                    chunks.append(body)
            await send(message)

        token = recording(reads)
        try:
            await self.app(scope, receive, capture)
        finally:
            stop_recording(token)
        if status != 200 or not reads or size > MAX_BODY:
            return
        handler: Any = scope.get("route_handler")
        if handler is None or not handler.opt.get("memo"):
            return
        if any(name == b"set-cookie" for name, _ in headers):
            return
        template = str(scope.get("path_template") or scope["path"])
        self._keep(key, template, reads, headers, b"".join(chunks))

    def _keep(
        self,
        key: tuple[str, bytes],
        template: str,
        reads: list[Read],
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> _Copy:
        """A copy of a 200, kept under the tokens its reads used (kept only when every read
        was under tokens and the body is not too large)."""
        copy = _Copy(
            template,
            tuple(dict.fromkeys(prefix for prefix, _, _ in reads)),
            tuple(k for _, keys, _ in reads for k in keys),
            b"".join(tokens for _, _, tokens in reads),
            headers,
            body,
        )
        if not reads or len(body) > MAX_BODY:
            return copy
        if any(not keys for _, keys, _ in reads):  # a read that was not under tokens
            return copy
        copies = self.copies
        if key not in copies and len(copies) >= self.max_entries:
            del copies[next(iter(copies))]
        copies[key] = copy
        return copy
