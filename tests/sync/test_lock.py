"""The run lock: held on a file descriptor, released by the system when its holder dies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from persona_sync.errors import LockHeld
from persona_sync.lock import RunLock
from tests.sync.conftest import Workspace

Run = Callable[..., Result]

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from persona_sync.lock import RunLock
    lock = RunLock(Path(sys.argv[1]), "sync")
    lock.acquire()
    print("held", flush=True)
    sys.stdin.read()  # hold until the test closes stdin, or kills us
    """
)


@pytest.fixture
def holder(workspace: Workspace) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the workspace's lock (as a running sync would)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workspace.state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "held\n"
    yield process
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_second_run_stops_with_the_holders_name(
    workspace: Workspace, run_cli: Run, holder: subprocess.Popen[str]
) -> None:
    lock = workspace.state / "lock"
    since = json.loads(lock.read_text())["since"]
    before = workspace.directory.read_bytes()
    result = run_cli("sync")
    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "",
        f"error: another run holds {lock}: sync since {since} (pid {holder.pid} on "
        f"{socket.gethostname()}); it ends on its own (a dead run's lock is released by the "
        "system): try again later\n",
    )
    assert workspace.directory.read_bytes() == before
    assert not (workspace.state / "journal").exists()


def test_a_killed_holder_does_not_block_the_next_run(
    workspace: Workspace, run_cli: Run, holder: subprocess.Popen[str]
) -> None:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (workspace.state / "lock").exists()  # left behind, as after an OOM kill
    result = run_cli("sync")
    assert result.exit_code == 0, result.stderr
    assert (workspace.state / "lock").exists()  # never deleted: see persona_sync.lock


def test_a_lock_file_from_a_dead_pod_on_another_host_does_not_block(
    workspace: Workspace, run_cli: Run
) -> None:
    workspace.state.mkdir()
    (workspace.state / "lock").write_text(
        json.dumps(
            {
                "pid": 1,
                "host": "persona-sync-28675309-xk2pq",
                "command": "sync",
                "since": "2026-01-01T00:00:00+00:00",
            }
        )
    )
    result = run_cli("sync")
    assert result.exit_code == 0, result.stderr
    holder = json.loads((workspace.state / "lock").read_text())
    assert (holder["pid"], holder["command"]) == (os.getpid(), "sync")


def test_release_touches_only_the_owners_lock(tmp_path: Path) -> None:
    owner = RunLock(tmp_path, "sync")
    owner.acquire()
    other = RunLock(tmp_path, "apply")
    with pytest.raises(LockHeld):
        other.acquire()
    other.release()  # did not acquire: must not unlock the owner's lock
    with pytest.raises(LockHeld):
        RunLock(tmp_path, "rollback").acquire()
    owner.release()
    owner.release()  # idempotent
    with RunLock(tmp_path, "sync") as again:
        assert again.held
    assert not again.held
