"""Atomic replacement of directory files: content, permissions, and failures that leave the
original alone."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
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


def _write_as_nobody(target: Path) -> str:
    """atomic_write in a forked child that gave up root (root ignores permissions): the
    message of the DirectoryError it got, or what went wrong."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(reader)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            atomic_write(target, b"new")
            os.write(writer, b"written")
        except DirectoryError as exc:
            os.write(writer, str(exc).encode())
            status = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as text
            os.write(writer, repr(exc).encode())
        finally:
            os._exit(status)
    os.close(writer)
    with os.fdopen(reader, "rb") as answer:
        said = answer.read().decode()
    os.waitpid(pid, 0)
    return said


NOBODY = 65534


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_a_read_only_folder_is_a_directory_error() -> None:
    # Not under tmp_path: its parents are root's own (0700), which nobody cannot pass.
    folder = Path(tempfile.mkdtemp(prefix="persona-sync-atomic-"))
    try:
        target = folder / "dir.ldif"
        target.write_bytes(b"old")
        if os.geteuid() == 0:
            folder.chmod(0o755)  # nobody may look, not write
            said = _write_as_nobody(target)
        else:
            folder.chmod(0o500)
            with pytest.raises(DirectoryError) as caught:
                atomic_write(target, b"new")
            said = str(caught.value)
            folder.chmod(0o700)
        assert said == f"cannot write {target}: Permission denied"
        assert target.read_bytes() == b"old"
        assert [p.name for p in folder.iterdir()] == ["dir.ldif"]
    finally:
        shutil.rmtree(folder)
