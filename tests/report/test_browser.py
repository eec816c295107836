"""HTML reports in a real headless Chromium: no console errors, no network, right counts,
working filters and pages. Screenshots go to test-artifacts/report/."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from persona_sync.journal import list_runs
from persona_sync.plan import Plan, PlannedChange
from persona_sync.report import (
    build_employee_report,
    build_history_report,
    build_plan_report,
    render_html,
)
from tests.report.conftest import HOSTILE, OpenedReport, sample_plan, sample_population, screenshot

Open = Callable[..., OpenedReport]


def _clean(report: OpenedReport) -> None:
    assert report.console == []
    assert report.foreign_requests() == []


def _status(report: OpenedReport, list_id: str) -> str:
    return str(report.page.inner_text(f"#{list_id} [data-role=status]"))


def _column(report: OpenedReport, list_id: str, key: str) -> list[str]:
    cells = report.page.query_selector_all(f"#{list_id} tbody td.c-{key}")
    return [str(c.text_content()) for c in cells]


def _wait_status(report: OpenedReport, list_id: str, text: str) -> None:
    report.page.wait_for_function(
        "([sel, text]) => document.querySelector(sel).textContent === text",
        arg=[f"#{list_id} [data-role=status]", text],
        timeout=5_000,
    )


def test_plan_report_counts_filters_and_escaping(open_report: Open) -> None:
    report = open_report(render_html(build_plan_report(sample_plan(), sample_population())))
    page = report.page
    bars = {
        b.get_attribute("data-persona"): (
            b.get_attribute("data-count"),
            b.query_selector("text.value").text_content(),
        )
        for b in page.query_selector_all("svg.bar-chart g.bar")
    }
    assert bars == {
        "engineer": ("3", "3 (33.3%)"),
        "knowledge-worker": ("3", "3 (33.3%)"),
        "plant-floor": ("2", "2 (22.2%)"),
        "vip": ("1", "1 (11.1%)"),
    }
    munich = page.query_selector('table[data-dimension="site"] tr[data-group="Munich HQ"]')
    assert [c.text_content() for c in munich.query_selector_all("td")] == ["1", "2", "", "1", "4"]
    matrix = {
        (c.get_attribute("data-old"), c.get_attribute("data-new")): c.text_content()
        for c in page.query_selector_all("table.matrix td.cell")
        if c.text_content()
    }
    assert matrix == {
        ("(empty)", "engineer"): "2",
        ("(empty)", "plant-floor"): "1",
        ("(empty)", "vip"): "1",
        ("engineer", "plant-floor"): "1",
        ("vip", "knowledge-worker"): "1",
    }

    assert _status(report, "change-list") == "6 of 6 changes match"
    employees = _column(report, "change-list", "employee")
    assert employees == ["amuller", "bob", "cfo", "dora", "eve", HOSTILE]
    dns = _column(report, "change-list", "dn")
    assert dns[2] == 'CN=Chief <Finance> & "Co",OU=HQ,DC=example,DC=com'
    assert _column(report, "change-list", "facts")[4] == (
        "seniority=(missing); role.family=general; account.disabled=false"
    )
    assert page.title() == "persona-sync plan report"  # the hostile name did not run
    screenshot(page, "plan")

    page.fill("#change-list [data-role=search]", "PLANT production")
    _wait_status(report, "change-list", "2 of 6 changes match")
    assert _column(report, "change-list", "employee") == ["amuller", "bob"]
    page.select_option('#change-list select[data-filter="old"]', "engineer")
    _wait_status(report, "change-list", "1 of 6 changes match")
    assert _column(report, "change-list", "employee") == ["bob"]

    page.click('table.matrix td[data-old="(empty)"][data-new="engineer"] button')
    _wait_status(report, "change-list", "2 of 6 changes match")
    assert _column(report, "change-list", "employee") == ["dora", HOSTILE]
    assert page.input_value("#change-list [data-role=search]") == ""
    assert page.input_value('#change-list select[data-filter="new"]') == "engineer"
    screenshot(page, "plan-filtered")
    _clean(report)


def _big_plan(count: int) -> Plan:
    base = sample_plan()
    changes = tuple(
        PlannedChange(
            f"user{i:05}",
            f"CN=User {i:05},OU=Dept {i % 7},DC=example,DC=com",
            "persona",
            "extensionAttribute10",
            None,
            ("engineer", "vip", "plant-floor")[i % 3],
            None,
            f"rule-{i % 3}",
            {"role.family": f"family-{i % 5}"},
        )
        for i in range(count)
    )
    return dataclasses.replace(base, changes=changes, foreign=())


def test_change_list_pages(open_report: Open) -> None:
    report = open_report(render_html(build_plan_report(_big_plan(1234))))
    page = report.page
    assert _status(report, "change-list") == "1234 of 1234 changes match"
    assert page.inner_text("#change-list [data-role=page]") == "page 1 of 13"
    assert len(_column(report, "change-list", "employee")) == 100
    assert page.is_disabled("#change-list [data-role=prev]")
    page.click("#change-list [data-role=next]")
    assert page.inner_text("#change-list [data-role=page]") == "page 2 of 13"
    assert _column(report, "change-list", "employee")[0] == "user00100"
    page.select_option("#change-list [data-role=page-size]", "500")
    assert page.inner_text("#change-list [data-role=page]") == "page 1 of 3"
    page.click("#change-list [data-role=next]")
    page.click("#change-list [data-role=next]")
    assert len(_column(report, "change-list", "employee")) == 234
    assert page.is_disabled("#change-list [data-role=next]")
    page.select_option('#change-list select[data-filter="rule"]', "rule-1")
    _wait_status(report, "change-list", "411 of 1234 changes match")
    _clean(report)


def test_truncated_list_says_so(open_report: Open) -> None:
    report = open_report(render_html(build_plan_report(_big_plan(2000)), budget=20_000))
    page = report.page
    note = page.inner_text("[data-role=truncated]")
    assert note.startswith("This page holds the first ") and "of 2,000 changes" in note
    status = _status(report, "change-list")
    assert status.endswith(" of 2000)") and "(this page holds the first " in status
    # The matrix still counts every change.
    assert page.get_attribute("table.matrix td[data-total]", "data-total") == "2000"
    _clean(report)


def test_history_report(open_report: Open, journal_state: Path) -> None:
    runs = list_runs(journal_state)
    report = open_report(render_html(build_history_report(runs, str(journal_state))))
    page = report.page
    series = {
        g.get_attribute("data-value"): g.get_attribute("data-counts")
        for g in page.query_selector_all("svg.line-chart g.series")
    }
    assert series == {"engineer": "0,2,0,2,0", "plant-floor": "0,0,2,0,1", "vip": "0,1,1,1,1"}
    runs_rows = page.query_selector_all("table.runs tbody tr")
    assert [r.query_selector_all("td")[5].text_content() for r in runs_rows] == ["3", "2", "2", "2"]
    assert "rollback of 20260201T080000Z-bbbbbb" in runs_rows[2].text_content()
    conflicts = page.query_selector_all("table.conflicts tbody tr")
    assert [c.text_content() for c in conflicts[0].query_selector_all("td")][2:6] == [
        "bob",
        "extensionAttribute10",
        "engineer",
        "vip",
    ]
    assert _status(report, "write-list") == "10 of 10 writes match"
    page.select_option('#write-list select[data-filter="result"]', "conflict")
    _wait_status(report, "write-list", "1 of 10 writes match")
    page.click('table.matrix td[data-old="engineer"][data-new="plant-floor"] button')
    _wait_status(report, "write-list", "3 of 10 writes match")
    screenshot(page, "history")
    _clean(report)


def test_employee_report(open_report: Open, journal_state: Path) -> None:
    runs = list_runs(journal_state)
    html = render_html(build_employee_report(runs, "bob", "journal", sample_plan().changes))
    report = open_report(html)
    page = report.page
    segments = [s.get_attribute("data-value") for s in page.query_selector_all("g.segment")]
    assert segments == ["(empty)", "engineer", "plant-floor", "engineer", "vip"]
    results = [
        r.query_selector_all("td")[8].text_content()
        for r in page.query_selector_all("table.events tbody tr")
    ]
    assert results == ["applied", "applied", "applied", "conflict"]
    assert page.query_selector("table.planned") is not None
    screenshot(page, "employee")
    _clean(report)


@pytest.mark.slow
def test_hundred_thousand_changes_load_and_filter(open_report: Open) -> None:
    report = open_report(render_html(build_plan_report(_big_plan(100_000))))
    assert _status(report, "change-list") == "100000 of 100000 changes match"
    report.page.fill("#change-list [data-role=search]", "user09999")
    _wait_status(report, "change-list", "1 of 100000 changes match")
    _clean(report)
