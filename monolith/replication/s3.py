"""A replica in S3-compatible storage (``s3://BUCKET/PATH?endpoint=URL&region=R``).

Litestream reads the credentials itself from ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` in its environment; they never go into its configuration file.
"""

from __future__ import annotations

from monolith.replication.base import ConfigValue, Replica
from monolith.s3url import S3Location
from monolith.state import Scope


class S3Replica(Replica):
    kind = "s3"

    def __init__(self, location: S3Location) -> None:
        self.location = location

    @property
    def scope(self) -> Scope:
        return "shared"

    def describe(self) -> str:
        return self.location.describe()

    def litestream_fields(self) -> dict[str, ConfigValue]:
        loc = self.location
        fields: dict[str, ConfigValue] = {
            "type": "s3",
            "bucket": loc.bucket,
            "path": loc.prefix,
            "region": loc.region,
        }
        if loc.endpoint is not None:
            fields["endpoint"] = loc.endpoint
            fields["force-path-style"] = loc.path_style
        if loc.skip_verify:
            fields["skip-verify"] = True
        return fields
