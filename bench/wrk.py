"""Running ``wrk``: request pools, saturation and paced runs, and reading its results.

wrk (the Debian package) is the load generator because it is a small C program that keeps up
with any Python server on one core, and its Lua hooks give POST bodies, request mixes and a
machine-readable summary. Debian has no wrk2, so fixed-rate runs pace each connection with
wrk's ``delay()`` hook (``lua/pace.lua``). That is a closed loop: a stalled response delays the
next request of its connection, so stalls are under-counted (coordinated omission). At half
of the measured maximum, stalls are rare and the percentiles are a fair picture.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

LUA_DIR = Path(__file__).parent / "lua"
POOL_SIZE = 1000


class WrkFailed(RuntimeError):
    pass


def ensure_wrk() -> str:
    """The path of ``wrk``, installing the Debian package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    if not shutil.which("apt-get"):
        raise WrkFailed("wrk is not installed and apt-get is not available: install wrk")
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    print("bench: installing wrk (apt-get install wrk)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    found = shutil.which("wrk")
    if not found:
        raise WrkFailed("apt-get install wrk did not provide a wrk binary")
    return found


@dataclass(frozen=True)
class Request:
    """A request template: ``{pid}`` in path or body becomes a random product id."""

    method: str
    path: str
    body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


def write_pool(
    path: Path, mix: Sequence[tuple[float, Request]], products: int, seed: int = 7
) -> None:
    """Write ``POOL_SIZE`` concrete requests, each template in proportion to its weight."""
    rng = random.Random(seed)
    total = sum(weight for weight, _ in mix)
    lines: list[str] = []
    for weight, req in mix:
        for _ in range(round(POOL_SIZE * weight / total)):
            pid = str(rng.randint(1, products))
            body = req.body.replace("{pid}", pid) if req.body else "-"
            headers = dict(req.headers)
            if req.body:
                headers.setdefault("Content-Type", "application/json")
            fields = [req.method, req.path.replace("{pid}", pid), body]
            fields += [f"{k}: {v}" for k, v in headers.items()]
            lines.append("\t".join(fields))
    rng.shuffle(lines)
    path.write_text("\n".join(lines) + "\n")


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    errors: dict[str, int]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def parse(stdout: str) -> WrkResult:
    """The JSON line ``case.lua``'s ``done()`` prints."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            raw = json.loads(line)
            break
    else:
        raise WrkFailed(f"wrk printed no summary:\n{stdout[-2000:]}")
    seconds = raw["duration_us"] / 1e6
    return WrkResult(
        requests=raw["requests"],
        seconds=round(seconds, 3),
        rps=round(raw["requests"] / seconds, 1) if seconds else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        p999_ms=raw["p999_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors={k: raw[k] for k in ("connect", "read", "write", "status", "timeout")},
    )


def pacing(rate: float) -> tuple[int, float]:
    """Connections and per-connection mean delay (ms) to send ``rate`` requests per second.

    About ten milliseconds between requests on each connection keeps wrk's millisecond timer
    resolution small against the delay, and the connection count modest.
    """
    connections = max(2, min(128, round(rate / 100)))
    return connections, connections * 1000 / rate


def run(
    wrk: str,
    url: str,
    pool: Path,
    seconds: float,
    connections: int,
    *,
    rate: float | None = None,
    workdir: Path,
    timeout_s: int = 5,
) -> WrkResult:
    """One wrk run against ``url``: saturating with ``connections``, or paced at ``rate``."""
    script = LUA_DIR / "case.lua"
    args = [f"spec={pool}"]
    if rate is not None:
        connections, delay_ms = pacing(rate)
        script = workdir / "paced.lua"
        script.write_text((LUA_DIR / "case.lua").read_text() + (LUA_DIR / "pace.lua").read_text())
        args.append(f"delay={delay_ms:.3f}")
    cmd = [
        wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_s}s", "-s", str(script), url, "--", *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise WrkFailed(f"wrk exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return parse(proc.stdout)
