"""``s3://BUCKET[/PREFIX]?endpoint=URL&region=R``: a place in S3-compatible storage.

One reading of the URL for every setting that takes one (``MONOLITH_REPLICA_URL``, and the
media storage's ``MONOLITH_MEDIA_URL``), so they accept the same parameters and fail with the
same words. Credentials never go in the URL: they come from ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` in the environment (what every S3 client reads).

Parameters:

- ``endpoint``: the server's base URL (``https://s3.fr-par.scw.cloud``, ``http://127.0.0.1:9000``);
  without it, AWS itself. With an endpoint, requests use path-style addressing
  (``endpoint/bucket/key``), which every S3-compatible server understands.
- ``region``: default ``us-east-1``.
- ``skip_verify=true``: do not verify the endpoint's TLS certificate (a self-signed test server).

This module only parses; it never connects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from monolith.errors import ConfigError

#: S3's own rule: 3-63 characters, lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PARAMS = frozenset({"endpoint", "region", "skip_verify"})
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class S3Location:
    """A bucket and a key prefix on an S3-compatible server."""

    bucket: str
    #: Keys go under this prefix (no leading or trailing slash; "" for the bucket's root).
    prefix: str
    #: The server's base URL; None for AWS.
    endpoint: str | None
    region: str
    skip_verify: bool = False

    @property
    def path_style(self) -> bool:
        """Address buckets as ``endpoint/bucket`` (any endpoint) rather than ``bucket.endpoint``."""
        return self.endpoint is not None

    def describe(self) -> str:
        """The URL as an operator wrote it, minus anything secret (there is nothing secret)."""
        where = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        return where + (f" at {self.endpoint}" if self.endpoint else f" (AWS, {self.region})")


def parse_s3_url(url: str, setting: str) -> S3Location:
    """Read ``s3://BUCKET[/PREFIX]?endpoint=URL&region=R[&skip_verify=true]``.

    ``setting`` names the variable in error messages (``MONOLITH_REPLICA_URL``).
    """
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ConfigError(f"{setting}: expected s3://BUCKET/PREFIX, got {url!r}")
    if parts.username or parts.password:
        raise ConfigError(
            f"{setting}: credentials do not go in the URL; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        )
    bucket = parts.hostname or ""
    if not _BUCKET.fullmatch(bucket):
        raise ConfigError(
            f"{setting}: {bucket!r} is not a bucket name (3-63 lowercase letters, digits, "
            "dots and hyphens)"
        )
    prefix = parts.path.strip("/")
    if any(p in ("", ".", "..") for p in prefix.split("/")) and prefix:
        raise ConfigError(f"{setting}: the path {parts.path!r} has an empty or relative part")
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _PARAMS:
            allowed = ", ".join(sorted(_PARAMS))
            raise ConfigError(f"{setting}: unknown parameter {key!r} (allowed: {allowed})")
        params[key] = value
    endpoint = params.get("endpoint") or None
    if endpoint is not None:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.hostname:
            raise ConfigError(
                f"{setting}: endpoint must be an http(s) URL like https://s3.example.com, "
                f"got {endpoint!r}"
            )
        endpoint = endpoint.rstrip("/")
    skip = params.get("skip_verify", "false").lower()
    if skip not in _TRUE | _FALSE:
        raise ConfigError(f"{setting}: skip_verify must be true or false, got {skip!r}")
    return S3Location(
        bucket=bucket,
        prefix=prefix,
        endpoint=endpoint,
        region=params.get("region") or "us-east-1",
        skip_verify=skip in _TRUE,
    )
