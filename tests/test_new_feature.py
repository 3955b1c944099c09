"""``monolith new feature notes`` in a copy of the repository: the generated feature is wired
in, and its tests (both databases, two workers), the layer rule, ruff and mypy pass there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.profile_independent]

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}  # the copy's monolith, not this one
    env = {k: v for k, v in env.items() if not k.startswith("MONOLITH_")} | {
        k: v for k, v in os.environ.items() if k.startswith("MONOLITH_TEST")
    }
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_a_generated_feature_passes_its_tests_lint_and_types(tmp_path: Path) -> None:
    # notes, as the guide says; in a repository that already has notes (one this test was
    # run in), the next free name.
    name = next(n for n in ("notes", "memos", "tips") if not (REPO / "monolith/shop" / n).exists())
    copy = tmp_path / "repo"
    # The copy keeps mypy's cache (when there is one): only what the generator wrote is checked
    # anew, not the whole package.
    shutil.copytree(
        REPO,
        copy,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            ".venv-peers",
            "var",
            "test-output",
            "__pycache__",
            ".ruff_cache",
            ".pytest_cache",
        ),
    )
    made = run([sys.executable, "-m", "monolith", "new", "feature", name], copy)
    assert made.returncode == 0, made.stderr
    assert (copy / f"monolith/shop/{name}/routes.py").is_file()
    assert (copy / f"tests/test_{name}.py").is_file()
    features = (copy / "monolith/features.py").read_text()
    assert f"from monolith.shop.{name} import routes as {name}" in features
    assert f"*{name}.routes(svc)" in features
    again = run([sys.executable, "-m", "monolith", "new", "feature", name], copy)
    assert again.returncode == 1 and "already exists" in again.stderr

    checks = [
        [str(BIN / "ruff"), "check", "monolith", "tests", "bench"],
        [str(BIN / "ruff"), "format", "--check", "monolith", "tests", "bench"],
        [str(BIN / "mypy")],
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"tests/test_{name}.py",
            "tests/test_layers.py",
            "tests/test_migrations.py::test_one_line_of_versions_in_the_package",
        ],
    ]
    for check in checks:
        result = run(check, copy)
        assert result.returncode == 0, f"{check}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    tested = run([sys.executable, "-m", "pytest", "-q", "--co", f"tests/test_{name}.py"], copy)
    assert "test_a_change_is_seen_by_both_workers" in tested.stdout
