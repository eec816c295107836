"""A crash campaign: `persona-sync sync` run as a real process and SIGKILLed at chosen points.

Kill points are drawn from a seeded generator, so a campaign is the same every time; where
exactly a SIGKILL lands still varies a little (a few writes either way), and the proof's
invariants must hold wherever it lands. The target freezes at the kill point (slapd
SIGSTOPped, the Graph fake's handler blocked), so the run cannot finish before the kill;
after the kill the target thaws, and the campaign waits until the server holds no
connection of the dead process, so none of its writes can land after the next run read back.

Kinds of kill point:
- ("write", N): right after the server applied the run's Nth write; most kills;
- ("read-back", N): right after the server answered the run's Nth read (Graph: GET
  operations); the first reads of a run are recovery's read-backs of the dead run;
- ("after-settle", 0): as soon as the run has settled the dead runs (their journals got
  their end record), while it reads the directory.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.proof.journals import has_end
from tests.proof.targets import CrashTarget

KILL_TIMEOUT = 300.0  # a run that reaches no kill point in this time hangs
RUN_TIMEOUT = 600.0


@dataclass(frozen=True)
class KillPoint:
    kind: str  # "write", "read-back" or "after-settle"
    count: int = 0

    def __str__(self) -> str:
        if self.kind == "after-settle":
            return "after it settled the dead runs"
        noun = "write" if self.kind == "write" else "read"
        return f"after {self.count} {noun}{'s' if self.count > 1 else ''} of its own"


def kill_points(
    seed: int, *, journal_batch: int, read_back: bool, kills: int = 20
) -> list[KillPoint]:
    """`kills` kill points. Most come after a few writes (1-120) of the run; one after
    more writes than a journal batch holds, so a kill lands after a batch's results were
    journalled; two kill the run once it has settled the dead runs (and with `read_back`,
    two more during recovery's read-back). Those follow a write kill, whose journal they
    have to settle."""
    rng = random.Random(seed)
    points = [KillPoint("write", rng.randint(1, 120)) for _ in range(kills)]
    special = rng.sample(range(2, kills, 2), 4 if read_back else 2)
    for index, position in enumerate(special):
        points[position] = KillPoint("after-settle" if index < 2 else "read-back", 1 + index)
    late = rng.choice([p for p in range(1, kills, 2)])
    points[late] = KillPoint("write", journal_batch + rng.randint(1, 300))
    return points


@dataclass
class RunLog:
    number: int
    args: tuple[str, ...]
    point: KillPoint | None  # None: left to finish
    returncode: int
    stderr: str
    journals: list[str] = field(default_factory=list)  # run ids of the journals it created
    seconds: float = 0.0
    writes: int = 0  # writes the server applied during the run (and after its death)

    def describe(self) -> str:
        killed = f"killed {self.point}" if self.point else f"exit {self.returncode}"
        return f"run {self.number} ({' '.join(self.args)}, {killed}, {self.seconds:.1f} s)"

    def summary(self) -> str:
        return f"{self.describe()}: {self.writes} server writes"


class Campaign:
    """Runs the CLI in `workspace` (its persona-sync.yaml, `state_dir: state`)."""

    def __init__(self, target: CrashTarget, workspace: Path, env: dict[str, str]) -> None:
        self.target = target
        self.workspace = workspace
        self.env = {**os.environ, **env}
        self.env.pop("PERSONA_SYNC_CONFIG", None)
        self.runs: list[RunLog] = []

    @property
    def journal_dir(self) -> Path:
        return self.workspace / "state" / "journal"

    def _journal_ids(self) -> set[str]:
        return {p.stem for p in self.journal_dir.glob("*.jsonl")}

    def _command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "persona_sync", *args]

    def cli(self, *args: str) -> RunLog:
        """Run a command to its end (no kill)."""
        before = self._journal_ids()
        written = self.target.write_count()
        started = time.monotonic()
        done = subprocess.run(
            self._command(*args),
            cwd=self.workspace,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
        log = RunLog(
            len(self.runs) + 1,
            args,
            None,
            done.returncode,
            done.stderr + done.stdout,
            sorted(self._journal_ids() - before),
            time.monotonic() - started,
            self.target.write_count() - written,
        )
        self.runs.append(log)
        return log

    def sync_killed_at(self, point: KillPoint) -> RunLog:
        """Start `persona-sync sync`, SIGKILL it at `point`, and wait until the server
        holds nothing of it any more."""
        number = len(self.runs) + 1
        before = self._journal_ids()
        written = self.target.write_count()
        dead = [p for p in self.journal_dir.glob("*.jsonl") if not has_end(p)]
        if point.kind == "after-settle" and not dead:
            raise AssertionError(f"run {number}: kill point {point} needs a dead run to settle")
        if point.kind != "after-settle":
            self.target.arm(point.kind, point.count)
        stderr_path = self.workspace / f"run-{number:02d}.stderr"
        started = time.monotonic()
        with stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                self._command("sync"),
                cwd=self.workspace,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        reached = False
        try:
            deadline = started + KILL_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if point.kind == "after-settle":
                    reached = all(has_end(p) for p in dead)
                else:
                    reached = self.target.frozen()
                if reached:
                    break
                time.sleep(self.target.poll_seconds)
            ended_by_itself = process.poll() is not None
            process.kill()  # SIGKILL
            process.wait()
        finally:
            self.target.thaw()
        try:
            self.target.wait_idle()
        except AssertionError as exc:
            output = stderr_path.read_text(encoding="utf-8", errors="replace")
            raise AssertionError(
                f"run {number} (kill point {point}, exit {process.returncode}): {exc}\n"
                f"its output:\n{output[-3000:]}"
            ) from None
        log = RunLog(
            number,
            ("sync",),
            point,
            process.returncode,
            stderr_path.read_text(encoding="utf-8", errors="replace"),
            sorted(self._journal_ids() - before),
            time.monotonic() - started,
            self.target.write_count() - written,
        )
        self.runs.append(log)
        if not reached or log.returncode != -signal.SIGKILL:
            how = f"ended by itself (exit {log.returncode})" if ended_by_itself else "hung"
            raise AssertionError(
                f"run {number} {how} before reaching kill point {point}; its output:\n"
                f"{log.stderr[-3000:]}"
            )
        return log
