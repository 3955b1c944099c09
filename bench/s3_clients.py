"""Which async S3 client for uploads: GET and PUT latency of aiobotocore and obstore against
the same S3-protocol server (moto's standalone server on loopback), with a 100 KB image.

    .venv/bin/python bench/s3_clients.py [--rounds N]

Prints the median and p99 of each operation per client, and the import time (a serve worker
pays it once at start). The numbers and the choice are in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time

import boto3
from moto.server import ThreadedMotoServer

KEY, SECRET, REGION = "bench", "bench-secret", "us-east-1"
DATA = os.urandom(100 * 1024)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def import_ms(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout) * 1000


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"median {statistics.median(ordered) * 1000:6.2f} ms  p99 {p99 * 1000:6.2f} ms"


async def aiobotocore_round(endpoint: str, bucket: str, rounds: int) -> dict[str, list[float]]:
    from aiobotocore.session import get_session

    times: dict[str, list[float]] = {"put": [], "get": []}
    async with get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
    ) as client:
        for i in range(rounds):
            t = time.perf_counter()
            await client.put_object(Bucket=bucket, Key=f"a{i}", Body=DATA)
            times["put"].append(time.perf_counter() - t)
            t = time.perf_counter()
            r = await client.get_object(Bucket=bucket, Key=f"a{i}")
            async with r["Body"] as body:
                assert await body.read() == DATA
            times["get"].append(time.perf_counter() - t)
    return times


async def obstore_round(endpoint: str, bucket: str, rounds: int) -> dict[str, list[float]]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        bucket,
        endpoint=endpoint,
        region=REGION,
        access_key_id=KEY,
        secret_access_key=SECRET,
        client_options={"allow_http": True},
        virtual_hosted_style_request=False,
    )
    times: dict[str, list[float]] = {"put": [], "get": []}
    for i in range(rounds):
        t = time.perf_counter()
        await obstore.put_async(store, f"o{i}", DATA)
        times["put"].append(time.perf_counter() - t)
        t = time.perf_counter()
        got = await obstore.get_async(store, f"o{i}")
        assert bytes(await got.bytes_async()) == DATA
        times["get"].append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=KEY,
            aws_secret_access_key=SECRET,
        ).create_bucket(Bucket="bench")
        for name, run, module in (
            ("aiobotocore", aiobotocore_round, "aiobotocore.session"),
            ("obstore", obstore_round, "obstore.store"),
        ):
            asyncio.run(run(endpoint, "bench", 20))  # warm up
            times = asyncio.run(run(endpoint, "bench", args.rounds))
            print(f"{name:<12} import {import_ms(module):6.1f} ms")
            for op in ("put", "get"):
                print(f"  {op}  {summary(times[op])}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
