"""One run at a time per state folder: an advisory lock held on an open file descriptor.

The operating system releases the lock when its holder dies, however it dies (SIGKILL, the
OOM killer, a pod eviction), so a crashed run never blocks the next one and nobody has to
delete anything. ``flock`` locks work across hosts on a shared volume (NFS clients get them
from the server's lock manager), so a Kubernetes CronJob whose pod has a new host name on
every run needs no stale-lock guessing by host name or PID.

The lock file is never deleted: removing it would let a second run lock a new file while a
first still holds the old one. Its content names the current holder, for the message
another run shows; it is rewritten by each new holder and is only informative.

Hand-written rather than the ``filelock`` package: filelock deletes its lock files on
release (the race above) and has no place for the holder's name that the refusal message
needs; what remains is thirty lines of ``fcntl``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from persona_sync.errors import LockHeld, PersonaSyncError

LOCK_NAME = "lock"


class RunLock:
    """The state folder's lock; a context manager. Only the holder's ``release`` unlocks."""

    def __init__(self, state_dir: Path, command: str, name: str = LOCK_NAME) -> None:
        self.path = state_dir / name
        self.command = command
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self, wait: bool = False) -> None:
        """Take the lock; without ``wait``, LockHeld names the holder when another has it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise PersonaSyncError(f"cannot open lock {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockHeld(
                f"another run holds {self.path}{holder}; it ends on its own (a dead run's lock "
                "is released by the system): try again later"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise PersonaSyncError(f"cannot lock {self.path}: {exc.strerror}") from None
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        except OSError:
            pass  # the holder's name is only informative; the lock itself is held
        self._fd = fd

    def release(self) -> None:
        """Unlock, if this object holds the lock; a no-op otherwise (never touches others')."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
        return (
            f": {holder['command']} since {holder['since']} (pid {holder['pid']} on "
            f"{holder['host']})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return ""
