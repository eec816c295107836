"""A full read's evaluation: held and written once, with a forked worker, or streamed into
the snapshot first (past HELD_MAX). Every way gives the same plan and the same snapshot,
on the demo company (2,420 entries, its HR feed and org chart); a worker that dies or
fails hands the rows it did not send back to this process."""

from __future__ import annotations

import json
import marshal
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from persona_sync import full_evaluation, refresh
from persona_sync.demo.workspace import prepare_workspace
from persona_sync.snapshot import SNAPSHOT_NAME

Run = Callable[..., Any]

# HELD_MAX, PARALLEL_MIN: what each way of evaluating takes
WAYS = {
    "held": (250_000, 10**9),
    "held, with the worker": (250_000, 0),
    "streamed into the snapshot": (0, 0),
    "held, then streamed from row 2,000 on": (1_000, 0),
}


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    prepare_workspace(tmp_path / "demo")
    monkeypatch.chdir(tmp_path / "demo")
    # no worker beside another thread, and servers that other tests started run in
    # threads of this process: these tests count none (a fork copies only this thread)
    monkeypatch.setattr(full_evaluation, "_threads", lambda: 1)
    return tmp_path / "demo"


def _evaluations(monkeypatch: pytest.MonkeyPatch) -> list[full_evaluation.Evaluation]:
    """Every Evaluation the next runs return, in order."""
    seen: list[full_evaluation.Evaluation] = []
    for name in ("evaluate_held", "evaluate_loaded"):
        original = getattr(refresh, name)

        def wrapped(*args: Any, _original: Any = original) -> full_evaluation.Evaluation:
            evaluation: full_evaluation.Evaluation = _original(*args)
            seen.append(evaluation)
            return evaluation

        monkeypatch.setattr(refresh, name, wrapped)
    return seen


def _plan_and_rows(
    demo: Path, run_cli: Run, stderr: list[str] | None = None
) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    result = run_cli("plan", "-q", "--format", "json")
    assert result.exit_code == 2, result.stderr
    if stderr is not None:
        stderr.extend(result.stderr.splitlines())
    plan = json.loads(result.stdout)
    plan.pop("checksum")
    plan["provenance"].pop("created")
    with sqlite3.connect(demo / ".persona-sync" / SNAPSHOT_NAME) as db:
        rows: list[tuple[Any, ...]] = [
            # the attributes decoded: marshal's bytes depend on which strings are shared
            (*row[:5], marshal.loads(row[5]), *row[6:])
            for row in db.execute(
                "SELECT rowid, key, id, dn, manager, attrs, depth, reports, population, "
                "changed FROM employees ORDER BY rowid"
            )
        ]
        rows += db.execute("SELECT * FROM plan_items ORDER BY row, kind, scenario").fetchall()
    return plan, rows


def test_every_way_of_evaluating_gives_the_same_plan_and_snapshot(
    demo: Path, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _evaluations(monkeypatch)
    results = {}
    for way, (held_max, parallel_min) in WAYS.items():
        monkeypatch.setattr(full_evaluation, "HELD_MAX", held_max)
        monkeypatch.setattr(full_evaluation, "PARALLEL_MIN", parallel_min)
        results[way] = _plan_and_rows(demo, run_cli)
    first = results["held"]
    assert first[0]["summary"]["changes"] == 2115
    assert len(first[1]) == 2420 + 2115 + 3  # the rows, the changes, the foreign values
    for way, result in results.items():
        assert result == first, way
    # each way did evaluate so: all 2,420 here, 85% of them given to the worker (who took
    # which of those depends on the two processes' speed), ...
    assert [(e.rows, e.by_worker + e.taken_back) for e in seen] == [
        (2420, 0),
        (2420, 2057),
        (2420, 0),
        (2420, 0),
    ]


def test_the_worker_is_not_used_for_a_small_read_or_beside_another_thread(
    demo: Path, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    seen = _evaluations(monkeypatch)
    assert full_evaluation.PARALLEL_MIN > 2420
    run_cli("plan", "-q", "--format", "json")
    monkeypatch.setattr(full_evaluation, "PARALLEL_MIN", 0)
    monkeypatch.setattr(full_evaluation, "_threads", threading.active_count)
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        run_cli("plan", "-q", "--format", "json")
    finally:
        release.set()
        other.join()
    assert [e.by_worker for e in seen] == [0, 0]


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        ("exit", "it ended with exit status 3"),
        ("kill", "it ended with signal 9"),
        ("raise", "it ended with exit status 1"),
    ],
)
def test_a_worker_that_does_not_come_back_leaves_its_rows_to_this_process(
    demo: Path, run_cli: Run, monkeypatch: pytest.MonkeyPatch, failure: str, reason: str
) -> None:
    monkeypatch.setattr(full_evaluation, "PARALLEL_MIN", 0)
    expected = _plan_and_rows(demo, run_cli)

    # the worker is given 2,057 rows in chunks of 500 and fails in its third; this
    # process takes none back, so what is left is what the failure left
    monkeypatch.setattr(full_evaluation, "CHUNK", 500)
    monkeypatch.setattr(full_evaluation, "take_back", lambda claims, index: False)
    chunks = 0
    decide = full_evaluation.decide

    def failing(*args: Any) -> list[full_evaluation.Decided]:
        nonlocal chunks
        chunks += 1
        if chunks < 3:
            return decide(*args)
        if failure == "exit":
            os._exit(3)
        if failure == "kill":
            os.kill(os.getpid(), 9)
        raise RuntimeError("a bug in the worker")

    monkeypatch.setattr(full_evaluation, "worker_decide", failing)
    seen = _evaluations(monkeypatch)
    stderr: list[str] = []
    assert _plan_and_rows(demo, run_cli, stderr) == expected
    assert [e.by_worker for e in seen] == [1000]  # the rest was evaluated here
    lost = [json.loads(line) for line in stderr if "evaluation_worker_lost" in line]
    assert [(e["level"], e["reason"]) for e in lost] == [("warning", reason)]


def _meeting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, worker_takes_everything: bool
) -> None:
    """Chunks of 500 (the worker's 2,057 rows are five); the worker takes its first and
    waits in it until this process has taken back every other one; with
    ``worker_takes_everything`` it then evaluates and sends all five anyway, as if each
    had been taken by both at the same moment."""
    met = tmp_path / "met"
    monkeypatch.setattr(full_evaluation, "CHUNK", 500)
    take_back, decide = full_evaluation.take_back, full_evaluation.decide

    def taking_back(claims: Any, index: int) -> bool:
        deadline = time.monotonic() + 60
        while claims[0] == full_evaluation.FREE and time.monotonic() < deadline:
            time.sleep(0.001)  # the worker has taken its first chunk before this one
        taken = take_back(claims, index)
        if not taken:
            met.touch()
        return taken

    def waiting(*args: Any) -> list[full_evaluation.Decided]:  # in the worker
        deadline = time.monotonic() + 60
        while not met.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        return decide(*args)

    def claims_all(claims: Any, index: int) -> bool:
        claims[index] = full_evaluation.BY_WORKER
        return True

    monkeypatch.setattr(full_evaluation, "take_back", taking_back)
    monkeypatch.setattr(full_evaluation, "worker_decide", waiting)
    if worker_takes_everything:
        monkeypatch.setattr(full_evaluation, "worker_claims", claims_all)


@pytest.mark.parametrize("both", [False, True], ids=["met", "taken by both"])
def test_this_process_takes_back_the_chunks_the_worker_has_not_reached(
    demo: Path, run_cli: Run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, both: bool
) -> None:
    monkeypatch.setattr(full_evaluation, "PARALLEL_MIN", 0)
    expected = _plan_and_rows(demo, run_cli)
    _meeting(monkeypatch, tmp_path, worker_takes_everything=both)
    seen = _evaluations(monkeypatch)
    stderr: list[str] = []
    # the same plan and rows, population counted once: a chunk that came back from the
    # worker after this process took it is not written or counted twice
    assert _plan_and_rows(demo, run_cli, stderr) == expected
    assert [(e.rows, e.by_worker, e.taken_back) for e in seen] == [(2420, 500, 1557)]
    assert not [line for line in stderr if "evaluation_worker_lost" in line]


def test_a_worker_that_cannot_start_leaves_every_row_to_this_process(
    demo: Path, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    monkeypatch.setattr(full_evaluation, "PARALLEL_MIN", 0)
    expected = _plan_and_rows(demo, run_cli)

    def no_fork() -> int:
        raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    pipes: list[tuple[int, int]] = []
    pipe, start = os.pipe, full_evaluation._Worker.start
    closed: list[bool] = []

    def recorded_pipe() -> tuple[int, int]:
        pipes.append(pipe())
        return pipes[-1]

    def started(*args: Any) -> Any:
        worker = start(*args)
        for fd in pipes[-1]:  # right away, before anything may open the numbers again
            try:
                os.fstat(fd)
                closed.append(False)
            except OSError:
                closed.append(True)
        return worker

    monkeypatch.setattr(full_evaluation.os, "fork", no_fork)
    monkeypatch.setattr(full_evaluation.os, "pipe", recorded_pipe)
    monkeypatch.setattr(full_evaluation._Worker, "start", started)
    seen = _evaluations(monkeypatch)
    stderr: list[str] = []
    assert _plan_and_rows(demo, run_cli, stderr) == expected
    assert closed == [True, True]  # the pipe made for it was closed
    assert [(e.rows, e.by_worker) for e in seen] == [(2420, 0)]
    lost = [json.loads(line) for line in stderr if "evaluation_worker_lost" in line]
    assert [(e["level"], e["reason"]) for e in lost] == [
        ("warning", "cannot start: Resource temporarily unavailable")
    ]


def test_an_error_in_the_rules_is_raised_by_this_process_and_no_worker_is_left(
    demo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from persona_sync.plan import Evaluator

    monkeypatch.setattr(full_evaluation, "PARALLEL_MIN", 0)
    original = Evaluator.__call__
    calls = 0

    def broken(self: Evaluator, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 300:  # in this process's 363 rows, while the worker works on its own
            raise ZeroDivisionError("a rule bug")
        return original(self, *args)

    monkeypatch.setattr(Evaluator, "__call__", broken)
    from persona_sync.feed_join import load_feeds
    from persona_sync.session import open_session

    workers: list[Any] = []
    start = full_evaluation._Worker.start

    def started(*args: Any) -> Any:
        workers.append(start(*args))
        return workers[-1]

    monkeypatch.setattr(full_evaluation._Worker, "start", started)
    session = open_session(demo / "persona-sync.yaml", None)
    with session.directory() as directory, pytest.raises(ZeroDivisionError, match="a rule bug"):
        refresh.compute_plan(
            session.config, session.engine, directory, feeds=load_feeds(session.config)
        )
    assert len(workers) == 1 and workers[0].waited
    with pytest.raises(ChildProcessError):  # it was killed and reaped: it is gone
        os.waitpid(workers[0].pid, os.WNOHANG)


def test_the_workers_pipe_holds_megabytes_not_the_default_64_kb() -> None:
    import fcntl

    read_end, write_end = os.pipe()
    try:
        assert fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) == 64 * 1024
        full_evaluation._widen(write_end)
        # as root the 8 MB asked for, else the system's limit (1 MB by default)
        assert fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ) in (
            full_evaluation.PIPE_BYTES,
            full_evaluation._pipe_max(),
        )
        assert full_evaluation._pipe_max() >= 1 << 20
    finally:
        os.close(read_end)
        os.close(write_end)


# A plan whose worker SIGKILLs the plan as it starts its first chunk, then goes on.
KILLED_PLAN = """
import os, signal, sys
from persona_sync import full_evaluation
from persona_sync.cli.main import cli
full_evaluation.PARALLEL_MIN = 0
full_evaluation._threads = lambda: 1
decide = full_evaluation.decide
def killing(*args):
    with open("worker.pid", "w") as out:
        out.write(str(os.getpid()))
    os.kill(os.getppid(), signal.SIGKILL)
    return decide(*args)
full_evaluation.worker_decide = killing
cli.main(["plan", "-q", "-o", "plan.json"], prog_name="persona-sync")
"""


def test_a_plan_killed_while_its_worker_runs_leaves_nothing_to_clear(demo: Path) -> None:
    import fcntl
    import subprocess
    import sys

    killed = subprocess.run(
        [sys.executable, "-c", KILLED_PLAN], cwd=demo, capture_output=True, text=True
    )
    assert killed.returncode == -9, killed.stderr
    worker = int((demo / "worker.pid").read_text())
    # the worker's next answer meets a pipe with no reader: it leaves (a zombie at most,
    # when nothing reaps orphans here); generous, so that a loaded machine does not matter
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _running(worker):
        time.sleep(0.05)
    assert not _running(worker)
    with open(demo / ".persona-sync" / "snapshot.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: nobody holds it
    again = subprocess.run(
        [sys.executable, "-m", "persona_sync", "plan", "-q", "-o", "plan.json"],
        cwd=demo, capture_output=True, text=True,
    )  # fmt: skip
    assert again.returncode == 2, again.stderr
    assert "snapshot_busy" not in again.stderr
    assert json.loads((demo / "plan.json").read_text())["summary"]["changes"] == 2115


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
