"""Our files on disk: atomic writes, owner-only, and no copy left behind.

A crash mid-write leaves the old file, never a broken one. The config holds peer tokens,
so its temp files and the folders we make are owner-only where the OS allows, a temp file
left by a killed process is removed at the next start, and moving the state folder moves
every file rather than copying it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Collection
from pathlib import Path

__all__ = ["move_folder", "private_folder", "remove_stale_temp_files", "write_atomically"]

_log = logging.getLogger(__name__)
_TEMP = re.compile(r"\.(.+)\.[a-z0-9_]{8}\.tmp")
"""The temp files `write_atomically` makes: `.{name}.` + mkstemp's 8 characters + `.tmp`."""


def write_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    target = Path(path)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # mkstemp's default, said here because the config has tokens
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def remove_stale_temp_files(
    folder: str | os.PathLike[str], names: Collection[str] | None = None
) -> list[Path]:
    """Delete the temp files a killed write left in `folder` (not below it): only ours,
    and with `names`, only those of the files so named."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for entry in entries:
        found = _TEMP.fullmatch(entry.name)
        if not found or (names is not None and found[1] not in names):
            continue
        if entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed


def private_folder(folder: str | os.PathLike[str]) -> Path:
    """Make `folder` if needed, readable by its owner only where the OS allows it."""
    path = Path(folder)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(OSError, NotImplementedError):
        os.chmod(path, 0o700)
    return path


def move_folder(old: Path, new: Path) -> Path:
    """Move everything in `old` into `new` (one rename per entry), then remove `old`.

    Returns the folder to use: `new`, or `old` if a move failed, after moving back what
    had moved, so that a failed move loses nothing and leaves everything where it was. An
    entry that `new` has already is kept beside it as `NAME.old`. Temp files of a killed
    write in `old` are deleted, not moved.
    """
    if not old.is_dir():
        return new
    remove_stale_temp_files(old)
    moved: list[tuple[Path, Path]] = []
    try:
        private_folder(new)
        for entry in sorted(old.iterdir()):
            target = _free_name(new, entry.name)
            os.replace(entry, target)
            moved.append((entry, target))
    except OSError:
        _log.exception("ComfyUI-Dispatch: could not move %s to %s; still using it", old, new)
        _move_back(moved)
        return old
    try:
        old.rmdir()
    except OSError as error:
        _log.warning("ComfyUI-Dispatch: moved %s to %s, but cannot remove it: %s", old, new, error)
    for entry, target in moved:
        if target.name != entry.name:
            _log.warning(
                "ComfyUI-Dispatch: %s was in both places; the old one is %s", entry, target
            )
    return new


def _free_name(folder: Path, name: str) -> Path:
    candidate, number = folder / name, 1
    while candidate.exists() or candidate.is_symlink():
        suffix = ".old" if number == 1 else f".old.{number}"
        candidate, number = folder / f"{name}{suffix}", number + 1
    return candidate


def _move_back(moved: list[tuple[Path, Path]]) -> None:
    for entry, target in reversed(moved):
        try:
            os.replace(target, entry)
        except OSError:
            _log.exception("ComfyUI-Dispatch: could not move %s back to %s", target, entry)
