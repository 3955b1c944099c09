"""The client's IP address for rate limits and logs; ``X-Forwarded-For`` only from a proxy.

Behind Caddy every connection comes from 127.0.0.1, so the peer address says nothing about the
client; Caddy puts the client's address in ``X-Forwarded-For``. Anyone can send that header
too, so it is read only when the peer is a trusted proxy (``MONOLITH_TRUSTED_PROXIES``, default
``127.0.0.1,::1``), and only from the right: each proxy appends the address it saw, so the
right-most address that is not itself a trusted proxy is the last one a trusted hop vouches
for. Everything left of it was written by the client and is ignored.

Trusted entries are addresses or networks (``10.0.0.0/8``); ``unix`` trusts a peer on a Unix
socket (no address). This module must never raise on a malformed header: a garbled address is
a client's problem, not a 500.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from monolith.config import IPNetwork, check_trusted, trusted_networks

__all__ = ["UNKNOWN", "check_trusted", "client_ip", "scope_client_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: What :func:`client_ip` returns when the server knows nothing about the client.
UNKNOWN = "unknown"


# Every request asks (the access log and the rate limiter each once), mostly for the same few
# peers (Caddy, or the clients of the moment): parsing with ipaddress was ~5% of a cached read.
@lru_cache(maxsize=4096)
def _parse(text: str) -> IPAddress | None:
    """An address from a header entry: ``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:  # IPv4 with a port; bare IPv6 has several colons
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=4096)
def _is_trusted(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in networks)


def _forwarded_for(lines: tuple[bytes, ...]) -> list[str]:
    """Every ``X-Forwarded-For`` entry, left to right, over all the header's lines."""
    entries: list[str] = []
    for value in lines:
        entries.extend(part.strip() for part in value.decode("latin-1").split(","))
    return [entry for entry in entries if entry]


def client_ip(scope: Mapping[str, Any], trusted: Iterable[str]) -> str:
    """The client's address for an ASGI ``scope``; ``trusted`` are the proxies' addresses/networks.

    The peer's own address unless the peer is trusted; then the right-most address in
    ``X-Forwarded-For`` that is not a trusted proxy (the left-most one if they all are).
    An entry that is not an address stops the walk and is returned as written: a trusted proxy
    put it there, so it is the best name for the client there is.

    Answers are memoized by peer, ``X-Forwarded-For`` lines and proxies.
    """
    client = scope.get("client")
    forwarded = tuple(
        value for name, value in scope.get("headers", ()) if name.lower() == b"x-forwarded-for"
    )
    return _client_ip(str(client[0]) if client else "", forwarded, tuple(trusted))


@lru_cache(maxsize=4096)
def _client_ip(peer_text: str, forwarded: tuple[bytes, ...], trusted: tuple[str, ...]) -> str:
    """:func:`client_ip`'s answer for one peer, ``X-Forwarded-For`` and proxies (memoized)."""
    networks, trust_unix = trusted_networks(trusted)
    peer = _parse(peer_text) if peer_text else None
    # No peer address at all means a Unix socket.
    trusted_peer = _is_trusted(peer, networks) if peer is not None else trust_unix and not peer_text
    if not trusted_peer:
        return str(peer) if peer is not None else (peer_text or UNKNOWN)

    best = str(peer) if peer is not None else UNKNOWN
    for entry in reversed(_forwarded_for(forwarded)):
        address = _parse(entry)
        if address is None:
            return entry[:64]
        best = str(address)
        if not _is_trusted(address, networks):
            return best
    return best


#: Where :func:`scope_client_ip` keeps its answer in the scope's ``state``.
CLIENT_STATE = "monolith.client_ip"


def scope_client_ip(scope: Any, trusted: Iterable[str]) -> str:
    """:func:`client_ip`, computed once per request: the rate limiter asks first, the access
    line reuses the answer kept in ``scope["state"]``."""
    state = scope.get("state")
    if state is not None:
        found = state.get(CLIENT_STATE)
        if found is not None:
            return str(found)
    else:
        state = scope["state"] = {}
    found = state[CLIENT_STATE] = client_ip(scope, trusted)
    return found
