"""HTML renderers for plan, journal and employee reports: one self-contained file each.

Each report is a Jinja2 template (``templates/plan.html``, ``history.html``,
``employee.html``) on a shared layout (``base.html``) and shared pieces (``parts.html``),
rendered with autoescape and StrictUndefined: every value is escaped unless it is marked
as markup here, so none reaches the page unescaped by omission, and a misspelt variable
fails instead of printing nothing. Only two kinds of value are marked: chart SVG (built
by :mod:`persona_sync.report.svg`, which escapes its own texts) and the embedded list JSON
(made safe inside ``<script>`` by :func:`persona_sync.report.table.script_json`).

Tables and charts that summarise are rendered server-side (complete counts, readable
without script); the long lists (changes, writes) are embedded as compact JSON and paged
and filtered by the page's small script (see :mod:`persona_sync.report.table`). This
module shapes the report values into rows and cells; the templates hold the markup.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from persona_sync.plan import EMPTY, Plan
from persona_sync.render import headline
from persona_sync.report.history import BEFORE, EmployeeReport, HistoryReport, PersonaSeries, Write
from persona_sync.report.page import POLICY, SCRIPT, STYLE
from persona_sync.report.plan_view import PlanReport, TransitionMatrix, fact_items, fact_text
from persona_sync.report.svg import bar_chart, colours, journey_chart, line_chart
from persona_sync.report.table import DEFAULT_BUDGET, Cell, Column, encode_table

SERVER_ROWS = 500  # rows of server-rendered lists (conflicts, foreign values) before "more"


def _shown(value: str | None) -> str:
    return EMPTY if value is None else value


def _heat(count: int, peak: int) -> str:
    if count <= 0 or peak <= 0:
        return "heat-0"
    return f"heat-{max(1, min(9, round(9 * count / peak)))}"


def _matrix_rows(matrix: TransitionMatrix) -> list[tuple[str, list[tuple[str, int]], int]]:
    """Per old value: (old, [(new, count)] in column order, row total)."""
    rows = []
    for old in matrix.olds:
        cells = [(new, matrix.counts.get((old, new), 0)) for new in matrix.news]
        rows.append((old, cells, sum(count for _, count in cells)))
    return rows


def _matrix_totals(matrix: TransitionMatrix) -> list[int]:
    """Column totals, in column order."""
    return [sum(matrix.counts.get((old, new), 0) for old in matrix.olds) for new in matrix.news]


def _embedded_json(text: str) -> Markup:
    # script_json escapes <, > and &, so the text cannot end the <script> it sits in;
    # HTML-escaping it would corrupt the JSON (a script element's text is not decoded).
    return Markup(text)


@functools.cache
def _environment() -> Environment:
    """The templates shipped in persona_sync/report/templates, compiled once per process."""
    env = Environment(
        loader=PackageLoader("persona_sync.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["thousands"] = lambda number: f"{number:,}"
    env.filters["embedded_json"] = _embedded_json
    env.globals.update(
        heat=_heat,
        matrix_rows=_matrix_rows,
        matrix_totals=_matrix_totals,
        policy=POLICY,
        style=Markup(STYLE),  # page.py's constants: the policy allows exactly these by hash
        script=Markup(SCRIPT),
    )
    return env


def _render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def _svg(chart: str) -> Markup:
    """Chart SVG from persona_sync.report.svg, which escapes every text it places."""
    return Markup(chart)


# -- plan --------------------------------------------------------------------------------

CHANGE_COLUMNS = (
    Column("employee", "Employee", "text"),
    Column("dn", "DN", "dn"),
    Column("scenario", "Scenario", "ref", True),
    Column("attribute", "Attribute"),
    Column("old", "Old", "ref", True),
    Column("new", "New", "ref", True),
    Column("rule", "Rule", "ref", True),
    Column("facts", "Facts the rule read", "refs"),
)


def _change_table(plan: Plan) -> tuple[list[Column], list[Sequence[Cell]]]:
    """The change list column by column; scenario and attribute only if they vary."""
    changes = plan.changes
    memo: dict[tuple[str, type, Any], str] = {}
    values: dict[str, Sequence[Cell]] = {
        "employee": [c.employee for c in changes],
        "dn": [c.dn for c in changes],
        "scenario": [c.scenario for c in changes],
        "attribute": [c.attribute for c in changes],
        "old": [EMPTY if c.old is None else c.old for c in changes],
        "new": [EMPTY if c.new is None else c.new for c in changes],
        "rule": [c.rule or "-" for c in changes],
        "facts": [fact_items(c.facts, memo) for c in changes],
    }
    columns = [
        c
        for c in CHANGE_COLUMNS
        if c.key not in ("scenario", "attribute") or len(set(values[c.key])) > 1
    ]
    return columns, [values[c.key] for c in columns]


def render_plan_html(report: PlanReport, budget: int = DEFAULT_BUDGET) -> str:
    plan = report.plan
    s = plan.summary
    p = plan.provenance
    palette = colours(report.personas)
    targets = ", ".join(sorted({c.attribute for c in plan.changes})) or "-"
    return _render(
        "plan.html",
        title=report.title,
        subtitle=f"{p.directory} - plan made {p.created}",
        report=report,
        plan=plan,
        headline=headline(plan),
        cards=[
            ("employees", s["employees"]),
            ("in scope", s["in_scope"]),
            ("out of scope", s["out_of_scope"]),
            ("unchanged", s["unchanged"]),
            ("changes", s["changes"]),
            ("employees changed", s["employees_changed"]),
            ("foreign values", s["foreign_values"]),
        ],
        meta=[
            ("Directory", p.directory),
            ("Target attributes", targets),
            ("Rules checksum", p.rules_checksum),
            ("Config checksum", p.config_checksum),
            ("Plan checksum", plan.checksum),
            ("Made", p.created),
            ("Tool version", p.tool_version),
        ],
        distributions=[
            (
                d,
                _svg(
                    bar_chart(d.counts, d.total, palette, f"Employees per persona ({d.scenario})")
                ),
            )
            for d in report.distributions
        ],
        rule_rows=[
            (
                u.scenario,
                u.rule,
                u.persona,
                "" if u.employees is None else f"{u.employees:,}",
                f"{u.changes:,}",
            )
            for u in report.rule_usage
        ],
        changes=encode_table(*_change_table(plan), len(plan.changes), budget),
        foreign_rows=[
            (f.employee, f.dn, f.attribute, f.value, _shown(f.wanted))
            for f in plan.foreign[:SERVER_ROWS]
        ],
        foreign_more=max(0, len(plan.foreign) - SERVER_ROWS),
    )


# -- journal -----------------------------------------------------------------------------

WRITE_COLUMNS = (
    Column("time", "Time"),
    Column("run", "Run", "ref", True),
    Column("employee", "Employee", "text"),
    Column("dn", "DN", "dn"),
    Column("scenario", "Scenario", "ref", True),
    Column("old", "Old", "ref", True),
    Column("new", "New", "ref", True),
    Column("rule", "Rule", "ref", True),
    Column("result", "Result", "ref", True),
    Column("note", "Note"),
)


def time_labels(times: Sequence[str]) -> list[str]:
    """Short axis labels for ISO times: the part that differs (clock, day, or date)."""
    days = {t[:10] for t in times}
    if len(days) <= 1:
        return [t[11:19] for t in times]
    if len({t[:4] for t in times}) <= 1:
        return [t[5:16].replace("T", " ") for t in times]
    return [t[:10] for t in times]


@dataclass(frozen=True, slots=True)
class _SeriesView:
    """One scenario's personas over time: the chart and the table under it."""

    scenario: str
    kind: str
    chart: Markup
    head: list[str]
    rows: list[tuple[str, ...]]
    numeric: range


def _series(series: PersonaSeries, palette: Mapping[str, str]) -> _SeriesView:
    labels = ["before", *time_labels([p.time for p in series.points[1:]])]
    shown = [v for v in series.values if v != EMPTY] or list(series.values)
    lines = [(v, [p.counts.get(v, 0) for p in series.points]) for v in shown]
    kind = (
        "employees holding each value, counted back from the directory's current values"
        if series.anchored
        else "net change since before the first run (no directory read)"
    )
    chart = line_chart(labels, lines, palette, f"Personas over time ({series.scenario})")
    rows = [
        (
            "(before the first run)" if p.run_id == BEFORE else p.run_id,
            "" if p.run_id == BEFORE else p.time,
            *[f"{p.counts.get(v, 0):,}" for v in series.values],
        )
        for p in series.points
    ]
    head = ["After run", "Time", *series.values]
    numeric = range(2, 2 + len(series.values))
    return _SeriesView(series.scenario, kind, _svg(chart), head, rows, numeric)


def _write_note(w: Write) -> str:
    if w.result == "conflict":
        return f"found {_shown(w.found)}"
    return w.message


def _run_note(rollback_of: str | None, rolled_back_by: str | None) -> str:
    if rollback_of:
        return f"rollback of {rollback_of}"
    return f"rolled back by {rolled_back_by}" if rolled_back_by else ""


def render_history_html(report: HistoryReport, budget: int = DEFAULT_BUDGET) -> str:
    palette = colours(report.personas)
    trouble = [w for w in report.writes if w.result in ("conflict", "failed")]
    writes = report.writes
    values: dict[str, Sequence[Cell]] = {
        "time": [w.time for w in writes],
        "run": [w.run_id for w in writes],
        "employee": [w.employee for w in writes],
        "dn": [w.dn for w in writes],
        "scenario": [w.scenario for w in writes],
        "old": [_shown(w.old) for w in writes],
        "new": [_shown(w.new) for w in writes],
        "rule": [w.rule or "-" for w in writes],
        "result": [w.result for w in writes],
        "note": [_write_note(w) for w in writes],
    }
    columns = [c for c in WRITE_COLUMNS if c.key != "scenario" or len(set(values["scenario"])) > 1]
    return _render(
        "history.html",
        title=report.title,
        subtitle=report.source,
        report=report,
        cards=[
            ("runs", len(report.runs)),
            ("applied writes", sum(r.applied for r in report.runs)),
            ("conflicts", len(report.conflicts)),
            ("failed", len(report.failures)),
            ("rollbacks", len(report.rollbacks)),
        ],
        series=[_series(s, palette) for s in report.series],
        run_rows=[
            (
                r.run_id,
                r.started,
                r.command,
                r.status,
                f"{r.planned:,}",
                f"{r.applied:,}",
                f"{r.conflicts:,}",
                f"{r.failed:,}",
                f"{r.skipped + r.unresolved:,}",
                _run_note(r.rollback_of, r.rolled_back_by),
            )
            for r in report.runs
        ],
        trouble_rows=[
            (
                w.run_id,
                w.time,
                w.employee,
                w.attribute,
                _shown(w.old),
                _shown(w.found) if w.result == "conflict" else w.message,
                _shown(w.new),
                w.result,
            )
            for w in trouble[:SERVER_ROWS]
        ],
        trouble_more=max(0, len(trouble) - SERVER_ROWS),
        rollback_rows=[
            (r.run_id, r.started, r.rollback_of or "", f"{r.applied:,}", f"{r.conflicts:,}")
            for r in report.rollbacks
        ],
        writes=encode_table(columns, [values[c.key] for c in columns], len(writes), budget),
    )


# -- one employee ------------------------------------------------------------------------


def _event_note(w: Write, rolled_back_by: Mapping[str, str]) -> str:
    if w.command == "rollback":
        return "rollback"
    if w.result == "conflict":
        return f"conflict: found {_shown(w.found)}"
    if w.result != "applied":
        return f"{w.result}: {w.message}".rstrip(": ")
    if w.run_id in rolled_back_by:
        return f"rolled back by {rolled_back_by[w.run_id]}"
    return ""


def _journeys(report: EmployeeReport, palette: Mapping[str, str]) -> list[tuple[str, Markup]]:
    """Per scenario with a value set: the journey chart."""
    journeys = []
    for scenario in sorted({e.scenario for e in report.events}):
        # Applied writes set a value; a conflict shows a value someone else set.
        steps = [
            (e.time, e.run_id, _shown(e.new) if e.result == "applied" else _shown(e.found))
            for e in report.events
            if e.scenario == scenario and e.result in ("applied", "conflict")
        ]
        if not steps:
            continue
        first = next(e for e in report.events if e.scenario == scenario)
        label = f"Persona journey of {report.key} ({scenario})"
        chart = journey_chart(steps, _shown(first.old), palette, label)
        journeys.append((scenario, _svg(chart)))
    return journeys


def render_employee_html(report: EmployeeReport) -> str:
    palette = colours(report.personas)
    who = [("Employee", f"{emp} ({dn})") for emp, dn in report.employees]
    events = report.events
    return _render(
        "employee.html",
        title=report.title,
        subtitle=report.source,
        report=report,
        meta=[("Looked up", report.key), *who, ("Journal", report.source)],
        cards=[
            ("journalled writes", len(events)),
            ("applied", sum(1 for e in events if e.result == "applied")),
            ("conflicts", sum(1 for e in events if e.result == "conflict")),
            ("planned", len(report.planned)),
        ],
        current=sorted(report.current().items()),
        journeys=_journeys(report, palette),
        event_rows=[
            (
                e.time,
                e.run_id,
                e.command,
                e.scenario,
                e.attribute,
                _shown(e.old),
                _shown(e.new),
                e.rule or "-",
                e.result,
                _event_note(e, report.rolled_back_by),
            )
            for e in events
        ],
        planned_rows=[
            (
                c.scenario,
                c.attribute,
                _shown(c.old),
                _shown(c.new),
                c.rule or "-",
                fact_text(c.facts),
            )
            for c in report.planned
        ],
    )


def render_html(
    report: PlanReport | HistoryReport | EmployeeReport, budget: int = DEFAULT_BUDGET
) -> str:
    """The report as one HTML document."""
    if isinstance(report, PlanReport):
        return render_plan_html(report, budget)
    if isinstance(report, HistoryReport):
        return render_history_html(report, budget)
    return render_employee_html(report)
