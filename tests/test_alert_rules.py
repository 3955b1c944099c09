"""The shipped Prometheus files: valid rules, a valid scrape config, and alerts that fire when
the monitoring kit says they should (promtool's rule unit tests, ``alerts.test.yml``: error
rate > 1% for 5 min, p95 > 1 s for 5 min, queue depth growing for 10 min, a restart loop)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.services import require_binary

pytestmark = pytest.mark.profile_independent

PROMETHEUS_DIR = Path(__file__).resolve().parent.parent / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool", "prometheus")
    return subprocess.run(
        [binary, *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("check", "rules", "alerts.yml"),
        ("check", "config", "prometheus.yml"),
        ("test", "rules", "alerts.test.yml"),
    ],
    ids=["check-rules", "check-config", "rule-unit-tests"],
)
def test_promtool_accepts(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
