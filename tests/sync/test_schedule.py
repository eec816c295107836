"""plan/sync --every: a schedule in one process (persona_sync.schedule and the CLI).

The schedule's clock and sleep are replaced by a fake clock that the sleep moves on, so
no test waits for a cycle; what happens "between cycles" (an edit of the directory, a
signal) is done by the fake sleep, at a known point. One test runs a real process and
stops it with a real SIGTERM.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from persona_sync import schedule
from persona_sync.directory.base import Cancel
from persona_sync.logs import configure_logging
from persona_sync.schedule import parse_interval, repeat
from tests.schedule_time import FakeTime
from tests.sync.conftest import Workspace

Run = Callable[..., Result]


# --- durations ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("5m", 300), ("1.5h", 5400), (" 2M ", 120), ("1s", 1)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5x", "'5x' is not a duration (e.g. 30s, 5m, 1h)"),
        ("", "'' is not a duration (e.g. 30s, 5m, 1h)"),
        ("-1m", "'-1m' is not a duration (e.g. 30s, 5m, 1h)"),
        ("5 m", "'5 m' is not a duration (e.g. 30s, 5m, 1h)"),
        ("0.5s", "'0.5s' is shorter than 1 s"),
        ("0", "'0' is shorter than 1 s"),
    ],
)
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_interval(text)
    assert str(caught.value) == message


# --- the loop -------------------------------------------------------------------------


def cycles_taking(fake: FakeTime, seconds: list[float], codes: list[int]) -> Callable[[int], int]:
    """A cycle that takes ``seconds[n - 1]`` on the fake clock and returns ``codes[n - 1]``;
    it records each cycle's number and start."""
    started: list[tuple[int, float]] = []

    def cycle(number: int) -> int:
        fake.cycle = number
        started.append((number, fake.now))
        fake.now += seconds[number - 1]
        return codes[number - 1]

    cycle.started = started  # type: ignore[attr-defined]
    return cycle


def test_cycles_start_on_a_grid_from_the_first(fake_time: FakeTime) -> None:
    cycle = cycles_taking(fake_time, [3, 4, 2], [2, 0, 2])
    assert repeat(cycle, 10, Cancel(), cycles=3) == 2  # the last cycle's code
    assert cycle.started == [(1, 1000.0), (2, 1010.0), (3, 1020.0)]  # type: ignore[attr-defined]


def test_a_late_cycle_drops_the_starts_it_missed(fake_time: FakeTime) -> None:
    cycle = cycles_taking(fake_time, [25, 1, 1], [0, 0, 0])
    assert repeat(cycle, 10, Cancel(), cycles=3) == 0
    assert cycle.started == [(1, 1000.0), (2, 1030.0), (3, 1040.0)]  # type: ignore[attr-defined]


def test_a_first_cycle_that_fails_ends_the_schedule(fake_time: FakeTime) -> None:
    cycle = cycles_taking(fake_time, [1, 1], [1, 0])
    assert repeat(cycle, 10, Cancel(), cycles=2) == 1
    assert cycle.started == [(1, 1000.0)]  # type: ignore[attr-defined]
    assert fake_time.sleeps == []


def test_a_later_failure_is_retried_at_the_next_cycle(fake_time: FakeTime) -> None:
    cycle = cycles_taking(fake_time, [1, 1, 1], [0, 1, 3])
    assert repeat(cycle, 10, Cancel(), cycles=3) == 3
    assert [n for n, _ in cycle.started] == [1, 2, 3]  # type: ignore[attr-defined]


@pytest.mark.parametrize("code", [130, 143])
def test_a_cycle_ended_by_a_signal_ends_the_schedule(fake_time: FakeTime, code: int) -> None:
    cycle = cycles_taking(fake_time, [1, 1, 1], [0, code, 0])
    assert repeat(cycle, 10, Cancel()) == code
    assert [n for n, _ in cycle.started] == [1, 2]  # type: ignore[attr-defined]


def test_a_stop_between_cycles_ends_at_once_with_0(fake_time: FakeTime) -> None:
    stop = Cancel()
    fake_time.at_sleep = lambda number: stop.request("SIGTERM") if number == 2 else None
    cycle = cycles_taking(fake_time, [1, 1, 1], [2, 2, 2])
    assert repeat(cycle, 10, stop) == 0
    assert [n for n, _ in cycle.started] == [1, 2]  # type: ignore[attr-defined]
    # the sleep after cycle 2 was its first slice: the stop was seen before the next
    assert fake_time.now == 1011.2


def test_a_stop_during_a_cycle_ends_after_it_with_its_code(fake_time: FakeTime) -> None:
    stop = Cancel()

    def cycle(number: int) -> int:
        stop.request("SIGINT")
        return 2

    assert repeat(cycle, 10, stop) == 2
    assert fake_time.sleeps == []


def test_memory_is_given_back_between_cycles_not_after_the_last(
    fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    given: list[int] = []
    monkeypatch.setattr(schedule, "_give_back_memory", lambda: given.append(fake_time.cycle))
    assert repeat(cycles_taking(fake_time, [1, 1, 1], [0, 0, 0]), 10, Cancel(), cycles=3) == 0
    assert given == [1, 2]


def test_giving_memory_back_trims_the_heap_with_glibc() -> None:
    schedule._give_back_memory()  # it must not fail, here or where there is no glibc
    glibc = (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    assert (schedule._malloc_trim() is not None) == glibc


def test_cycles_that_take_no_time_wait_for_the_next_start(fake_time: FakeTime) -> None:
    cycle = cycles_taking(fake_time, [0, 0, 0], [0, 0, 0])
    assert repeat(cycle, 10, Cancel(), cycles=3) == 0
    assert cycle.started == [(1, 1000.0), (2, 1010.0), (3, 1020.0)]  # type: ignore[attr-defined]


def test_a_cycle_ending_on_the_next_start_is_followed_at_once(fake_time: FakeTime) -> None:
    cycle = cycles_taking(fake_time, [10, 1], [0, 0])
    assert repeat(cycle, 10, Cancel(), cycles=2) == 0
    assert cycle.started == [(1, 1000.0), (2, 1010.0)]  # type: ignore[attr-defined]
    assert fake_time.sleeps == []


def test_a_first_cycle_held_ends_the_schedule_a_later_one_is_warned_of(
    fake_time: FakeTime, capsys: pytest.CaptureFixture[str]
) -> None:
    assert repeat(cycles_taking(fake_time, [1], [4]), 10, Cancel()) == 4
    configure_logging(logging.INFO, "json")
    capsys.readouterr()
    cycle = cycles_taking(fake_time, [1, 1, 1], [0, 4, 1])
    assert repeat(cycle, 10, Cancel(), cycles=3) == 1
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["event"], e["cycle"], e["level"]) for e in events] == [
        ("cycle_finished", 1, "info"),
        ("cycle_finished", 2, "info"),
        ("cycle_held", 2, "warning"),
        ("cycle_finished", 3, "info"),
    ]  # the last cycle's failure is the run's exit code: nothing is tried again


# --- through the CLI ------------------------------------------------------------------


def test_every_refuses_force_and_cycles_needs_every(workspace: Workspace, run_cli: Run) -> None:
    done = run_cli("sync", "--every", "5m", "--force")
    assert done.exit_code == 1
    assert done.stderr.splitlines()[-1] == (
        "Error: --force cannot be combined with --every: a limit overridden once would stay "
        "overridden for every later cycle; run once with --force, then start the schedule"
    )
    done = run_cli("plan", "--cycles", "2")
    assert done.exit_code == 1
    assert done.stderr.splitlines()[-1] == "Error: --cycles needs --every"
    done = run_cli("plan", "--every", "5x")
    assert done.exit_code == 1
    assert done.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--every': '5x' is not a duration (e.g. 30s, 5m, 1h)"
    )
    done = run_cli("sync", "--every", "1m", "--cycles", "0")
    assert done.exit_code == 1
    assert done.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--cycles': 0 is not in the range x>=1."
    )
    assert not workspace.state.exists()  # nothing ran


def retitle(workspace: Workspace, old: str, new: str) -> None:
    text = workspace.text()
    assert f"title: {old}\n" in text
    workspace.directory.write_text(text.replace(f"title: {old}\n", f"title: {new}\n", 1))


def persona_of(workspace: Workspace, name: str) -> str | None:
    """The persona attribute of the entry whose sAMAccountName is ``name``, in the LDIF."""
    for block in workspace.text().split("\n\n"):
        if f"sAMAccountName: {name}\n" in block + "\n":
            for line in block.splitlines():
                if line.startswith("msDS-cloudExtensionAttribute1: "):
                    return line.split(": ", 1)[1]
            return None
    raise AssertionError(f"{name} not in the directory")


def test_sync_every_picks_up_a_change_made_between_cycles(
    workspace: Workspace, run_cli: Run, fake_time: FakeTime
) -> None:
    fake_time.at_sleep = lambda number: retitle(workspace, "Software Engineer", "Registered Nurse")
    done = run_cli("sync", "--delta", "--every", "5m", "--cycles", "2")
    assert done.exit_code == 0, done.stderr
    runs = json.loads(run_cli("runs", "--format", "json").stdout)
    assert [r["applied"] for r in runs] == [2, 1]
    journal = workspace.state / "journal"
    assert done.stderr.splitlines() == [
        "read: no snapshot yet: full read; 6 entries",
        "plan: 2 changes for 2 employees (4 in scope, 2 out of scope, 2 unchanged, "
        "1 foreign values left alone)",
        f"run {runs[0]['run_id']}: 2 applied, 0 already set, 0 conflicts, 0 failed; "
        f"journal {journal / runs[0]['run_id']}.jsonl",
        "read: delta since the last read: 6 entries read, 1 changed, 0 removed; "
        "1 employees re-evaluated",
        "read: the file changed since the last read: every entry compared with the snapshot",
        "plan: 1 change for 1 employees (4 in scope, 2 out of scope, 3 unchanged, "
        "1 foreign values left alone)",
        f"run {runs[1]['run_id']}: 1 applied, 0 already set, 0 conflicts, 0 failed; "
        f"journal {journal / runs[1]['run_id']}.jsonl",
    ]
    assert persona_of(workspace, "jmuller") == persona_of(workspace, "jsmith") != "engineer"
    assert fake_time.sleeps[0] == 0.2  # slept in slices until the next start
    assert round(sum(fake_time.sleeps), 6) == 300.0


def test_sync_every_keeps_its_copy_of_the_plan_items_across_its_own_writes(
    workspace: Workspace, run_cli: Run, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.sync.test_item_cache import reads_of_items

    asked = reads_of_items(monkeypatch)
    from persona_sync import session
    from persona_sync.item_cache import ItemCache

    # a copy updated row by row however few the items (six employees here)
    monkeypatch.setattr(session, "ItemCache", lambda: ItemCache(reread_share=0))
    fake_time.at_sleep = lambda number: retitle(workspace, "Software Engineer", "Registered Nurse")
    done = run_cli("sync", "--delta", "--every", "5m", "--cycles", "2")
    assert done.exit_code == 0, done.stderr
    # cycle 1, a full read: every item for its plan and again after its writes (a full
    # read may have changed any row); cycle 2 reads only the row it re-evaluated, for its
    # plan and after writing it: its copy was still the snapshot's after cycle 1's writes
    assert asked[:2] == [None, None]
    assert len(asked) == 4 and len(asked[2] or ()) == 1 and asked[3] == asked[2]


def test_plan_every_rewrites_the_plan_file_each_cycle(
    workspace: Workspace, run_cli: Run, fake_time: FakeTime
) -> None:
    plans: list[dict] = []

    def between(number: int) -> None:
        plans.append(json.loads((workspace.root / "plan.json").read_text()))
        retitle(workspace, "Software Engineer", "Registered Nurse")

    fake_time.at_sleep = between
    done = run_cli("plan", "--delta", "-q", "-o", "plan.json", "--every", "1m", "--cycles", "2")
    assert done.exit_code == 2, done.stderr
    assert done.stderr == ""
    plans.append(json.loads((workspace.root / "plan.json").read_text()))
    assert [sorted(c["employee"] for c in p["changes"]) for p in plans] == [
        ["boss", "jsmith"],
        ["boss", "jmuller", "jsmith"],
    ]
    assert [p for p in os.listdir(workspace.root) if p.endswith(".tmp")] == []


def test_plan_every_parses_the_config_and_rules_again_only_after_an_edit(
    workspace: Workspace, run_cli: Run, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from persona_sync import session

    opened: list[int] = []
    real_open = session.open_session

    def counted(*args: object, **kwargs: object) -> session.Session:
        opened.append(len(plans) + 1)
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(session, "open_session", counted)
    plans: list[dict] = []

    def between(number: int) -> None:
        plans.append(json.loads((workspace.root / "plan.json").read_text()))
        if number == 2:  # the admin takes the attribute over: foreign values get replaced
            workspace.config.write_text(workspace.config.read_text() + "owns_attribute: true\n")

    fake_time.at_sleep = between
    done = run_cli("plan", "-q", "-o", "plan.json", "--every", "1m", "--cycles", "4")
    assert done.exit_code == 2, done.stderr
    plans.append(json.loads((workspace.root / "plan.json").read_text()))
    assert opened == [1, 3]  # cycles 2 and 4 found the files as the cycle before
    assert [(len(p["changes"]), len(p["foreign"])) for p in plans] == [
        (2, 1),
        (2, 1),
        (3, 0),
        (3, 0),
    ]


def test_a_later_failing_cycle_is_said_and_the_next_one_runs(
    workspace: Workspace, run_cli: Run, fake_time: FakeTime
) -> None:
    good = workspace.text()

    def between(number: int) -> None:
        if number == 1:
            workspace.directory.write_text(good.replace("dn: CN=Gone", "dn CN=Gone"))
        else:
            workspace.directory.write_text(good)

    fake_time.at_sleep = between
    done = run_cli("plan", "-q", "--format", "json", "--every", "1m", "--cycles", "3")
    assert done.exit_code == 2
    said = done.stderr.splitlines()
    assert said[0] == (
        f"{workspace.directory}:36:1: line has no ':' separating attribute and value"
    )
    failed = json.loads(said[1])
    assert (failed["event"], failed["cycle"], failed["level"]) == ("cycle_failed", 2, "warning")
    assert failed["next"] == "the next cycle tries again"
    assert len(said) == 2
    assert done.stdout.count('"checksum"') == 2  # cycles 1 and 3 printed their plan


def test_a_first_failing_cycle_ends_the_command(
    workspace: Workspace, run_cli: Run, fake_time: FakeTime
) -> None:
    workspace.directory.unlink()
    done = run_cli("sync", "--every", "1m")
    assert done.exit_code == 1
    assert done.stderr == f"error: {workspace.directory}: no such directory file\n"
    assert fake_time.sleeps == []


def test_sigterm_between_cycles_stops_the_schedule(
    workspace: Workspace, run_cli: Run, fake_time: FakeTime
) -> None:
    fake_time.at_sleep = lambda number: os.kill(os.getpid(), signal.SIGTERM)
    done = run_cli("plan", "-q", "--format", "json", "--every", "1m")
    assert done.exit_code == 0
    assert done.stderr == "SIGTERM: stopping after this cycle (send it again to stop at once)\n"
    assert done.stdout.count('"checksum"') == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # given back


def test_a_real_process_stops_on_sigterm_with_0(workspace: Workspace) -> None:
    child = subprocess.Popen(
        [
            sys.executable, "-m", "persona_sync", "-v", "--log-format", "json",
            "sync", "--delta", "-q", "--every", "1h",
        ],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip
    assert child.stderr is not None
    watchdog = threading.Timer(120, child.kill)  # a child that hangs fails the test
    watchdog.start()
    try:
        events = []
        for line in child.stderr:  # until the first cycle is done: it then sleeps an hour
            events.append(json.loads(line))
            if events[-1]["event"] == "cycle_finished":
                break
        child.send_signal(signal.SIGTERM)
        rest = child.stderr.read()  # to the end: the child closes it as it exits
        assert child.wait(timeout=60) == 0
    finally:
        watchdog.cancel()
        watchdog.join()
        if child.poll() is None:
            child.kill()
            child.wait()
    finished = events[-1]
    assert (finished["cycle"], finished["exit_code"], finished["level"]) == (1, 0, "info")
    assert rest.splitlines()[0] == (
        "SIGTERM: stopping after this cycle (send it again to stop at once)"
    )
    stopped = json.loads(rest.splitlines()[1])
    assert (stopped["event"], stopped["cycle"], stopped["reason"]) == (
        "schedule_stopped",
        1,
        "SIGTERM",
    )


def test_sigterm_during_a_sync_cycle_ends_the_schedule_after_it(
    workspace: Workspace, run_cli: Run, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from persona_sync import render

    real = render.read_line

    def signalled(plan: object) -> str:  # after cycle 2's read, before its end
        if fake_time.cycle == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # the sync's handler: its cancel and the stop
        return real(plan)  # type: ignore[arg-type]

    monkeypatch.setattr(render, "read_line", signalled)
    done = run_cli("sync", "--delta", "--every", "1m", "--cycles", "4")
    assert done.exit_code == 0  # cycle 2 had nothing to write: it ended well
    said = done.stderr.splitlines()
    assert said[3:] == [
        "SIGTERM: stopping after the writes in flight (send it again to stop at once)",
        "read: delta since the last read: 6 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated",
        "read: the file changed since the last read: every entry compared with the snapshot",
        "plan: 0 changes for 0 employees (4 in scope, 2 out of scope, 4 unchanged, "
        "1 foreign values left alone)",
    ]
    assert fake_time.cycle == 2  # no third cycle


@pytest.mark.parametrize(
    ("signals", "code", "said"),
    [
        (
            [signal.SIGTERM],  # once: the sync stops reading, then the schedule stops
            143,
            "SIGTERM: stopping after the writes in flight (send it again to stop at once)\n"
            "interrupted by SIGTERM while reading employees; nothing was written; the next "
            "run starts afresh\n",
        ),
        (
            [signal.SIGINT, signal.SIGINT],  # twice: at once
            130,
            "SIGINT: stopping after the writes in flight (send it again to stop at once)\n"
            "interrupted\n",
        ),
    ],
)
def test_signals_as_a_sync_cycle_starts_stop_it_and_the_schedule(
    workspace: Workspace,
    run_cli: Run,
    fake_time: FakeTime,
    monkeypatch: pytest.MonkeyPatch,
    signals: list[signal.Signals],
    code: int,
    said: str,
) -> None:
    from persona_sync import workflow

    real = workflow.sync

    def signalled(*args: object, **kwargs: object) -> object:
        if fake_time.cycle == 2:
            for number in signals:
                os.kill(os.getpid(), number)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(workflow, "sync", signalled)
    done = run_cli("sync", "--delta", "-q", "--every", "1m", "--cycles", "4")
    assert done.exit_code == code
    assert done.stderr == said
    assert fake_time.cycle == 2


def test_a_signal_before_the_sync_takes_it_sends_no_write(
    workspace: Workspace, run_cli: Run, fake_time: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    from persona_sync import session as session_module

    real = session_module.open_session

    def signalled(*args: object, **kwargs: object) -> object:
        os.kill(os.getpid(), signal.SIGTERM)  # the schedule's handler: stop after this cycle
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(session_module, "open_session", signalled)
    before = workspace.text()
    done = run_cli("sync", "-q", "--every", "1m")
    assert done.exit_code == 143
    assert done.stderr.splitlines()[0] == (
        "SIGTERM: stopping after this cycle (send it again to stop at once)"
    )
    assert done.stderr.splitlines()[1:] == [
        "interrupted by SIGTERM while reading employees; nothing was written; the next run "
        "starts afresh"
    ]
    assert workspace.text() == before  # 2 changes planned, none sent


def test_a_plan_file_behind_a_symlink_is_written_through_it(
    workspace: Workspace, run_cli: Run
) -> None:
    (workspace.root / "plans").mkdir()
    (workspace.root / "plan.json").symlink_to("plans/latest.json")
    done = run_cli("plan", "-q", "-o", "plan.json")
    assert done.exit_code == 2
    assert (workspace.root / "plan.json").is_symlink()
    assert json.loads((workspace.root / "plans" / "latest.json").read_text())["changes"]


def test_a_plan_to_dev_stdout_reaches_the_redirected_stdout(workspace: Workspace) -> None:
    with open(workspace.root / "out.json", "wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "persona_sync", "plan", "-q", "-o", "/dev/stdout"],
            stdout=out, stderr=subprocess.PIPE, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert json.loads((workspace.root / "out.json").read_text())["changes"]
    assert os.path.islink("/dev/stdout")
