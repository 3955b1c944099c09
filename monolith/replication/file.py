"""A replica in a directory (``file:///path``): a mounted network volume or a second disk."""

from __future__ import annotations

from pathlib import Path

from monolith.replication.base import ConfigValue, Replica
from monolith.state import Scope, filesystem_scope


class FileReplica(Replica):
    kind = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def scope(self) -> Scope:
        return filesystem_scope(self.path)

    def describe(self) -> str:
        return f"file://{self.path}"

    def litestream_fields(self) -> dict[str, ConfigValue]:
        return {"type": "file", "path": str(self.path)}
