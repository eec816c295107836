"""An apply records each batch's writes in the snapshot while the next batch is written,
each batch in a transaction of its own; what stops the recording or the writes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from click.testing import Result

from persona_sync.directory.base import Cancel, Change, ChangeResult
from persona_sync.directory.files import FileDirectory
from persona_sync.errors import LockHeld
from persona_sync.feed_join import load_feeds
from persona_sync.lock import RunLock
from persona_sync.session import open_session
from persona_sync.snapshot import SNAPSHOT_LOCK, Snapshot
from persona_sync.workflow import _Recorder
from tests.sync.conftest import Workspace

Run = Callable[..., Result]


def _written(workspace: Workspace, key: str) -> dict[str, Any]:
    """What the committed snapshot says was written to ``key``, read apart from the run."""
    store = Snapshot.open_read_only(workspace.state)
    assert store is not None
    with store:
        return store.written(key)


def _planned(workspace: Workspace, run_cli: Run) -> list[dict[str, Any]]:
    assert run_cli("plan", "-q", "-o", "plan.json").exit_code == 2
    changes: list[dict[str, Any]] = json.loads((workspace.root / "plan.json").read_text())[
        "changes"
    ]
    assert len(changes) == 2
    return changes


def _before_batch(monkeypatch: pytest.MonkeyPatch, dn: str, action: Callable[[], None]) -> None:
    """Batches of one change; ``action`` runs before the one that writes ``dn``."""
    monkeypatch.setattr(FileDirectory, "batch_size", 1)
    real = FileDirectory.apply

    def apply(
        self: FileDirectory, changes: Sequence[Change], cancel: Cancel | None = None
    ) -> list[ChangeResult]:
        if changes[0].dn == dn:
            action()
        return real(self, changes, cancel)

    monkeypatch.setattr(FileDirectory, "apply", apply)


def test_each_batch_is_recorded_while_the_next_is_written(
    workspace: Workspace, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _planned(workspace, run_cli)
    seen_before_second: list[dict[str, Any]] = []

    def wait_for_the_first() -> None:  # to be recorded and committed
        deadline = time.monotonic() + 60
        while not _written(workspace, first["key"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_before_second.append(_written(workspace, first["key"]))
        assert _written(workspace, second["key"]) == {}

    _before_batch(monkeypatch, second["dn"], wait_for_the_first)
    done = run_cli("apply", "plan.json", "-q")
    assert done.exit_code == 0, done.stderr
    [run] = json.loads(run_cli("runs", "--format", "json").stdout)
    expected = {first["attribute"].lower(): {"run": run["run_id"], "value": first["new"]}}
    assert seen_before_second == [expected]
    assert _written(workspace, second["key"]) == {
        second["attribute"].lower(): {"run": run["run_id"], "value": second["new"]}
    }
    again = run_cli("plan", "--delta", "--format", "json")
    assert again.exit_code == 0
    assert again.stderr.splitlines()[0] == (  # the writes' echo is no change
        "read: delta since the last read: 6 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated"
    )


def test_an_error_in_the_recording_is_raised_after_every_write(
    workspace: Workspace, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    _planned(workspace, run_cli)
    monkeypatch.setattr(FileDirectory, "batch_size", 1)

    def broken(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("the snapshot broke")

    monkeypatch.setattr("persona_sync.workflow.record_results", broken)
    done = run_cli("apply", "plan.json", "-q")
    assert done.exit_code == 1
    assert done.stderr.splitlines() == [
        "unexpected error: RuntimeError: the snapshot broke",
        "This is a bug in persona-sync; rerun with --debug for the traceback and include it "
        "in your report.",
    ]
    [run] = json.loads(run_cli("runs", "--format", "json").stdout)
    assert (run["status"], run["applied"]) == ("complete", 2)


def test_writes_ended_by_an_error_keep_the_batches_recorded_before(
    workspace: Workspace, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _planned(workspace, run_cli)

    def a_bug() -> None:
        raise RuntimeError("a bug")

    _before_batch(monkeypatch, second["dn"], a_bug)
    done = run_cli("apply", "plan.json", "-q")
    assert done.exit_code == 1
    assert done.stderr.splitlines()[0] == "unexpected error: RuntimeError: a bug"
    [run] = json.loads(run_cli("runs", "--format", "json").stdout)
    assert run["status"] == "error"
    assert _written(workspace, first["key"]) == {
        first["attribute"].lower(): {"run": run["run_id"], "value": first["new"]}
    }
    assert _written(workspace, second["key"]) == {}


def test_a_second_signal_stops_the_recording_at_once(workspace: Workspace, run_cli: Run) -> None:
    """The writes ended by KeyboardInterrupt (a second SIGINT/SIGTERM): the recorder does
    not hold the command back, even while it waits for the snapshot's lock."""
    _planned(workspace, run_cli)
    session = open_session(workspace.config)
    held = RunLock(workspace.state, "plan", SNAPSHOT_LOCK)
    held.acquire()  # a plan saving the snapshot
    recorder = _Recorder(session, session.directory(), load_feeds(session.config))
    try:
        recorder.__enter__()
        recorder.put("run", [])
        recorder.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None)  # returns at once
        assert recorder._thread.is_alive()  # still waiting for the lock
    finally:
        held.release()
    recorder._thread.join(timeout=60)
    assert not recorder._thread.is_alive()


def test_a_plan_may_save_the_snapshot_between_two_batches(
    workspace: Workspace, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = _planned(workspace, run_cli)
    taken: list[bool] = []

    def take_the_snapshot_lock() -> None:  # once the first batch is recorded
        deadline = time.monotonic() + 60
        lock = RunLock(workspace.state, "plan", SNAPSHOT_LOCK)
        while time.monotonic() < deadline:
            if _written(workspace, first["key"]):
                try:
                    lock.acquire()
                except LockHeld:
                    time.sleep(0.01)
                    continue
                lock.release()
                taken.append(True)
                return
            time.sleep(0.01)

    _before_batch(monkeypatch, second["dn"], take_the_snapshot_lock)
    done = run_cli("apply", "plan.json", "-q")
    assert done.exit_code == 0, done.stderr
    assert taken == [True]
