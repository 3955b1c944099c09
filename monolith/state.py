"""Where a component's state lives: the small protocol ``monolith doctor`` reads.

Every component that holds state outliving a request (the database, the key/value store,
pub/sub, file storage, the job queue and its election, metrics) says two things about itself:

- ``scope``: ``"process"`` (only this process sees it), ``"box"`` (every process of this
  machine sees it: a file, a UNIX socket, a lock file) or ``"shared"`` (every machine sees it:
  PostgreSQL, Redis, a network filesystem). A class attribute where the backend decides it
  (``scope = "box"`` on the SQLite database), a property where the instance does.
- ``describe()``: a one-line, password-free description of the backend (``redis://host:6379/0``).

``build_services`` records which component holds which piece of state in ``Services.state``
(``svc.state["cache"] = store``); ``doctor`` looks the pieces up there and judges each scope
against ``MONOLITH_INSTANCES`` and the worker count. Nothing else may branch on a scope.

This module imports nothing from ``monolith`` so that any component can import it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

Scope = Literal["process", "box", "shared"]
SCOPES: tuple[Scope, ...] = ("process", "box", "shared")

#: Filesystems whose files every machine mounting them sees (``/proc/mounts`` type names).
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "9p",
        "fuse.sshfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.rclone",
        "fuse.juicefs",
        "fuse.glusterfs",
    }
)


@runtime_checkable
class HoldsState(Protocol):
    """A component whose state ``doctor`` reports (see the module docstring)."""

    @property
    def scope(self) -> str:
        """``"process"``, ``"box"`` or ``"shared"``."""

    def describe(self) -> str:
        """A safe one-line description of the backend (no password)."""


def filesystem_scope(path: Path, mounts: str | None = None) -> Scope:
    """``"shared"`` when ``path`` sits on a network filesystem, else ``"box"``.

    For storage kept in a plain directory (uploads): on an NFS/CIFS/Ceph mount every instance
    mounting it sees the same files. ``mounts`` is ``/proc/mounts``'s text (read when omitted;
    where there is none, the answer is ``"box"``). The longest mount point containing the
    path decides, as the kernel does.
    """
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return "box"
    target = os.path.realpath(path)
    best, best_type = "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes spaces and tabs in mount points as octal.
        point = fields[1].replace("\\040", " ").replace("\\011", "\t")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fields[2]
    return "shared" if best_type in NETWORK_FILESYSTEMS else "box"


def redact_url(url: str) -> str:
    """``url`` without its password (and query), for ``describe()``: ``redis://host:6379/0``."""
    parts = urlsplit(url)
    if parts.password is None:
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"{parts.username}@{host}", parts.path, "", ""))


def url_namespace(url: str, default: str) -> tuple[str, str]:
    """``redis://host/0?namespace=shop`` -> (``redis://host/0``, ``"shop"``); ``default`` if absent.

    A namespace keeps several deployments (or test runs) apart on one Redis: the store prefixes
    its keys with it, pub/sub its channel names. The driver never sees the parameter.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    namespace = next((v for k, v in query if k == "namespace" and v), default)
    rest = urlencode([(k, v) for k, v in query if k != "namespace"])
    return urlunsplit(parts._replace(query=rest)), namespace
