"""The shipped systemd units and Caddyfile pass the real tools' checks (systemd-analyze, caddy).

These run the binaries a deploy runs (Debian's ``systemd`` and ``caddy`` packages); a unit with
a typo or a Caddyfile that does not parse fails here, not on the first deploy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monolith.config import Settings, load_settings, read_dotenv
from tests.services import require, require_binary

pytestmark = pytest.mark.profile_independent

ROOT = Path(__file__).resolve().parent.parent
SYSTEMD = ROOT / "systemd"
UNITS = sorted(p.name for p in SYSTEMD.iterdir() if p.suffix in (".service", ".timer"))
SERVICES = [name for name in UNITS if name.endswith(".service")]
#: Where docs/DEPLOY.md installs the app; the units' ExecStart= names this path.
INSTALLED = "/opt/monolith/.venv/bin/monolith"


def unit_lines(name: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every setting of a unit file, repeated keys included."""
    lines: list[tuple[str, str, str]] = []
    section = ""
    for raw in (SYSTEMD / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        lines.append((section, key.strip(), value.strip()))
    return lines


def setting(name: str, key: str) -> list[str]:
    return [value for _, k, value in unit_lines(name) if k == key]


@pytest.fixture(scope="module")
def units_here(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copies of the real unit files whose ExecStart= points at this venv's ``monolith``.

    ``systemd-analyze verify`` refuses a unit whose binary does not exist, and the units name
    the production path (/opt/monolith/.venv/bin/monolith). Only that path is rewritten; every
    other line is checked as shipped.
    """
    here = Path(sys.executable).parent / "monolith"
    assert here.exists(), f"{here} is missing: pip install -e . creates it"
    folder = tmp_path_factory.mktemp("units")
    for name in UNITS:
        text = (SYSTEMD / name).read_text()
        (folder / name).write_text(text.replace(INSTALLED, str(here)))
    return folder


def test_units_start_the_installed_command() -> None:
    assert setting("monolith.service", "ExecStart") == [f"{INSTALLED} serve"]
    assert setting("monolith-worker.service", "ExecStart") == [f"{INSTALLED} worker"]
    assert setting("monolith-backup.service", "ExecStart")[0].startswith(f"{INSTALLED} backup ")
    assert setting("monolith-replicate.service", "ExecStart") == [f"{INSTALLED} replicate"]
    assert setting("monolith-standby.service", "ExecStart") == [f"{INSTALLED} standby"]


def test_every_unit_passes_systemd_analyze_verify(units_here: Path) -> None:
    analyze = require_binary("systemd-analyze", "systemd")
    result = subprocess.run(
        [analyze, "verify", *(str(units_here / name) for name in UNITS)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 on an unknown key and only warns: any output at all is a failure here.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_caddy_drop_in_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze", "systemd")
    require_binary("caddy", "caddy")
    shipped = Path("/lib/systemd/system/caddy.service")
    require("Debian's caddy.service", shipped.exists(), "apt-get install caddy (Debian's package)")
    shutil.copy(shipped, tmp_path / "caddy.service")
    shutil.copytree(SYSTEMD / "caddy.service.d", tmp_path / "caddy.service.d")
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "caddy.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("name", SERVICES)
def test_services_are_hardened_to_an_exposure_of_at_most_2_5(units_here: Path, name: str) -> None:
    analyze = require_binary("systemd-analyze", "systemd")
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(units_here / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout
    assert float(found.group(1)) <= 2.5, result.stdout


def test_stopping_the_web_unit_leaves_granian_time_to_finish_requests() -> None:
    graceful = Settings().server.graceful_timeout
    (timeout,) = setting("monolith.service", "TimeoutStopSec")
    assert int(timeout) > graceful + 1
    # Only the main process gets SIGTERM: `monolith serve` drains, then stops granian in order.
    assert setting("monolith.service", "KillMode") == ["mixed"]
    assert setting("monolith.service", "ExecReload") == ["/bin/kill -HUP $MAINPID"]


def test_the_web_unit_leaves_jobs_to_the_worker_unit() -> None:
    assert "MONOLITH_RUN_JOBS=no" in setting("monolith.service", "Environment")
    assert "monolith-worker.service" in " ".join(setting("monolith.service", "Wants"))
    assert not any("RUN_JOBS" in v for v in setting("monolith-worker.service", "Environment"))


def test_the_web_units_metrics_add_in_the_worker_units() -> None:
    env = dict(v.partition("=")[::2] for v in setting("monolith.service", "Environment"))
    worker = dict(v.partition("=")[::2] for v in setting("monolith-worker.service", "Environment"))
    (runtime,) = setting("monolith-worker.service", "RuntimeDirectory")
    assert env["MONOLITH_METRICS_PEERS"] == worker["MONOLITH_METRICS_DIR"] == f"/run/{runtime}"
    assert env["MONOLITH_METRICS_DIR"] != worker["MONOLITH_METRICS_DIR"]
    # Same user and group: the web unit may read the worker unit's 0750 directory.
    assert setting("monolith.service", "User") == setting("monolith-worker.service", "User")
    for key in ("InaccessiblePaths", "TemporaryFileSystem"):
        assert not any("/run" in v for v in setting("monolith.service", key))


@pytest.mark.parametrize("name", SERVICES)
def test_services_keep_unix_sockets_and_write_only_their_own_dirs(name: str) -> None:
    (families,) = setting(name, "RestrictAddressFamilies")
    assert "AF_UNIX" in families.split()
    assert setting(name, "ProtectSystem") == ["strict"]
    assert setting(name, "StateDirectory") == ["monolith"]
    assert setting(name, "User") == ["monolith"]


def test_the_example_environment_files_are_valid_settings(tmp_path: Path) -> None:
    env = read_dotenv(SYSTEMD / "monolith.env.example")
    env |= {"MONOLITH_ENV": "production", "MONOLITH_DATA_DIR": str(tmp_path)}
    settings = load_settings(env, dotenv=None)
    assert settings.server.trusted_proxies == ("127.0.0.1", "::1")
    assert read_dotenv(SYSTEMD / "caddy.env.example")["MONOLITH_UPSTREAM"] == (
        f"{settings.server.host}:{settings.server.port}"
    )


def caddy(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    binary = require_binary("caddy", "caddy")
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd
    )


def caddy_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment that keeps Caddy's files (certificates, autosave) out of $HOME."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "CADDY_ADMIN": "off",
        "CADDY_ACCESS_LOG": str(tmp_path / "access.log"),
        **extra,
    }


@pytest.mark.caddy
@pytest.mark.parametrize(
    "site",
    [
        pytest.param({}, id="defaults (localhost, tls internal)"),
        pytest.param(read_dotenv(SYSTEMD / "caddy.env.example"), id="a domain with ACME"),
    ],
)
def test_the_caddyfile_passes_caddy_validate(tmp_path: Path, site: dict[str, str]) -> None:
    result = caddy(
        "validate", "--config", str(ROOT / "Caddyfile"), "--adapter", "caddyfile",
        env=caddy_env(tmp_path, **site), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Valid configuration" in result.stdout + result.stderr


@pytest.mark.caddy
def test_the_caddyfile_is_formatted_as_caddy_fmt_writes_it(tmp_path: Path) -> None:
    result = caddy("fmt", str(ROOT / "Caddyfile"), env=caddy_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (ROOT / "Caddyfile").read_text()
