"""Files and directories monolith creates for itself: private to its user.

The data dir holds the database, the session store and the secret key: when monolith creates
it (outside systemd, whose ``StateDirectory=`` makes it), it is 0700 and database files are
0600, whatever the umask. A directory or file that already exists keeps its mode: an operator
who chose one (systemd's 0750 for Caddy's media reads) is not overruled.

This module must never change the mode of anything it did not create.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` and any missing parents, each directory created here 0700."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # another process made it first: its mode is its own
        os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty and 0600 unless it exists (its directory as by :func:`private_dir`)."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return path
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path
