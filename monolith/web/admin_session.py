"""The ``/admin`` page's sign-in with the admin token: a signed, expiring cookie.

The token is typed once into the sign-in form; the browser then holds a cookie that says
"admin until T", signed with the secret key over T and a digest of the admin token (so a new
token, or a new secret key, signs everyone out). The cookie is HttpOnly, SameSite=Strict,
Secure in production, and never contains the token.

It is the alternative to signing in with an admin account (whose session cookie
:mod:`monolith.sessions` issues). Changes made with either cookie also need the CSRF header
(:mod:`monolith.web.guards`).
"""

from __future__ import annotations

import hashlib
import hmac
import time

from monolith.config import Settings

COOKIE = "monolith_admin"
MAX_AGE = 12 * 3600


def _signature(settings: Settings, expires: int) -> str:
    token = settings.security.admin_token or ""
    message = f"admin:{expires}:{hashlib.sha256(token.encode()).hexdigest()}".encode()
    return hmac.new(settings.security.secret_key.encode(), message, hashlib.sha256).hexdigest()


def issue(settings: Settings, now: float | None = None) -> str:
    expires = int((time.time() if now is None else now) + MAX_AGE)
    return f"{expires}.{_signature(settings, expires)}"


def valid(settings: Settings, value: str | None, now: float | None = None) -> bool:
    if not value or not settings.security.admin_token:
        return False
    expires_text, _, signature = value.partition(".")
    if not expires_text.isdigit() or int(expires_text) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature, _signature(settings, int(expires_text)))


def set_cookie(settings: Settings, value: str, *, max_age: int = MAX_AGE) -> str:
    """A ``Set-Cookie`` header value."""
    secure = "; Secure" if settings.production else ""
    return f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"


def clear_cookie(settings: Settings) -> str:
    return set_cookie(settings, "", max_age=0)
