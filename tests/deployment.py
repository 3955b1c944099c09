"""Two ``monolith serve`` instances and one ``monolith worker`` behind real Caddy.

The deployment of docs/SCALING.md, for the tests that check it end to end
(``test_two_instances.py``, ``test_two_instances_s3.py``): one fresh PostgreSQL database named
``name``, a Redis key prefix ``name:`` (both removed when ``stack`` closes), a data dir of
their own for instances ``a`` and ``b`` and for the worker, and Caddy balancing between the
two instances. What the instances share beyond that (cache, channels, media URLs, limits)
comes in ``shared``.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from tests.caddy import Caddy, start_caddy, stop_caddy
from tests.server import ServerProcess, base_env
from tests.services import (
    pg_admin,
    redis_delete_prefix,
    require_binary,
    require_postgres,
    require_redis,
)


@dataclass
class TwoInstances:
    instances: dict[str, ServerProcess]  # "a" and "b"
    worker: ServerProcess
    caddy: Caddy
    envs: dict[str, dict[str, str]]  # "a", "b" and "worker": for running commands there


def start_two_instances(
    stack: ExitStack, root: Path, name: str, shared: dict[str, str], *, workers: int
) -> TwoInstances:
    require_postgres()
    require_redis()
    require_binary("caddy", "caddy")
    pg_admin(f'CREATE DATABASE "{name}"')
    stack.callback(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    stack.callback(redis_delete_prefix, f"{name}:")
    envs = {}
    for role in ("a", "b", "worker"):
        data_dir = root / role / "var"
        data_dir.mkdir(parents=True)
        envs[role] = base_env(data_dir, **shared)
    instances = {
        role: ServerProcess(Path(envs[role]["MONOLITH_DATA_DIR"]), workers=workers, env=envs[role])
        for role in ("a", "b")
    }
    for server in instances.values():  # both start (and migrate) at once
        server.start(wait=False)
        stack.callback(server.stop)
    for server in instances.values():
        server.wait_ready()
    worker = ServerProcess(
        Path(envs["worker"]["MONOLITH_DATA_DIR"]), command=("worker",), env=envs["worker"]
    ).start()
    stack.callback(worker.stop)
    (root / "caddy").mkdir()
    ports = [server.port for server in instances.values()]
    caddy = start_caddy(root / "caddy", ports, instances["a"].data_dir)
    stack.callback(stop_caddy, caddy)
    return TwoInstances(instances, worker, caddy, envs)
