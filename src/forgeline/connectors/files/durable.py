"""The few file-system moves the file connector relies on, each crash-safe on a local disk.

* :func:`publish` makes a finished temp file appear under its final name in one step: the
  data is fsynced first, the name is created by ``link`` (which, unlike ``rename``, refuses
  to replace an existing file) or, where links are not supported, by ``rename`` after a
  check, and the directory is fsynced so the name survives a power loss. A reader polling
  the folder sees nothing, then the whole file.
* :func:`move` renames a file into another folder of the same file system (atomic: the file
  is in one folder or the other, never in neither) under a free name.
* :class:`Folders` are the source's inbox, archive and quarantine, refused unless they share
  one file system (a rename across file systems is a copy, not atomic).
* :func:`free_name` adds a UTC timestamp before the extension when the name is taken:
  ``orders.csv`` -> ``orders-20261127T060102.123456Z.csv``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from ...exceptions import ConfigError

__all__ = ["Folders", "free_name", "fsync_dir", "move", "publish", "temp_path", "write_atomic"]

#: The hidden temp names of ``temp_path``: left behind only by a crash, removed on start.
OUR_TEMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")

# Where a hard link cannot be made (some network and FAT file systems): rename instead.
_NO_LINK = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(folder: Path, name: str) -> Path:
    """A hidden name beside ``name``: no partner glob (``*.csv``) matches it."""
    return folder / f".{name}.{secrets.token_hex(4)}.tmp"


def free_name(folder: Path, name: str) -> str:
    if not (folder / name).exists():
        return name
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    stem, dot, suffix = name.partition(".")
    for attempt in range(1000):
        extra = f"-{attempt}" if attempt else ""
        candidate = f"{stem}-{stamp}{extra}{dot}{suffix}"
        if not (folder / candidate).exists():
            return candidate
    raise FileExistsError(errno.EEXIST, "no free name", str(folder / name))


def publish(
    temp: Path, folder: Path, name: Callable[[int], str], attempt: int = 0
) -> tuple[Path, int]:
    """Give the fsynced ``temp`` the first free name among ``name(attempt)``,
    ``name(attempt + 1)`` …; answer the final path and the number it took."""
    for tries in range(10_000):
        number = attempt + tries
        final = folder / name(number)
        try:
            os.link(temp, final)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_LINK:
                raise
            if final.exists():
                continue
            os.rename(temp, final)
        else:
            os.unlink(temp)
        fsync_dir(folder)
        return final, number
    raise FileExistsError(errno.EEXIST, "no free name", str(folder))


def write_atomic(folder: Path, name: str, write: Callable[[BinaryIO], None]) -> Path:
    """Write a new file under exactly ``name`` (replacing one there), atomically."""
    temp = temp_path(folder, name)
    try:
        with temp.open("xb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, folder / name)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_dir(folder)
    return folder / name


def move(path: Path, folder: Path, name: str | None = None) -> Path:
    """Rename ``path`` into ``folder`` under a free name; both folders fsynced."""
    target = folder / free_name(folder, name or path.name)
    os.rename(path, target)
    fsync_dir(folder)
    fsync_dir(path.parent)
    return target


@dataclass(frozen=True, slots=True)
class Folders:
    inbox: Path
    archive: Path
    quarantine: Path

    def prepare(self) -> None:
        """Create the folders; refuse them on different file systems (no atomic rename)."""
        for folder in (self.inbox, self.archive, self.quarantine):
            folder.mkdir(parents=True, exist_ok=True)
        devices = {os.stat(folder).st_dev for folder in (self.inbox, self.archive, self.quarantine)}
        if len(devices) > 1:
            raise ConfigError(
                f"{self.inbox}, {self.archive} and {self.quarantine} must be on one file system: "
                "files are moved between them by an atomic rename"
            )
        for leftover in self.quarantine.iterdir():
            if OUR_TEMP.match(leftover.name):  # a rejected-rows file a crash interrupted
                leftover.unlink(missing_ok=True)
