"""``Patch``: a request body that changes some fields of a record (``PATCH`` routes)."""

from __future__ import annotations

from typing import Any

import msgspec


class Patch(msgspec.Struct, forbid_unknown_fields=True):
    """Fields default to ``msgspec.UNSET``; :meth:`changes` is what the client did send."""

    def changes(self) -> dict[str, Any]:
        return {
            f: getattr(self, f)
            for f in self.__struct_fields__
            if getattr(self, f) is not msgspec.UNSET
        }
