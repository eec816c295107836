"""Long waits are visible: while Graph throttles, the run says how long it waits and why
(on stderr, one line each; nothing under --quiet). The clock is the test's own, so a
12-second Retry-After takes no time."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import Result

from persona_sync.directory import entra_graph
from persona_sync.directory.base import Change
from persona_sync.notices import notices_to
from tests.entra.conftest import ON_PREMISES, FakeClock, Tenant, entra_directory, summary
from tests.fakegraph import FakeEntra

Run = Callable[..., Result]


def changes(fake: FakeEntra, count: int) -> list[Change]:
    return [
        Change(f"u{n}@contoso.example", fake.add_user(userPrincipalName=f"u{n}@contoso.example"),
               ON_PREMISES, None, "engineer")
        for n in range(count)
    ]  # fmt: skip


def test_each_long_wait_says_how_long_and_why(fake_entra: FakeEntra) -> None:
    planned = changes(fake_entra, 20)  # one $batch: its rounds follow each other
    fake_entra.faults.retry_after = 12
    fake_entra.faults.every(2, 429, methods={"PATCH"})  # every second write
    clock = FakeClock()
    said: list[str] = []
    with notices_to(said.append), entra_directory(fake_entra, clock=clock) as entra:
        results = entra.apply(planned)
    assert {r.status for r in results} == {"applied"}
    # Writes 2, 4, ... are refused: 10 of the first 20, then 5 of the 10 sent again, ...
    assert said == [
        "waiting 12 s: Graph throttled 10 of 20 writes (429, Retry-After)",
        "waiting 12 s: Graph throttled 15 of 30 writes (429, Retry-After)",
        "waiting 12 s: Graph throttled 17 of 35 writes (429, Retry-After)",
        "waiting 12 s: Graph throttled 18 of 37 writes (429, Retry-After)",
        "waiting 12 s: Graph throttled 19 of 38 writes (429, Retry-After)",
    ]
    assert 60 <= sum(clock.slept) < 62  # the waits Graph asked for, on the test's clock


def test_short_waits_pass_unremarked(fake_entra: FakeEntra) -> None:
    planned = changes(fake_entra, 4)
    fake_entra.faults.retry_after = 1
    fake_entra.faults.every(2, 429, methods={"PATCH"})
    said: list[str] = []
    with notices_to(said.append), entra_directory(fake_entra, clock=FakeClock()) as entra:
        assert {r.status for r in entra.apply(planned)} == {"applied"}
    assert said == []


def test_a_503_and_a_read_say_what_they_were(fake_entra: FakeEntra) -> None:
    planned = changes(fake_entra, 2)
    fake_entra.faults.retry_after = 30
    fake_entra.faults.script(503)  # the compare-and-swap read of the first user
    said: list[str] = []
    with notices_to(said.append), entra_directory(fake_entra, clock=FakeClock()) as entra:
        assert {r.status for r in entra.apply(planned)} == {"applied"}
        fake_entra.faults.script(429)
        assert len(list(entra.read([ON_PREMISES]))) == 2
    assert said == [
        "waiting 30 s: Graph could not serve 1 of 2 reads (503, Retry-After)",
        "waiting 30 s: Graph throttled 1 of 4 reads (429, Retry-After)",
    ]


@pytest.mark.parametrize("quiet", [False, True], ids=["default", "quiet"])
def test_apply_and_plan_show_waits_on_stderr_unless_quiet(
    tenant: Tenant, run_cli: Run, monkeypatch: pytest.MonkeyPatch, quiet: bool
) -> None:
    monkeypatch.setattr(entra_graph, "Clock", FakeClock)
    flags = ["-q"] if quiet else []
    faults = tenant.fake.faults
    faults.retry_after = 12
    faults.script(429)  # the plan's first read
    planned = run_cli("plan", "-o", "plan.json", *flags)
    assert planned.exit_code == 2, planned.stderr
    faults.every(2, 429, methods={"PATCH"})
    applied = run_cli("apply", "plan.json", *flags)
    assert applied.exit_code == 0, applied.stderr
    waits = [
        line
        for result in (planned, applied)
        for line in result.stderr.splitlines()
        if line.startswith("waiting")
    ]
    if quiet:
        assert waits == []
        return
    assert summary(applied.stderr)["applied"] == 3
    assert waits == [
        "waiting 12 s: Graph throttled 1 of 1 reads (429, Retry-After)",
        "waiting 12 s: Graph throttled 1 of 3 writes (429, Retry-After)",
        "waiting 12 s: Graph throttled 2 of 4 writes (429, Retry-After)",
    ]
