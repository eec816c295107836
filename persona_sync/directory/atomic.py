"""Replace a directory file all at once, so a crash or a full disk never leaves half a file.

The file-backed directory rewrites the user's LDIF or CSV in place. Writing it directly would
truncate the user's data if the disk fills up or the process dies part way; instead the new
content goes to a temporary file in the same folder (so the rename cannot cross file
systems), is flushed to disk, and then renamed over the original in one step.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

from persona_sync.errors import DirectoryError

_ATTEMPTS = 10  # temporary names tried before giving up; a clash is already unlikely


def atomic_write(path: Path, data: bytes, before_replace: Callable[[], None] | None = None) -> None:
    """Replace ``path`` with ``data`` atomically and durably.

    The temporary file gets the original's permission bits (a new file gets the usual
    0o666 minus umask). After the rename the folder is fsynced so the rename itself survives
    a power cut. On any OS error the temporary file is removed, the original is left as it
    was, and DirectoryError says which file could not be written and why; only a failure to
    sync the folder, after the rename, raises with the new content already in place.
    Ownership is not copied (that needs privileges), and a symlink at ``path`` is replaced by
    a regular file.

    ``before_replace`` runs once the new content is safely on disk, just before the rename,
    so a check there (is the file still what we read?) leaves the shortest window; whatever
    it raises propagates and the temporary file is removed.
    """
    temporary: Path | None = None
    try:
        mode = _permission_bits(path)
        temporary, descriptor = _create_temporary(path)
        try:
            if mode is not None:
                os.chmod(temporary, mode)
            _write_all(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if before_replace is not None:
            before_replace()
        os.replace(temporary, path)
        temporary = None
        sync_folder(path.parent)
    except OSError as exc:
        if temporary is not None:
            _remove_quietly(temporary)
        reason = exc.strerror or str(exc)
        raise DirectoryError(f"cannot write {path}: {reason}") from exc
    except BaseException:
        if temporary is not None:
            _remove_quietly(temporary)
        raise


def _permission_bits(path: Path) -> int | None:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return None


def _create_temporary(path: Path) -> tuple[Path, int]:
    """A new, empty file next to ``path`` and its open descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_ATTEMPTS):
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return candidate, os.open(candidate, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows has no folder handles for this)."""
    if os.name == "nt":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_quietly(path: Path) -> None:
    # The error that stopped the write is what the user needs to see, not this one.
    with contextlib.suppress(OSError):
        os.unlink(path)
