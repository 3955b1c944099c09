"""What an uploaded image is, judged by its bytes (magic numbers), never by its name.

A client's file name and declared content type are ignored: a text file renamed ``cat.png``
is not a PNG. Only PNG, JPEG and WebP are accepted, up to :data:`MAX_IMAGE_BYTES`.
"""

from __future__ import annotations

from monolith.media.base import MediaTooLarge, UnsupportedMedia

MAX_IMAGE_BYTES = 5 * 1024 * 1024

_PNG = b"\x89PNG\r\n\x1a\n"


def sniff_image(data: bytes) -> str | None:
    """The key extension (``png``, ``jpg``, ``webp``) for the image in ``data``, or None."""
    head = bytes(data[:16])
    if head.startswith(_PNG) and head[12:16] == b"IHDR":
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and head[12:15] == b"VP8":
        return "webp"
    return None


def check_image(data: bytes, *, max_bytes: int = MAX_IMAGE_BYTES) -> str:
    """The extension of an acceptable image, or :class:`MediaTooLarge`/:class:`UnsupportedMedia`."""
    if len(data) > max_bytes:
        raise MediaTooLarge(f"file: larger than {max_bytes // (1024 * 1024)} MB")
    extension = sniff_image(data)
    if extension is None:
        raise UnsupportedMedia("file: not a PNG, JPEG or WebP image")
    return extension
