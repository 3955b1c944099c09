"""Uploaded files: the :class:`MediaStorage` interface, its backends, and image checks.

Importing this package touches no file; :func:`open_media` builds the storage (no I/O) and the
app's lifespan starts it.
"""

from __future__ import annotations

from pathlib import Path

from monolith.media.base import (
    CONTENT_TYPES,
    MediaError,
    MediaNotFound,
    MediaStorage,
    MediaTooLarge,
    MediaUnavailable,
    UnsupportedMedia,
    check_key,
    content_type,
    new_key,
)
from monolith.media.images import MAX_IMAGE_BYTES, check_image, sniff_image
from monolith.media.local import LocalMediaStorage

__all__ = [
    "CONTENT_TYPES",
    "MAX_IMAGE_BYTES",
    "MediaError",
    "MediaNotFound",
    "MediaStorage",
    "MediaTooLarge",
    "MediaUnavailable",
    "UnsupportedMedia",
    "check_image",
    "check_key",
    "content_type",
    "new_key",
    "open_media",
    "sniff_image",
]


def open_media(media_dir: Path) -> MediaStorage:
    """The storage for uploads: the local directory (``Settings.media_dir``)."""
    return LocalMediaStorage(media_dir)
