"""The journal seen over time: runs, personas per run, conflicts, rollbacks, one employee.

Input is what :func:`persona_sync.journal.list_runs` returns (plain records). The
journal holds writes, not head counts, so the personas-over-time series is built from
each run's applied writes, plus the outside changes its conflicts revealed: anchored at
the directory's current values when the caller read them (walking back run by run),
otherwise as net change since before the first run. Outside changes that no run met as
a conflict are not in the journal; anchored points before them are estimates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from persona_sync.journal import RunRecord
from persona_sync.plan import EMPTY, PlannedChange
from persona_sync.report.plan_view import TransitionMatrix, transition_matrices

BEFORE = "before"


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    started: str
    command: str
    status: str
    planned: int
    applied: int
    conflicts: int
    failed: int
    skipped: int
    unresolved: int
    rollback_of: str | None
    rolled_back_by: str | None


@dataclass(frozen=True, slots=True)
class Write:
    """One journalled write (or attempt) with its run's context."""

    run_id: str
    time: str
    command: str
    employee: str
    dn: str
    scenario: str
    attribute: str
    old: str | None
    new: str | None
    rule: str | None
    result: str
    message: str
    found: str | None


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    run_id: str  # BEFORE for the point before the first run
    time: str
    counts: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class PersonaSeries:
    """Employees per value of one scenario's attribute, before and after each run."""

    scenario: str
    anchored: bool
    values: tuple[str, ...]
    points: tuple[SeriesPoint, ...]


@dataclass(frozen=True)
class HistoryReport:
    title: str
    source: str
    runs: tuple[RunRow, ...]
    series: tuple[PersonaSeries, ...]
    matrices: tuple[TransitionMatrix, ...]
    writes: tuple[Write, ...]
    notes: tuple[str, ...] = ()

    @property
    def conflicts(self) -> tuple[Write, ...]:
        return tuple(w for w in self.writes if w.result == "conflict")

    @property
    def failures(self) -> tuple[Write, ...]:
        return tuple(w for w in self.writes if w.result == "failed")

    @property
    def rollbacks(self) -> tuple[RunRow, ...]:
        return tuple(r for r in self.runs if r.rollback_of)

    @property
    def personas(self) -> list[str]:
        names = {v for s in self.series for v in s.values}
        for matrix in self.matrices:
            names.update(matrix.olds)
            names.update(matrix.news)
        return sorted(names)


def run_rows(runs: Sequence[RunRecord]) -> tuple[RunRow, ...]:
    rolled_back = {
        str(r.header["rollback_of"]): r.run_id for r in runs if r.header.get("rollback_of")
    }
    return tuple(
        RunRow(
            run_id=r.run_id,
            started=str(r.header.get("time", "")),
            command=str(r.header.get("command", "")),
            status=r.status,
            planned=int(r.header.get("changes", len(r.pending)) or 0),
            applied=r.count("applied"),
            conflicts=r.count("conflict"),
            failed=r.count("failed"),
            skipped=r.count("skipped"),
            unresolved=len(r.unresolved()),
            rollback_of=_text(r.header.get("rollback_of")),
            rolled_back_by=rolled_back.get(r.run_id),
        )
        for r in runs
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def journal_writes(runs: Sequence[RunRecord]) -> tuple[Write, ...]:
    """Every write record of every run, in journal order."""
    writes = []
    for run in runs:
        command = str(run.header.get("command", ""))
        for w in run.writes:
            writes.append(
                Write(
                    run_id=run.run_id,
                    time=str(w.get("time", "")),
                    command=command,
                    employee=str(w.get("employee", "")),
                    dn=str(w.get("dn", "")),
                    scenario=str(w.get("scenario") or w.get("attribute", "")),
                    attribute=str(w.get("attribute", "")),
                    old=_text(w.get("old")),
                    new=_text(w.get("new")),
                    rule=_text(w.get("rule")),
                    result=str(w.get("result", "")),
                    message=str(w.get("message") or ""),
                    found=_text(w.get("found")),
                )
            )
    return tuple(writes)


def persona_series(
    runs: Sequence[RunRecord],
    writes: Sequence[Write],
    current: Mapping[str, Mapping[str, int]] | None = None,
) -> tuple[PersonaSeries, ...]:
    """Per scenario: counts before the first run and after each run.

    Changes made outside persona-sync show up only where a later run met them as a
    conflict; those are counted in that run. Others (never met) make anchored points
    before them estimates.
    """
    deltas: dict[str, dict[str, Counter[str]]] = {}
    for w in writes:
        # An applied write moves old -> new; a conflict reveals a change made outside
        # persona-sync before that run (old -> the value found), which counts as well.
        if w.result == "applied":
            was, now = w.old, w.new
        elif w.result == "conflict":
            was, now = w.old, w.found
        else:
            continue
        if was == now:
            continue
        per_run = deltas.setdefault(w.scenario, {}).setdefault(w.run_id, Counter())
        per_run[now or EMPTY] += 1
        per_run[was or EMPTY] -= 1
    series = []
    for scenario in sorted(deltas):
        by_run = deltas[scenario]
        values = sorted({v for c in by_run.values() for v in c})
        steps = [
            (r.run_id, str(r.header.get("time", "")), by_run.get(r.run_id, Counter())) for r in runs
        ]
        anchor = current.get(scenario) if current is not None else None
        if anchor is not None:
            state = {v: int(anchor.get(v, 0)) for v in values}
            after: list[dict[str, int]] = []
            for _, _, delta in reversed(steps):
                after.append(dict(state))
                for value in values:
                    state[value] -= delta.get(value, 0)
            start = state
            after.reverse()
        else:
            start = dict.fromkeys(values, 0)
            after = []
            state = dict(start)
            for _, _, delta in steps:
                for value in values:
                    state[value] += delta.get(value, 0)
                after.append(dict(state))
        first_time = steps[0][1] if steps else ""
        points = [SeriesPoint(BEFORE, first_time, start)]
        points += [
            SeriesPoint(run_id, time, counts)
            for (run_id, time, _), counts in zip(steps, after, strict=True)
        ]
        series.append(PersonaSeries(scenario, anchor is not None, tuple(values), tuple(points)))
    return tuple(series)


def build_history_report(
    runs: Sequence[RunRecord],
    source: str,
    current: Mapping[str, Mapping[str, int]] | None = None,
    notes: Sequence[str] = (),
    title: str = "persona-sync journal report",
) -> HistoryReport:
    """Runs, personas over time, transitions of applied writes, conflicts and rollbacks."""
    writes = journal_writes(runs)
    applied = (
        (w.scenario, w.old, w.new) for w in writes if w.result == "applied" and w.old != w.new
    )
    return HistoryReport(
        title,
        source,
        run_rows(runs),
        persona_series(runs, writes, current),
        transition_matrices(applied),
        writes,
        tuple(notes),
    )


@dataclass(frozen=True)
class EmployeeReport:
    """One employee's persona journey: every journalled write, plus pending plan changes."""

    title: str
    key: str
    source: str
    employees: tuple[tuple[str, str], ...]  # (id, dn) pairs the key matched
    events: tuple[Write, ...]
    rolled_back_by: Mapping[str, str]
    planned: tuple[PlannedChange, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def current(self) -> dict[str, str]:
        """Scenario -> the value last seen: written by a run, or found by a conflict."""
        state: dict[str, str] = {}
        for event in self.events:
            if event.result == "applied":
                state[event.scenario] = event.new or EMPTY
            elif event.result == "conflict":
                state[event.scenario] = event.found or EMPTY
        return state

    @property
    def personas(self) -> list[str]:
        names = {e.old or EMPTY for e in self.events} | {e.new or EMPTY for e in self.events}
        names |= {e.found or EMPTY for e in self.events if e.result == "conflict"}
        names |= {c.new or EMPTY for c in self.planned}
        return sorted(names)


def matches_employee(key: str, employee: str, dn: str) -> bool:
    wanted = key.casefold()
    return wanted in (employee.casefold(), dn.casefold())


def build_employee_report(
    runs: Sequence[RunRecord],
    key: str,
    source: str,
    planned: Sequence[PlannedChange] = (),
    title: str | None = None,
) -> EmployeeReport:
    """The writes whose employee id or DN is ``key`` (case-insensitive), oldest first."""
    events = tuple(w for w in journal_writes(runs) if matches_employee(key, w.employee, w.dn))
    mine = tuple(c for c in planned if matches_employee(key, c.employee, c.dn))
    who = dict.fromkeys([(e.employee, e.dn) for e in events] + [(c.employee, c.dn) for c in mine])
    rolled_back = {row.rollback_of: row.run_id for row in run_rows(runs) if row.rollback_of}
    return EmployeeReport(
        title or f"Persona history of {key}", key, source, tuple(who), events, rolled_back, mine
    )
