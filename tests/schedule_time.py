"""A fake clock and sleep for persona_sync.schedule, so that no test waits for a cycle.

The ``fake_time`` fixture (a plugin of tests/conftest.py). What happens "between
cycles" (an edit of the directory, a signal) is done by ``at_sleep``, at a known point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from persona_sync import schedule
from persona_sync.cli import sync_cmds


class FakeTime:
    """A clock that only sleep moves; ``at_sleep`` runs at the first sleep after each
    cycle (the cycle's number given)."""

    def __init__(self, at_sleep: Callable[[int], None] | None = None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.cycle = 0
        self._slept_for = 0
        self.at_sleep = at_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if self.at_sleep is not None and self._slept_for != self.cycle:
            self._slept_for = self.cycle
            self.at_sleep(self.cycle)
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTime]:
    """The fake clock and sleep for the schedule; through the CLI, each cycle (a call of
    ``handled``, which runs one) counted."""
    fake = FakeTime()
    monkeypatch.setattr(schedule, "_clock", fake.clock)
    monkeypatch.setattr(schedule, "_sleep", fake.sleep)
    real = sync_cmds.handled

    def counted(call: Callable[[], int], debug: bool) -> int:
        fake.cycle += 1
        return real(call, debug)

    monkeypatch.setattr(sync_cmds, "handled", counted)
    yield fake
