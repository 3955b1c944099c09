"""Media storage conformance (every backend), hostile keys, and image checks by content."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from monolith.media import (
    MAX_IMAGE_BYTES,
    MediaNotFound,
    MediaStorage,
    MediaTooLarge,
    MediaUnavailable,
    UnsupportedMedia,
    check_image,
    check_key,
    content_type,
    open_media,
    sniff_image,
)
from monolith.media.base import CHUNK, new_key
from monolith.media.local import LocalMediaStorage
from tests.images import JPEG, WEBP, png_bytes
from tests.s3server import S3Server, s3_server

pytestmark = pytest.mark.profile_independent
__all__ = ["s3_server"]  # the fixture, used by the s3 backend's parameter

Make = Callable[[], Awaitable[MediaStorage]]

HOSTILE_KEYS = [
    "../../etc/passwd",
    "/etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "aaaaaaaaaaaaaaaaaaaa/../../x.png",
    "../aaaaaaaaaaaaaaaaaaaaaaaa.png",
    ".aaaaaaaaaaaaaaaaaaaaaaaaa.png",
    "aaaaaaaaaaaaaaaaaaaaaaaa.png\x00.txt",
    "aaaaaaaaaaaaaaaaaaaaaaaa.exe",
    "short.png",
    "",
]


@pytest.fixture(params=["local", "s3"])
async def make(
    request: pytest.FixtureRequest, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Make]:
    """Storages of one backend over the same place, each as if in its own worker process."""
    made: list[MediaStorage] = []
    url = ""
    if request.param == "s3":  # a bucket of its own on the S3-protocol test server
        server: S3Server = request.getfixturevalue("s3_server")
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        url = server.url(server.bucket(), "uploads")

    async def _make() -> MediaStorage:
        storage = open_media(data_dir / "media", url)
        await storage.start()
        made.append(storage)
        return storage

    yield _make
    for storage in made:
        await storage.stop()


@pytest.fixture
async def storage(make: Make) -> MediaStorage:
    return await make()


async def test_saved_file_reads_back_under_a_fresh_key(storage: MediaStorage) -> None:
    data = png_bytes()
    key = await storage.save(data, "png")
    assert check_key(key) == key
    assert key.endswith(".png")
    assert content_type(key) == "image/png"
    assert await storage.get(key) == data
    assert await storage.exists(key)
    assert key != await storage.save(data, "png")


async def test_a_file_is_served_in_chunks_and_a_missing_one_refused_first(
    storage: MediaStorage,
) -> None:
    # Three chunks and a bit: what GET /media streams, never holding the file whole.
    data = bytes(range(256)) * (3 * CHUNK // 256) + b"end"
    key = new_key("png")
    await storage.put(key, data)
    found = await storage.open(key)
    assert found.size == len(data)
    chunks = [chunk async for chunk in found.chunks]
    assert b"".join(chunks) == data
    assert len(chunks) > 1  # streamed, not read whole first
    with pytest.raises(MediaNotFound):  # before any byte: the route can still answer 404
        await storage.open(new_key("png"))


async def test_file_stored_by_one_worker_is_read_by_another(make: Make) -> None:
    first, second = await make(), await make()
    key = await first.save(JPEG, "jpg")
    assert await second.get(key) == JPEG


async def test_missing_file_is_not_found(storage: MediaStorage) -> None:
    with pytest.raises(MediaNotFound):
        await storage.get("a" * 32 + ".png")
    assert not await storage.exists("a" * 32 + ".png")


async def test_delete_removes_the_file_once(storage: MediaStorage) -> None:
    key = await storage.save(WEBP, "webp")
    assert await storage.delete(key)
    assert not await storage.delete(key)
    with pytest.raises(MediaNotFound):
        await storage.get(key)


@pytest.mark.parametrize("key", HOSTILE_KEYS)
async def test_a_key_that_is_a_path_reaches_no_file(
    storage: MediaStorage, key: str, data_dir: Path
) -> None:
    secret = data_dir / "secret.png"
    secret.write_bytes(b"do not serve")
    with pytest.raises(MediaNotFound):
        await storage.get(key)
    with pytest.raises(MediaNotFound):
        await storage.put(key, b"overwrite")
    with pytest.raises(MediaNotFound):
        await storage.delete(key)
    assert secret.read_bytes() == b"do not serve"
    assert sorted(p.name for p in data_dir.rglob("*")) in (["media", "secret.png"], ["secret.png"])


def test_unknown_extension_makes_no_key() -> None:
    from monolith.media import new_key

    with pytest.raises(ValueError, match="exe"):
        new_key("exe")


# -- the local backend ---------------------------------------------------------------------


async def test_local_storage_leaves_no_temporary_files(data_dir: Path) -> None:
    storage = LocalMediaStorage(data_dir / "media")
    await storage.start()
    keys = {await storage.save(png_bytes(), "png") for _ in range(5)}
    assert {p.name for p in (data_dir / "media").iterdir()} == keys


async def test_local_storage_on_an_unusable_path_is_unavailable(data_dir: Path) -> None:
    blocker = data_dir / "media"
    blocker.write_text("a file where the directory should be")
    storage = LocalMediaStorage(blocker)
    with pytest.raises(MediaUnavailable):
        await storage.start()
    with pytest.raises(MediaUnavailable):
        await storage.put("a" * 32 + ".png", b"x")


# -- images by content ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "extension"), [(png_bytes(), "png"), (JPEG, "jpg"), (WEBP, "webp")]
)
def test_images_are_recognised_by_their_bytes(data: bytes, extension: str) -> None:
    assert sniff_image(data) == extension
    assert check_image(data) == extension


@pytest.mark.parametrize(
    "data",
    [
        b"root:x:0:0:root:/root:/bin/bash\n",  # a text file renamed .png
        b"",
        b"\x89PNG\r\n",  # a truncated signature
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
        b"<svg xmlns='http://www.w3.org/2000/svg'/>",
        b"RIFF\x1a\x00\x00\x00WAVEfmt ",
    ],
)
def test_other_content_is_refused_whatever_its_name(data: bytes) -> None:
    assert sniff_image(data) is None
    with pytest.raises(UnsupportedMedia, match="PNG, JPEG or WebP"):
        check_image(data)


def test_an_image_past_the_limit_is_too_large() -> None:
    data = png_bytes() + b"\x00" * MAX_IMAGE_BYTES
    with pytest.raises(MediaTooLarge, match="5 MB"):
        check_image(data)
    assert check_image(png_bytes() + b"\x00" * (MAX_IMAGE_BYTES - len(png_bytes()))) == "png"
