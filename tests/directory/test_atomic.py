"""Atomic replacement of directory files: content, permissions, and failures that leave the
original alone."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from persona_sync.directory.atomic import atomic_write
from persona_sync.errors import DirectoryError


def _full_disk(*args: object) -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_replaces_the_content_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "dir.ldif"
    target.write_bytes(b"old")
    atomic_write(target, b"new content\r\n")
    assert target.read_bytes() == b"new content\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["dir.ldif"]


def test_creates_a_missing_file_with_the_umask_permissions(tmp_path: Path) -> None:
    target = tmp_path / "new.csv"
    umask = os.umask(0o022)
    try:
        atomic_write(target, b"a,b\n")
    finally:
        os.umask(umask)
    assert target.read_bytes() == b"a,b\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_keeps_the_permission_bits_of_the_file_it_replaces(tmp_path: Path) -> None:
    target = tmp_path / "dir.ldif"
    target.write_bytes(b"old")
    target.chmod(0o640)
    atomic_write(target, b"new")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_writes_large_content_completely(tmp_path: Path) -> None:
    target = tmp_path / "big.ldif"
    data = os.urandom(3_000_000)
    atomic_write(target, data)
    assert target.read_bytes() == data


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_a_full_disk_leaves_the_original_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    target = tmp_path / "dir.ldif"
    target.write_bytes(b"dn: cn=original\n")
    monkeypatch.setattr(os, call, _full_disk)
    with pytest.raises(DirectoryError) as caught:
        atomic_write(target, b"dn: cn=new\n")
    monkeypatch.undo()
    assert str(caught.value) == f"cannot write {target}: No space left on device"
    assert isinstance(caught.value.__cause__, OSError)
    assert target.read_bytes() == b"dn: cn=original\n"
    assert [p.name for p in tmp_path.iterdir()] == ["dir.ldif"]


def test_a_failed_rename_leaves_the_original_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "dir.csv"
    target.write_bytes(b"a\n1\n")

    def refuse(*args: object) -> None:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(DirectoryError) as caught:
        atomic_write(target, b"a\n2\n")
    monkeypatch.undo()
    assert str(caught.value) == f"cannot write {target}: Permission denied"
    assert target.read_bytes() == b"a\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["dir.csv"]


def test_a_missing_folder_is_a_directory_error(tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "dir.ldif"
    with pytest.raises(DirectoryError) as caught:
        atomic_write(target, b"x")
    assert str(caught.value) == f"cannot write {target}: No such file or directory"


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root ignores permissions")
def test_a_read_only_folder_is_a_directory_error(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    target = folder / "dir.ldif"
    target.write_bytes(b"old")
    folder.chmod(0o500)
    try:
        with pytest.raises(DirectoryError) as caught:
            atomic_write(target, b"new")
    finally:
        folder.chmod(0o700)
    assert str(caught.value) == f"cannot write {target}: Permission denied"
    assert target.read_bytes() == b"old"
