"""How the console script ends: exit handlers run and the streams are flushed, but the
interpreter's teardown is skipped unless another thread still runs (cli.main.leave)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

# An object whose finalizer says so: it runs in the interpreter's teardown, not after
# os._exit.
PREAMBLE = textwrap.dedent(
    """
    import atexit, os, sys, threading, time

    class Noisy:
        def __del__(self):
            os.write(2, b"torn down\\n")

    noisy = Noisy()
    atexit.register(lambda: print("exit handler ran", file=sys.stderr))
    from persona_sync.cli.main import leave, main
    """
)


def run_script(body: str, *args: str, stdout: int | None = subprocess.PIPE) -> tuple[int, str]:
    """Run PREAMBLE + ``body`` with ``args`` as its argv; (exit status, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYTHONUNBUFFERED", None)  # stdout buffered, as in a job: leave() flushes it
    done = subprocess.run(
        [sys.executable, "-c", PREAMBLE + textwrap.dedent(body), *args],
        stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, check=False,
    )  # fmt: skip
    return done.returncode, done.stderr


def test_exit_status_handlers_and_streams_survive_the_skipped_teardown(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("personas:\n\t- x\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    with out.open("w") as stdout:
        status, stderr = run_script(
            """
            print("buffered before the command", flush=False)
            sys.argv = ["persona-sync", *sys.argv[1:]]
            main()
            """,
            "validate", str(bad),
            stdout=stdout.fileno(),
        )  # fmt: skip
    assert (status, out.read_text(), stderr) == (
        1,
        "buffered before the command\n",
        f"{bad}:2:1: tab character in indentation: YAML indents with spaces only\n1 error\n"
        "exit handler ran\n",
    )


def test_a_successful_command_exits_0_without_teardown() -> None:
    status, stderr = run_script(
        """
        sys.argv = ["persona-sync", "--version"]
        main()
        """
    )
    assert (status, stderr) == (0, "exit handler ran\n")


def test_another_thread_running_gets_the_usual_exit_which_waits_for_it(tmp_path: Path) -> None:
    marker = tmp_path / "thread-finished"
    status, stderr = run_script(
        f"""
        def late():
            time.sleep(1.0)
            open({str(marker)!r}, "w").close()

        threading.Thread(target=late).start()  # not a daemon: an exit waits for it
        sys.argv = ["persona-sync", "--version"]
        main()
        """
    )
    assert (status, marker.exists()) == (0, True)
    assert stderr == "exit handler ran\ntorn down\n"


@pytest.mark.parametrize(("code", "status"), [(0, 1), (2, 2)], ids=["success", "failure"])
def test_output_that_cannot_be_flushed_makes_success_exit_1_quietly(
    code: int, status: int
) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader went away before anything was written
    try:
        got = run_script(
            f"""
            print("a plan nobody reads")
            leave({code})
            """,
            stdout=write_end,
        )
    finally:
        os.close(write_end)
    assert got == (status, "exit handler ran\n")  # a failure keeps its own status


def test_output_that_cannot_be_written_says_why_and_exits_1() -> None:
    with open("/dev/full", "w") as full:  # every write: No space left on device
        status, stderr = run_script(
            """
            print("a plan for a full disk")
            leave(0)
            """,
            stdout=full.fileno(),
        )
    assert (status, stderr) == (
        1,
        "exit handler ran\nerror: cannot write the output: No space left on device\n",
    )
