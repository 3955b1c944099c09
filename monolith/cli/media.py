"""``monolith media migrate --to URL``: copy the local uploads to another storage, verified."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from monolith.cli.common import Progress, add_json_flag, emit, fail, run, settings_from_env
from monolith.errors import MonolithError
from monolith.media import MediaStorage, open_media
from monolith.media.base import check_key
from monolith.media.local import LocalMediaStorage


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("media", help="uploaded files (MONOLITH_MEDIA_URL)")
    media = p.add_subparsers(dest="media_command", metavar="COMMAND", required=True)
    move = media.add_parser(
        "migrate",
        help="copy the local media directory into another storage and verify every file",
        description="Copy every file of the local media directory ($MONOLITH_DATA_DIR/media, or "
        "--from DIR) into the storage named by --to (s3://BUCKET[/PREFIX]?endpoint=URL&region=R "
        "or file:///path), then read each one back and compare its SHA-256. Files already "
        "there with the same content are not copied again; nothing is deleted. Exits 1 when a "
        "file does not verify.",
    )
    move.add_argument("--to", required=True, metavar="URL", help="the target storage")
    move.add_argument("--from", dest="source", metavar="DIR", help="the local media directory")
    add_json_flag(move)
    move.set_defaults(func=cmd_migrate)


def local_keys(root: Path) -> list[str]:
    """The files of the directory that are stored uploads (not dot-files being written)."""
    keys = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            keys.append(check_key(path.name))
        except MonolithError:
            continue
    return keys


async def migrate_media(
    source: MediaStorage, target: MediaStorage, keys: list[str]
) -> tuple[int, list[str]]:
    """Copy ``keys`` (skipping identical ones) and verify each: (copied, keys that differ)."""
    await source.start()
    await target.start()
    copied, bad = 0, []
    try:
        bar = Progress("copying", len(keys))
        for key in keys:
            data = await source.get(key)
            if not await target.exists(key) or await target.get(key) != data:
                await target.put(key, data)
                copied += 1
            bar.advance()
        bar.finish()
        bar = Progress("verifying", len(keys))
        for key in keys:
            expected = hashlib.sha256(await source.get(key)).digest()
            if hashlib.sha256(await target.get(key)).digest() != expected:
                bad.append(key)
            bar.advance()
        bar.finish()
    finally:
        await target.stop()
        await source.stop()
    return copied, bad


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from_env()
    root = Path(args.source) if args.source else settings.media_dir
    try:
        target = open_media(root, args.to)
        keys = local_keys(root)
        copied, bad = run(migrate_media(LocalMediaStorage(root), target, keys))
    except MonolithError as exc:
        return fail("media migrate", str(exc))
    report = {
        "ok": not bad,
        "files": len(keys),
        "copied": copied,
        "verified": len(keys) - len(bad),
        "differ": bad,
        "target": target.describe(),
    }
    emit(
        args,
        report,
        lambda _: (
            f"{len(keys)} files: {copied} copied, {len(keys) - len(bad)} verified by SHA-256 "
            f"in {target.describe()}"
            + (f"; DIFFER: {', '.join(bad)}" if bad else "; every file matches")
        ),
    )
    return 1 if bad else 0
