"""A real S3-protocol server for tests: moto's standalone server on a free loopback port.

``s3_server`` (a session fixture, also importable for other test modules) starts
``ThreadedMotoServer`` once per test session; each test makes its own bucket
(:meth:`S3Server.bucket`), so tests never see each other's objects. Clients in other processes
(Litestream, the app) reach it at :attr:`S3Server.endpoint` with the credentials of
:meth:`S3Server.env` (moto accepts any).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.services import free_port

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint: str

    def env(self) -> dict[str, str]:
        """The environment a client process needs (credentials; no AWS config files)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def client(self) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def bucket(self, prefix: str = "test") -> str:
        """A new, empty bucket."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2")  # type: ignore[attr-defined]
        return [
            item["Key"]
            for page in pages.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]

    def url(self, bucket: str, path: str) -> str:
        """An ``s3://`` URL for monolith's settings pointing at this server."""
        return f"s3://{bucket}/{path}?endpoint={self.endpoint}&region={REGION}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()
