"""Our files on disk: no temp file outlives a write, owner-only, and a folder moved whole."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from dispatch_core import _files
from dispatch_core._files import (
    move_folder,
    private_folder,
    remove_stale_temp_files,
    write_atomically,
)
from dispatch_core.service import DispatchService

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@posix_only
def test_a_write_is_owner_only_from_its_first_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    replace = os.replace

    def spy(source: str, target: Path) -> None:
        seen.append(mode(Path(source)))
        replace(source, target)

    monkeypatch.setattr(_files.os, "replace", spy)
    old_umask = os.umask(0)  # even a permissive umask gives no one else a look
    try:
        write_atomically(tmp_path / "new" / "config.json", b"{}")
    finally:
        os.umask(old_umask)
    assert seen == [0o600]
    assert mode(tmp_path / "new" / "config.json") == 0o600
    assert mode(tmp_path / "new") == 0o700


def test_a_failed_write_leaves_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(_files.os, "fsync", broken)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(tmp_path / "config.json", b'{"token": "s3cret"}')
    assert list(tmp_path.iterdir()) == []


def test_only_our_stale_temp_files_are_removed(tmp_path: Path) -> None:
    ours = [".config.json.k2j4_x9a.tmp", ".workers.json.abcdefgh.tmp"]
    theirs = [".config.json.tmp", "notes.tmp", "config.json", ".x.ABCDEFGH.tmp", ".a.b.tmp"]
    for name in ours + theirs:
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".config.json.abcdefgh.tmp").write_text("x")
    (tmp_path / "elsewhere.txt").write_text("keep")
    os.symlink(tmp_path / "elsewhere.txt", tmp_path / ".link.abcdefgh.tmp")
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(p.name for p in removed) == sorted(ours)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {*theirs, "sub", "elsewhere.txt", ".link.abcdefgh.tmp"}
    assert (tmp_path / "sub" / ".config.json.abcdefgh.tmp").exists()
    assert remove_stale_temp_files(tmp_path / "missing") == []


def test_named_files_limit_what_is_removed(tmp_path: Path) -> None:
    (tmp_path / ".dispatch.json.abcdefgh.tmp").write_text("x")
    (tmp_path / ".other.json.abcdefgh.tmp").write_text("x")
    removed = remove_stale_temp_files(tmp_path, {"dispatch.json"})
    assert [p.name for p in removed] == [".dispatch.json.abcdefgh.tmp"]
    assert (tmp_path / ".other.json.abcdefgh.tmp").exists()


def test_the_service_removes_temp_files_a_killed_write_left(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "templates").mkdir(parents=True)
    stale = [
        state / ".config.json.abcdefgh.tmp",
        state / ".workers.json.abcdefgh.tmp",
        state / "templates" / ".t.json.abcdefgh.tmp",
    ]
    for path in stale:
        path.write_text('{"servers": {"a": {"headers": {"Authorization": "s3cret"}}}}')
    (state / ".unrelated.abcdefgh.tmp").write_text("not ours")
    (state / "config.json").write_text(json.dumps({"servers": {}, "routes": {}}))
    service = DispatchService(state, status_interval=0, journal=False)
    assert service.config_error is None
    assert not any(path.exists() for path in stale)
    assert (state / ".unrelated.abcdefgh.tmp").exists()


def test_a_config_elsewhere_has_only_its_own_temp_files_removed(tmp_path: Path) -> None:
    (tmp_path / ".mine.json.abcdefgh.tmp").write_text("x")
    (tmp_path / ".yours.json.abcdefgh.tmp").write_text("x")
    DispatchService(tmp_path / "state", config_path=tmp_path / "mine.json", journal=False)
    assert not (tmp_path / ".mine.json.abcdefgh.tmp").exists()
    assert (tmp_path / ".yours.json.abcdefgh.tmp").exists()


@posix_only
def test_a_private_folder_is_owner_only(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    os.chmod(existing, 0o755)
    assert mode(private_folder(existing)) == 0o700
    assert mode(private_folder(tmp_path / "a" / "b")) == 0o700


def fill(folder: Path) -> None:
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "t.json").write_text("{}")
    (folder / "config.json").write_text('{"token": "s3cret"}')
    (folder / "journal.sqlite").write_bytes(b"db")
    (folder / "workers").mkdir()
    (folder / "workers" / "w.log").write_text("log")
    (folder / ".config.json.abcdefgh.tmp").write_text('{"token": "s3cret"}')


def test_a_folder_is_moved_whole_and_nothing_stays_behind(tmp_path: Path) -> None:
    old, new = tmp_path / "default" / "dispatch", tmp_path / "__dispatch"
    fill(old)
    assert move_folder(old, new) == new
    assert not old.exists()
    assert (new / "config.json").read_text() == '{"token": "s3cret"}'
    assert (new / "templates" / "t.json").exists() and (new / "workers" / "w.log").exists()
    assert sorted(p.name for p in new.iterdir()) == [
        "config.json",
        "journal.sqlite",
        "templates",
        "workers",
    ], "the temp copy of the config was deleted, not moved"
    assert move_folder(old, new) == new  # nothing left to move: a no-op


def test_what_both_folders_have_is_kept_not_overwritten(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    fill(old)
    new.mkdir()
    (new / "config.json").write_text('{"newer": true}')
    assert move_folder(old, new) == new
    assert (new / "config.json").read_text() == '{"newer": true}'
    assert (new / "config.json.old").read_text() == '{"token": "s3cret"}'
    assert not old.exists()


def test_a_failed_move_puts_everything_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    fill(old)
    replace = os.replace
    calls = []

    def flaky(source: Path, target: Path) -> None:
        calls.append(source)
        if len(calls) == 3:
            raise OSError(18, "Invalid cross-device link")
        replace(source, target)

    monkeypatch.setattr(_files.os, "replace", flaky)
    assert move_folder(old, new) == old
    assert sorted(p.name for p in old.iterdir()) == [
        "config.json",
        "journal.sqlite",
        "templates",
        "workers",
    ]
    assert list(new.iterdir()) == []
