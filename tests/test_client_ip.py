"""The client IP used for rate limits and logs: X-Forwarded-For is believed only from proxies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monolith.config import load_settings
from monolith.errors import ConfigError
from monolith.web.client_ip import UNKNOWN, check_trusted, client_ip

LOCAL = ("127.0.0.1", "::1")


def scope(peer: str | None, *forwarded: str) -> dict[str, Any]:
    headers = [(b"host", b"shop.example")]
    headers += [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return {
        "type": "http",
        "client": None if peer is None else (peer, 54321),
        "headers": headers,
    }


def test_a_direct_client_is_its_peer_address() -> None:
    assert client_ip(scope("203.0.113.7"), LOCAL) == "203.0.113.7"


def test_a_direct_client_cannot_claim_another_address() -> None:
    assert client_ip(scope("203.0.113.7", "198.51.100.1"), LOCAL) == "203.0.113.7"


def test_behind_the_local_proxy_the_forwarded_address_is_the_client() -> None:
    assert client_ip(scope("127.0.0.1", "203.0.113.7"), LOCAL) == "203.0.113.7"
    assert client_ip(scope("::1", "2001:db8::5"), LOCAL) == "2001:db8::5"


def test_an_address_the_client_prepended_is_ignored() -> None:
    # The client sent "X-Forwarded-For: 10.9.9.9"; Caddy appended the address it saw.
    assert client_ip(scope("127.0.0.1", "10.9.9.9, 203.0.113.7"), LOCAL) == "203.0.113.7"


def test_trusted_hops_are_skipped_from_the_right() -> None:
    trusted = (*LOCAL, "10.0.0.0/8")
    chain = "198.51.100.1, 203.0.113.7, 10.0.0.2, 10.1.2.3"
    assert client_ip(scope("127.0.0.1", chain), trusted) == "203.0.113.7"


def test_several_header_lines_read_as_one_list() -> None:
    trusted = (*LOCAL, "10.0.0.0/8")
    got = client_ip(scope("127.0.0.1", "198.51.100.1, 203.0.113.7", "10.0.0.2"), trusted)
    assert got == "203.0.113.7"


def test_when_every_hop_is_trusted_the_first_one_is_the_client() -> None:
    trusted = (*LOCAL, "10.0.0.0/8")
    assert client_ip(scope("127.0.0.1", "10.0.0.9, 10.0.0.2"), trusted) == "10.0.0.9"


def test_a_trusted_peer_without_the_header_is_the_client() -> None:
    assert client_ip(scope("127.0.0.1"), LOCAL) == "127.0.0.1"


def test_ports_brackets_and_mapped_addresses_are_normalized() -> None:
    assert client_ip(scope("127.0.0.1", "203.0.113.7:4711"), LOCAL) == "203.0.113.7"
    assert client_ip(scope("127.0.0.1", "[2001:db8::5]:443"), LOCAL) == "2001:db8::5"
    assert client_ip(scope("::ffff:127.0.0.1", "203.0.113.7"), LOCAL) == "203.0.113.7"


def test_a_garbled_entry_from_a_trusted_hop_is_returned_not_raised() -> None:
    assert client_ip(scope("127.0.0.1", "unknown"), LOCAL) == "unknown"
    assert client_ip(scope("127.0.0.1", "x" * 500), LOCAL) == "x" * 64


def test_trusting_nobody_ignores_the_header() -> None:
    assert client_ip(scope("127.0.0.1", "203.0.113.7"), ()) == "127.0.0.1"


def test_a_unix_socket_peer_is_trusted_only_when_configured() -> None:
    assert client_ip(scope(None, "203.0.113.7"), LOCAL) == UNKNOWN
    assert client_ip(scope(None, "203.0.113.7"), (*LOCAL, "unix")) == "203.0.113.7"
    assert client_ip(scope("", "203.0.113.7"), (*LOCAL, "unix")) == "203.0.113.7"


def test_a_bad_trusted_entry_is_a_configuration_error() -> None:
    check_trusted(["127.0.0.1", "10.0.0.0/8", "unix", "::1"])
    with pytest.raises(ValueError, match="not-an-ip"):
        check_trusted(["not-an-ip"])


def test_a_bad_trusted_proxies_setting_stops_the_start(tmp_path: Path) -> None:
    env = {"MONOLITH_DATA_DIR": str(tmp_path), "MONOLITH_TRUSTED_PROXIES": "127.0.0.1,caddy"}
    with pytest.raises(ConfigError, match=r"MONOLITH_TRUSTED_PROXIES: .*caddy"):
        load_settings(env, dotenv=None)
    env["MONOLITH_TRUSTED_PROXIES"] = "127.0.0.1, 10.0.0.0/8,unix"
    proxies = load_settings(env, dotenv=None).server.trusted_proxies
    assert proxies == ("127.0.0.1", "10.0.0.0/8", "unix")
