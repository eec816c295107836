"""Journal reports: runs, personas over time, conflicts, rollbacks, one employee's journey."""

from __future__ import annotations

from pathlib import Path

from persona_sync.journal import list_runs
from persona_sync.report import build_employee_report, build_history_report, render_markdown
from persona_sync.report.history import BEFORE
from persona_sync.report.html import render_html, time_labels
from tests.report.conftest import ANNA, check_golden, sample_plan


def test_runs_with_counts_and_rollback_links(journal_state: Path) -> None:
    report = build_history_report(list_runs(journal_state), "journal")
    rows = [
        (r.run_id[-6:], r.command, r.applied, r.conflicts, r.rollback_of, r.rolled_back_by)
        for r in report.runs
    ]
    assert rows == [
        ("aaaaaa", "sync", 3, 0, None, None),
        ("bbbbbb", "apply", 2, 0, None, "20260202T090000Z-cccccc"),
        ("cccccc", "rollback", 2, 0, "20260201T080000Z-bbbbbb", None),
        ("dddddd", "sync", 2, 1, None, None),
    ]
    assert [(w.employee, w.found) for w in report.conflicts] == [("bob", "vip")]
    assert [r.run_id for r in report.rollbacks] == ["20260202T090000Z-cccccc"]


def test_personas_over_time_as_net_change_without_the_directory(journal_state: Path) -> None:
    (series,) = build_history_report(list_runs(journal_state), "journal").series
    assert not series.anchored
    assert series.values == ("(empty)", "engineer", "plant-floor", "vip")
    table = [(p.run_id[-6:], dict(p.counts)) for p in series.points]
    # The last run met bob's hand edit (engineer -> vip) as a conflict: counted there.
    assert table == [
        (BEFORE[-6:], {"(empty)": 0, "engineer": 0, "plant-floor": 0, "vip": 0}),
        ("aaaaaa", {"(empty)": -3, "engineer": 2, "plant-floor": 0, "vip": 1}),
        ("bbbbbb", {"(empty)": -3, "engineer": 0, "plant-floor": 2, "vip": 1}),
        ("cccccc", {"(empty)": -3, "engineer": 2, "plant-floor": 0, "vip": 1}),
        ("dddddd", {"(empty)": -2, "engineer": 0, "plant-floor": 1, "vip": 1}),
    ]


def test_personas_over_time_counted_back_from_the_directory(journal_state: Path) -> None:
    # Now: amuller plant-floor, bob vip (by hand), cfo empty, and 5 never touched.
    current = {"persona": {"plant-floor": 1, "vip": 1, "(empty)": 6, "legacy-tag": 4}}
    (series,) = build_history_report(list_runs(journal_state), "journal", current).series
    assert series.anchored
    assert series.values == ("(empty)", "engineer", "plant-floor", "vip")  # journal values
    assert [dict(p.counts) for p in series.points] == [
        {"(empty)": 8, "engineer": 0, "plant-floor": 0, "vip": 0},
        {"(empty)": 5, "engineer": 2, "plant-floor": 0, "vip": 1},
        {"(empty)": 5, "engineer": 0, "plant-floor": 2, "vip": 1},
        {"(empty)": 5, "engineer": 2, "plant-floor": 0, "vip": 1},
        {"(empty)": 6, "engineer": 0, "plant-floor": 1, "vip": 1},
    ]


def test_transitions_count_applied_writes_only(journal_state: Path) -> None:
    (matrix,) = build_history_report(list_runs(journal_state), "journal").matrices
    assert dict(matrix.counts) == {
        ("(empty)", "engineer"): 2,
        ("(empty)", "vip"): 1,
        ("engineer", "plant-floor"): 3,
        ("plant-floor", "engineer"): 2,
        ("vip", "(empty)"): 1,
    }


def test_employee_journey_by_id_or_dn(journal_state: Path) -> None:
    runs = list_runs(journal_state)
    by_id = build_employee_report(runs, "AMULLER", "journal")
    by_dn = build_employee_report(runs, ANNA.upper(), "journal")
    assert by_id.events == by_dn.events
    assert [(e.old, e.new, e.rule, e.command) for e in by_id.events] == [
        (None, "engineer", "engineer-by-title", "sync"),
        ("engineer", "plant-floor", "plant-production", "apply"),
        ("plant-floor", "engineer", "rollback", "rollback"),
        ("engineer", "plant-floor", "plant-production", "sync"),
    ]
    assert by_id.current() == {"persona": "plant-floor"}
    bob = build_employee_report(runs, "bob", "journal")
    assert bob.current() == {"persona": "vip"}  # the conflict saw someone else's value
    nobody = build_employee_report(runs, "nobody", "journal")
    assert nobody.events == () and nobody.employees == ()


def test_employee_report_adds_planned_changes(journal_state: Path) -> None:
    report = build_employee_report(
        list_runs(journal_state), "bob", "journal", sample_plan().changes
    )
    assert [(c.old, c.new) for c in report.planned] == [("engineer", "plant-floor")]


def test_markdown_golden(journal_state: Path) -> None:
    runs = list_runs(journal_state)
    check_golden("history.md", render_markdown(build_history_report(runs, "state/journal")))
    check_golden(
        "employee.md",
        render_markdown(build_employee_report(runs, "bob", "state/journal", sample_plan().changes)),
    )


def test_html_is_deterministic_and_marks_the_chart(journal_state: Path) -> None:
    runs = list_runs(journal_state)
    html = render_html(build_history_report(runs, "state/journal"))
    assert html == render_html(build_history_report(list_runs(journal_state), "state/journal"))
    assert 'data-value="plant-floor" data-counts="0,0,2,0,1"' in html
    employee = render_html(build_employee_report(runs, "amuller", "state/journal"))
    assert employee.count('class="segment"') == 5  # the start and four writes


def test_time_labels_show_what_differs() -> None:
    assert time_labels(["2026-01-01T08:00:00+00:00", "2026-01-01T09:30:00+00:00"]) == [
        "08:00:00",
        "09:30:00",
    ]
    assert time_labels(["2026-01-01T08:00:00", "2026-02-01T09:30:00"]) == [
        "01-01 08:00",
        "02-01 09:30",
    ]
    assert time_labels(["2025-12-31T08:00:00", "2026-02-01T09:30:00"]) == [
        "2025-12-31",
        "2026-02-01",
    ]
