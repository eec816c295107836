"""One run at a time per state folder: a lock file naming its holder.

A lock whose process is gone (same host, PID not running) is reported as stale with the
command to clear it; it is never taken over silently, since the dead run may have left
a write half-journalled that the admin should look at first.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from persona_sync.errors import LockHeld, PersonaSyncError

LOCK_NAME = "lock"


class RunLock:
    def __init__(self, state_dir: Path, command: str) -> None:
        self.path = state_dir / LOCK_NAME
        self.command = command
        self._held = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise self._held_error() from None
        except OSError as exc:
            raise PersonaSyncError(f"cannot create lock {self.path}: {exc.strerror}") from None
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(holder, handle)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            raise PersonaSyncError(f"cannot write lock {self.path}: {exc.strerror}") from None
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def _held_error(self) -> LockHeld:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
            pid, host = int(holder["pid"]), str(holder["host"])
            what = f"{holder.get('command', '?')} since {holder.get('since', '?')}"
        except (OSError, ValueError, KeyError, TypeError):
            return LockHeld(
                f"lock {self.path} exists but cannot be read; if no run is active, remove it: "
                f"rm {self.path}"
            )
        if host == socket.gethostname() and not _alive(pid):
            return LockHeld(
                f"stale lock {self.path}: held by pid {pid} ({what}), which is no longer "
                f"running; check `persona-sync runs` for an unfinished run, then remove it: "
                f"rm {self.path}"
            )
        return LockHeld(
            f"another run holds {self.path}: pid {pid} on {host} ({what}); wait for it to finish"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
