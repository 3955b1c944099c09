"""The dev loop: Ctrl+C stops ``monolith serve`` with one line and exit 0 (no worker
reported as crashed, none respawned), a start logs no blocked-loop warning, and ``--reload``
restarts the workers when a file changes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.profile import DEFAULT_BACKENDS
from tests.server import base_env, monolith_cmd
from tests.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.profile_independent]


def wait_ready(url: str, proc: subprocess.Popen[str], deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert proc.poll() is None, "serve exited"
        try:
            if httpx.get(f"{url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail("serve never became ready")


def test_ctrl_c_is_one_quiet_line_and_exit_0(tmp_path: Path) -> None:
    port = free_port()
    env = base_env(tmp_path / "var", **DEFAULT_BACKENDS) | {"MONOLITH_LOG_FORMAT": "console"}
    proc = subprocess.Popen(
        monolith_cmd("serve", "--port", str(port), "--workers", "2"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as at a terminal
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        time.sleep(1.5)  # past the loop monitor's block threshold, had start-up been counted
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl+C does
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err
    everything = out + err
    for noise in ("Unexpected exit", "Respawning", "Traceback", "event loop blocked"):
        assert noise not in everything, everything[-3000:]
    assert err.strip().splitlines()[-1:] == ["monolith serve: stopping (Ctrl+C)"], err[-2000:]


def test_reload_restarts_the_workers_when_a_file_changes(tmp_path: Path) -> None:
    port = free_port()
    env = base_env(tmp_path / "var", **DEFAULT_BACKENDS)
    watched = tmp_path / "src"
    watched.mkdir()
    proc = subprocess.Popen(
        monolith_cmd("serve", "--port", str(port), "--workers", "1", "--reload"),
        env=env,
        cwd=watched,  # granian's reloader watches the current folder
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        first = httpx.get(f"{url}/health/live", timeout=5).headers["x-worker-pid"]
        (watched / "feature.py").write_text("CHANGED = True\n")
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the worker was not restarted"
            try:
                pid = httpx.get(f"{url}/health/live", timeout=5).headers["x-worker-pid"]
                if pid != first:
                    break
            except httpx.HTTPError:
                pass  # between the old worker and the new one
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out
