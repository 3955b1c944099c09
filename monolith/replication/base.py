"""The :class:`Replica` interface: where Litestream keeps the database's copy off the box.

A replica is a place (a directory, an S3 prefix) that Litestream writes snapshots and WAL
segments to and restores from. A backend says how Litestream's configuration names it and
describes it for logs and ``doctor``; it never runs Litestream and never touches the database.
This module must never import a backend.
"""

from __future__ import annotations

import abc
from typing import ClassVar

from monolith.errors import MonolithError
from monolith.state import Scope

#: A value in Litestream's YAML configuration.
ConfigValue = str | bool | int


class ReplicationError(MonolithError):
    """Replication, a restore from the replica or the standby failed; the message says why."""


class Replica(abc.ABC):
    """One replica location."""

    #: ``"file"`` or ``"s3"``: Litestream's replica type.
    kind: ClassVar[str]

    @property
    @abc.abstractmethod
    def scope(self) -> Scope:
        """``"box"`` when losing this box loses the replica too, else ``"shared"``."""

    @abc.abstractmethod
    def describe(self) -> str:
        """A one-line description without secrets."""

    @abc.abstractmethod
    def litestream_fields(self) -> dict[str, ConfigValue]:
        """The replica's entry in Litestream's configuration (``type``, ``path``, ...)."""
