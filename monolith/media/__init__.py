"""Uploaded files: the :class:`MediaStorage` interface, its backends, and image checks.

Importing this package touches no file; :func:`open_media` builds the storage (no I/O) and the
app's lifespan starts it.
"""

from __future__ import annotations

from pathlib import Path

from monolith.errors import ConfigError
from monolith.media.base import (
    CONTENT_TYPES,
    MediaError,
    MediaFile,
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
from monolith.s3url import parse_s3_url

__all__ = [
    "CONTENT_TYPES",
    "MAX_IMAGE_BYTES",
    "MediaError",
    "MediaFile",
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


def open_media(media_dir: Path, url: str = "") -> MediaStorage:
    """The storage for uploads named by ``url`` (``MONOLITH_MEDIA_URL``); no I/O.

    - empty: the local directory ``media_dir`` (``$MONOLITH_DATA_DIR/media``);
    - ``file:///path``: a local directory (a network filesystem mounted there is shared);
    - ``s3://BUCKET[/PREFIX]?endpoint=URL&region=R``: a bucket through the S3 API.
    """
    scheme = url.split(":", 1)[0].lower() if url else ""
    if scheme == "":
        return LocalMediaStorage(media_dir)
    if scheme == "file":
        path = url.split(":", 1)[1]
        if not path.startswith("///"):
            raise ConfigError(f"MONOLITH_MEDIA_URL: expected file:///absolute/path, got {url!r}")
        return LocalMediaStorage(Path(path[2:]))
    if scheme == "s3":
        location = parse_s3_url(url, "MONOLITH_MEDIA_URL")
        try:  # obstore is an optional dependency (monolith[s3])
            from monolith.media.s3 import S3MediaStorage
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError("MONOLITH_MEDIA_URL=s3://... needs obstore") from exc
        return S3MediaStorage(location)
    raise ConfigError(
        f"MONOLITH_MEDIA_URL: unknown scheme {scheme!r}; use file:///path or s3://bucket/prefix"
    )
