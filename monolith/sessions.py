"""Server-side sessions in the shared store, so any worker (or box) recognizes any session.

The cookie carries a random token and its HMAC under ``MONOLITH_SECRET_KEY``: a forged or
mangled cookie is refused without touching the store, and changing the key signs everyone
out. The store holds ``sha256(token) -> {"user_id", "created_at"}`` with an absolute lifetime
(no sliding renewal: renewing would make every signed-in read a store write), so a dump of
the store does not hand out usable cookies.

Cookie: ``HttpOnly`` (no script reads it), ``SameSite=Lax`` (no cross-site POST carries it),
``Secure`` in production, ``Path=/``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import msgspec

from monolith.store.base import Store

COOKIE = "monolith_session"
MAX_AGE = 14 * 24 * 3600


class Session(msgspec.Struct):
    user_id: int
    created_at: float


_decoder = msgspec.json.Decoder(Session)


class Sessions:
    def __init__(self, store: Store, secret_key: str, *, secure: bool, max_age: int = MAX_AGE):
        self.store = store
        self.max_age = max_age
        self._key = hashlib.sha256(b"monolith-session\x00" + secret_key.encode()).digest()
        self._attributes = f"Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax" + (
            "; Secure" if secure else ""
        )

    def _sign(self, token: str) -> str:
        mac = hmac.new(self._key, token.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def _token(self, cookie: str) -> str | None:
        token, _, sig = cookie.partition(".")
        if not token or not sig or not hmac.compare_digest(sig, self._sign(token)):
            return None
        return token

    @staticmethod
    def _key_of(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    async def create(self, user_id: int) -> str:
        """A new session for ``user_id``; returns the cookie value."""
        token = secrets.token_urlsafe(32)
        data = msgspec.json.encode(Session(user_id, time.time()))
        await self.store.set(self._key_of(token), data, expires_in=self.max_age)
        return f"{token}.{self._sign(token)}"

    async def load(self, cookie: str | None) -> Session | None:
        """The session a cookie value names, or None (absent, forged, expired, signed out)."""
        token = self._token(cookie) if cookie else None
        if token is None:
            return None
        raw = await self.store.get(self._key_of(token))
        if raw is None:
            return None
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError:
            return None

    async def destroy(self, cookie: str | None) -> None:
        token = self._token(cookie) if cookie else None
        if token is not None:
            await self.store.delete(self._key_of(token))

    def set_cookie(self, value: str) -> str:
        """The ``Set-Cookie`` header value for a new session."""
        return f"{COOKIE}={value}; {self._attributes}"

    def clear_cookie(self) -> str:
        return f"{COOKIE}=; {self._attributes.replace(f'Max-Age={self.max_age}', 'Max-Age=0')}"


def cookie_from_header(header: str) -> str | None:
    """The session cookie's value in a ``Cookie`` request header."""
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name == COOKIE:
            return value
    return None
