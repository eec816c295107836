"""A hostile value in every field a report shows reaches every report page as text.

The templates escape by default (Jinja2 autoescape); this test puts one value that would
open a script element and break out of a quoted attribute into each field that reaches a
page (employee, DN, title fact, persona values, rule, scenario, site, note, source,
title), renders the plan, journal and employee reports, and reads each page back as a
browser's parser would.
"""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from persona_sync.journal import list_runs
from persona_sync.plan import ForeignValue, PlannedChange
from persona_sync.report import (
    PopulationRow,
    build_employee_report,
    build_history_report,
    build_plan_report,
    render_html,
)
from tests.report.conftest import _write, sample_plan, write_run

EVIL = "<script>alert(1)</script>\"&'<>"
DN = f"CN={EVIL},OU=HQ,DC=example,DC=com"


class _Page(HTMLParser):
    """What a browser's parser makes of the page: tags, attributes, text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[dict[str, str | None]] = []
        self.attribute_names: set[str] = set()
        self.attribute_values: list[str] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))
        self.attribute_names.update(name for name, _ in attrs)
        self.attribute_values += [value for _, value in attrs if value is not None]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _plan_report_html() -> str:
    plan = sample_plan()
    evil = PlannedChange(EVIL, DN, EVIL, "extensionAttribute10", EVIL, EVIL, EVIL, EVIL,
                         {"role.title": EVIL, "account.disabled": False})  # fmt: skip
    summary = {**plan.summary, "scenarios": {EVIL: {"personas": {EVIL: 1}, "transitions": {}}}}
    foreign = ForeignValue(EVIL, DN, "persona", "extensionAttribute10", EVIL, EVIL)
    provenance = dataclasses.replace(plan.provenance, directory=f"file:/{EVIL}")
    plan = dataclasses.replace(
        plan,
        changes=(*plan.changes, evil),
        foreign=(*plan.foreign, foreign),
        summary=summary,
        provenance=provenance,
    )
    population = [PopulationRow(EVIL, {EVIL: EVIL}, {EVIL: EVIL}, {"site": EVIL})]
    report = build_plan_report(plan, population, notes=[EVIL], title=EVIL)
    return render_html(report)


@pytest.fixture
def evil_journal(tmp_path: Path) -> Path:
    """Three runs for the hostile employee: written, then a conflict, then a failure."""
    state = tmp_path / "state"
    writes = [
        _write(EVIL, DN, None, EVIL, EVIL),
        _write(EVIL, DN, EVIL, "vip", EVIL, result="conflict", found=EVIL, message=EVIL),
        _write(EVIL, DN, EVIL, "vip", EVIL, result="failed", message=EVIL),
    ]
    for day, write in enumerate(writes, start=1):
        run_id = f"2026010{day}T080000Z-{'abc'[day - 1] * 6}"
        write_run(state, run_id, f"2026-01-0{day}T08:00:00.000+00:00", "sync", [write])
    return state


def _pages(evil_journal: Path) -> dict[str, str]:
    runs = list_runs(evil_journal)
    planned = sample_plan().changes + (PlannedChange(EVIL, DN, EVIL, "a", EVIL, EVIL, EVIL, EVIL,
                                                     {"role.title": EVIL}),)  # fmt: skip
    return {
        "plan": _plan_report_html(),
        "history": render_html(build_history_report(runs, EVIL, notes=[EVIL], title=EVIL)),
        "employee": render_html(build_employee_report(runs, EVIL, EVIL, planned)),
    }


def test_a_hostile_value_reaches_every_report_page_as_text(evil_journal: Path) -> None:
    expected_scripts = {
        "plan": [{"type": "application/json", "id": "change-list-data"}, {}],
        "history": [{"type": "application/json", "id": "write-list-data"}, {}],
        "employee": [{}],
    }
    for name, html in _pages(evil_journal).items():
        assert "<script>alert" not in html, name
        page = _Page(html)
        # No element, attribute or script of its own: only the page's scripts, and every
        # attribute name is one the templates write.
        assert page.scripts == expected_scripts[name], name
        odd = {n for n in page.attribute_names if not re.fullmatch(r"[a-z][a-z0-9-]*", n)}
        assert not odd, (name, odd)
        # The value itself is there, whole, as text a reader sees.
        shown = [text for text in page.text if EVIL in text]
        assert len(shown) >= 3, (name, shown)
        assert any(EVIL in value for value in page.attribute_values), name


def test_the_value_is_escaped_where_the_server_renders_it(evil_journal: Path) -> None:
    e = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&amp;&#39;&lt;&gt;"  # markupsafe's spelling
    expected = {
        "plan": [
            f"<h1>{e}</h1>",  # the title
            f'<p class="note warn">{e}</p>',  # a note
            f'<tr data-group="{e}"><th>{e}</th>',  # a site in the distribution
            f'title="{e} -> {e}: 1"',  # a transition's button
            f"<td>{e}</td>",  # rule usage and foreign values
        ],
        "history": [f"<h1>{e}</h1>", f"<dd>{e}</dd>", f"<th>{e}</th>", f"<td>{e}</td>"],
        "employee": [f"<dd>{e}</dd>", f"<td>{e}</td>", f" = <b>{e}</b></p>"],
    }
    for name, html in _pages(evil_journal).items():
        for fragment in expected[name]:
            assert fragment in html, (name, fragment)


def test_the_employee_report_found_all_three_writes(evil_journal: Path) -> None:
    report = build_employee_report(list_runs(evil_journal), EVIL, EVIL)
    assert [e.result for e in report.events] == ["applied", "conflict", "failed"]
