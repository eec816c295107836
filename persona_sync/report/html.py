"""HTML renderers for plan, journal and employee reports: one self-contained file each.

Tables and charts that summarise are rendered here in Python (complete counts, readable
without script); the long lists (changes, writes) are embedded as compact JSON and paged
and filtered by the page's small script (see :mod:`persona_sync.report.table`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from html import escape
from typing import Any

from persona_sync.plan import EMPTY, Plan
from persona_sync.render import headline
from persona_sync.report.history import BEFORE, EmployeeReport, HistoryReport, PersonaSeries, Write
from persona_sync.report.page import page
from persona_sync.report.plan_view import PlanReport, TransitionMatrix, fact_items, fact_text
from persona_sync.report.population import Distribution, GroupTable
from persona_sync.report.svg import bar_chart, colours, journey_chart, line_chart
from persona_sync.report.table import DEFAULT_BUDGET, Cell, Column, EncodedTable, encode_table

SERVER_ROWS = 500  # rows of server-rendered lists (conflicts, foreign values) before "more"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _shown(value: str | None) -> str:
    return EMPTY if value is None else value


def _cards(items: Sequence[tuple[str, int]]) -> str:
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card" data-card="{_e(label)}"><b>{count:,}</b>'
            f"<span>{_e(label)}</span></div>"
            for label, count in items
        )
        + "</div>"
    )


def _meta(items: Sequence[tuple[str, str]]) -> str:
    return (
        '<dl class="meta">'
        + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items)
        + "</dl>"
    )


def _notes(notes: Sequence[str]) -> str:
    return "".join(f'<p class="note warn">{_e(n)}</p>' for n in notes)


def _heat(count: int, peak: int) -> str:
    if count <= 0 or peak <= 0:
        return "heat-0"
    return f"heat-{max(1, min(9, round(9 * count / peak)))}"


def _table(
    head: Sequence[str],
    rows: Iterator[Sequence[str]] | Sequence[Sequence[str]],
    numeric: Sequence[int] = (),
    css: str = "",
) -> str:
    """A plain table; cells are escaped here, ``numeric`` column indexes align right."""
    cls = f' class="{css}"' if css else ""
    out = [f'<div class="scroll"><table{cls}><thead><tr>']
    out += [f"<th{' class=num' if i in numeric else ''}>{_e(h)}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = (
            f"<td{' class=num' if i in numeric else ''}>{_e(cell)}</td>"
            for i, cell in enumerate(row)
        )
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _matrix(matrix: TransitionMatrix, list_id: str, extra: Mapping[str, str]) -> str:
    """Old (rows) x new (columns); each count is a button that filters the list below."""
    peak = matrix.peak
    out = [
        f'<div class="scroll"><table class="matrix" data-scenario="{_e(matrix.scenario)}">'
        "<thead><tr><th>old \\ new</th>"
    ]
    out += [f"<th>{_e(new)}</th>" for new in matrix.news]
    out.append('<th class="num">total</th></tr></thead><tbody>')
    column_totals = dict.fromkeys(matrix.news, 0)
    for old in matrix.olds:
        out.append(f"<tr><th>{_e(old)}</th>")
        row_total = 0
        for new in matrix.news:
            count = matrix.counts.get((old, new), 0)
            row_total += count
            column_totals[new] += count
            attrs = f'data-old="{_e(old)}" data-new="{_e(new)}" data-count="{count}"'
            if not count:
                out.append(f'<td class="cell num heat-0" {attrs}></td>')
                continue
            sets = "".join(f' data-set-{k}="{_e(v)}"' for k, v in extra.items())
            out.append(
                f'<td class="cell num {_heat(count, peak)}" {attrs}>'
                f'<button type="button" data-show-in="{_e(list_id)}"{sets} '
                f'data-set-scenario="{_e(matrix.scenario)}" data-set-old="{_e(old)}" '
                f'data-set-new="{_e(new)}" title="{_e(old)} -> {_e(new)}: {count}">'
                f"{count:,}</button></td>"
            )
        out.append(f'<td class="num">{row_total:,}</td></tr>')
    out.append(
        "<tr><th>total</th>"
        + "".join(f'<td class="num">{column_totals[n]:,}</td>' for n in matrix.news)
        + f'<td class="num" data-total="{matrix.total}">{matrix.total:,}</td></tr>'
    )
    out.append("</tbody></table></div>")
    return "".join(out)


def _group_table(table: GroupTable) -> str:
    """Groups (rows) x personas (columns); shading is the persona's share of the group."""
    personas = table.personas
    out = [
        f'<div class="scroll"><table class="groups" data-dimension="{_e(table.dimension.id)}">'
        f"<thead><tr><th>{_e(table.dimension.label)}</th>"
    ]
    out += [f"<th>{_e(p)}</th>" for p in personas]
    out.append('<th class="num">total</th></tr></thead><tbody>')
    rows = list(table.groups) + ([table.other] if table.other else [])
    for group in rows:
        css = ' class="muted"' if group is table.other else ""
        out.append(f'<tr data-group="{_e(group.name)}"><th{css}>{_e(group.name)}</th>')
        for persona in personas:
            count = group.counts.get(persona, 0)
            share = 100.0 * count / group.total if group.total else 0.0
            text = f"{count:,}" if count else ""
            out.append(
                f'<td class="num {_heat(count, group.total)}" data-persona="{_e(persona)}" '
                f'data-count="{count}" title="{_e(persona)}: {share:.1f}% of '
                f'{_e(group.name)}">{text}</td>'
            )
        out.append(f'<td class="num">{group.total:,}</td></tr>')
    out.append("</tbody></table></div>")
    if table.other:
        out.append(
            f'<p class="note">{table.group_count:,} groups; the largest '
            f"{len(table.groups)} are shown, the rest are summed.</p>"
        )
    return "".join(out)


def _list_widget(list_id: str, noun: str, encoded: EncodedTable, hint: str) -> str:
    source = f"{list_id}-data"
    note = ""
    if encoded.truncated:
        note = (
            f'<p class="note warn" data-role="truncated">This page holds the first '
            f"{encoded.embedded:,} of {encoded.total:,} {noun} to stay small; {_e(hint)}</p>"
        )
    return (
        f'{note}<div class="list" id="{list_id}" data-table-source="{source}" '
        f'data-noun="{_e(noun)}"><div class="controls">'
        f'<input type="search" data-role="search" aria-label="Search {_e(noun)}" '
        f'placeholder="Search {_e(noun)} (all words must match)">'
        '<span data-role="filters"></span>'
        '<label>per page <select data-role="page-size"><option>25</option>'
        "<option selected>100</option><option>500</option></select></label>"
        '<button type="button" data-role="prev">Previous</button><span data-role="page"></span>'
        '<button type="button" data-role="next">Next</button></div>'
        '<p class="status" data-role="status"></p>'
        '<noscript><p class="note">The list needs JavaScript; every count above is complete.'
        "</p></noscript>"
        '<div class="scroll"><table class="rows"><thead><tr></tr></thead><tbody></tbody>'
        "</table></div></div>\n"
        f'<script type="application/json" id="{source}">{encoded.json}</script>'
    )


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


def _distribution(dist: Distribution, palette: Mapping[str, str], dims: bool) -> str:
    out = [
        f"<h3>Scenario {_e(dist.scenario)}: {dist.total:,} in-scope employees "
        f'<span class="muted">({_e(dist.source)})</span></h3>',
        bar_chart(dist.counts, dist.total, palette, f"Employees per persona ({dist.scenario})"),
    ]
    for table in dist.tables:
        out.append(f"<h4>By {_e(table.dimension.label.lower())}</h4>")
        out.append(_group_table(table))
    if not dims:
        out.append(
            '<p class="note">Distribution by site, country and department needs the '
            "directory: run <code>persona-sync report PLAN --config FILE</code>.</p>"
        )
    return "".join(out)


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
    body = [
        '<section id="summary"><h2>Summary</h2>',
        f"<p><b>{_e(headline(plan))}</b></p>",
        _cards(
            [
                ("employees", s["employees"]),
                ("in scope", s["in_scope"]),
                ("out of scope", s["out_of_scope"]),
                ("unchanged", s["unchanged"]),
                ("changes", s["changes"]),
                ("employees changed", s["employees_changed"]),
                ("foreign values", s["foreign_values"]),
            ]
        ),
        _meta(
            [
                ("Directory", p.directory),
                (
                    "Target attributes",
                    ", ".join(sorted({c.attribute for c in plan.changes})) or "-",
                ),
                ("Rules checksum", p.rules_checksum),
                ("Config checksum", p.config_checksum),
                ("Plan checksum", plan.checksum),
                ("Made", p.created),
                ("Tool version", p.tool_version),
            ]
        ),
        _notes(report.notes),
        "</section>",
    ]
    body.append('<section id="distribution"><h2>Personas</h2>')
    body += [_distribution(d, palette, report.has_population) for d in report.distributions]
    body.append("</section>")
    usage = report.rule_usage
    body.append('<section id="rules"><h2>Decisions by rule</h2>')
    head = ["Scenario", "Rule", "Persona", "Employees", "Changes"]
    body.append(
        _table(
            head,
            [
                (
                    u.scenario,
                    u.rule,
                    u.persona,
                    "" if u.employees is None else f"{u.employees:,}",
                    f"{u.changes:,}",
                )
                for u in usage
            ],
            numeric=(3, 4),
            css="rule-usage",
        )
    )
    if not report.has_population:
        body.append(
            '<p class="note">Employees per rule across the whole scope needs the '
            "directory (--config); the changes column covers this plan.</p>"
        )
    body.append("</section>")
    body.append('<section id="transitions"><h2>Transitions</h2>')
    if report.matrices:
        body.append(
            '<p class="note">Old value (rows) to new value (columns); click a count to '
            "list those changes.</p>"
        )
    else:
        body.append('<p class="note">No changes: nothing moves.</p>')
    for matrix in report.matrices:
        body.append(f"<h3>Scenario {_e(matrix.scenario)}</h3>")
        body.append(_matrix(matrix, "change-list", {}))
    body.append("</section>")
    encoded = encode_table(*_change_table(plan), len(plan.changes), budget)
    body.append('<section id="changes"><h2>Changes</h2>')
    body.append(
        _list_widget(
            "change-list", "changes", encoded, "the plan's CSV or JSON holds every change."
        )
    )
    body.append("</section>")
    nav = [
        ("summary", "Summary"),
        ("distribution", "Personas"),
        ("rules", "Rules"),
        ("transitions", "Transitions"),
        ("changes", "Changes"),
    ]
    if plan.foreign:
        nav.append(("foreign", "Foreign values"))
        body.append('<section id="foreign"><h2>Foreign values left alone</h2>')
        body.append(
            _table(
                ["Employee", "DN", "Attribute", "Value", "Would be"],
                [
                    (f.employee, f.dn, f.attribute, f.value, _shown(f.wanted))
                    for f in plan.foreign[:SERVER_ROWS]
                ],
            )
        )
        if len(plan.foreign) > SERVER_ROWS:
            more = len(plan.foreign) - SERVER_ROWS
            body.append(f'<p class="note">{more:,} more in the plan.</p>')
        body.append("</section>")
    return page(report.title, f"{p.directory} - plan made {p.created}", nav, "\n".join(body))


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


def _series(series: PersonaSeries, palette: Mapping[str, str]) -> str:
    labels = ["before", *time_labels([p.time for p in series.points[1:]])]
    shown = [v for v in series.values if v != EMPTY] or list(series.values)
    lines = [(v, [p.counts.get(v, 0) for p in series.points]) for v in shown]
    kind = (
        "employees holding each value, counted back from the directory's current values"
        if series.anchored
        else "net change since before the first run (no directory read)"
    )
    out = [
        f'<h3>Scenario {_e(series.scenario)}</h3><p class="note">{_e(kind)}</p>',
        line_chart(labels, lines, palette, f"Personas over time ({series.scenario})"),
    ]
    head = ["After run", "Time", *series.values]
    rows = [
        (
            "(before the first run)" if p.run_id == BEFORE else p.run_id,
            "" if p.run_id == BEFORE else p.time,
            *[f"{p.counts.get(v, 0):,}" for v in series.values],
        )
        for p in series.points
    ]
    out.append(_table(head, rows, numeric=range(2, 2 + len(series.values)), css="series-table"))
    return "".join(out)


def _write_note(w: Write) -> str:
    if w.result == "conflict":
        return f"found {_shown(w.found)}"
    return w.message


def render_history_html(report: HistoryReport, budget: int = DEFAULT_BUDGET) -> str:
    palette = colours(report.personas)
    applied = sum(r.applied for r in report.runs)
    body = [
        '<section id="summary"><h2>Summary</h2>',
        _cards(
            [
                ("runs", len(report.runs)),
                ("applied writes", applied),
                ("conflicts", len(report.conflicts)),
                ("failed", len(report.failures)),
                ("rollbacks", len(report.rollbacks)),
            ]
        ),
        _meta([("Journal", report.source)]),
        _notes(report.notes),
        "</section>",
        '<section id="over-time"><h2>Personas over time</h2>',
    ]
    if not report.series:
        body.append('<p class="note">No applied writes in the journal yet.</p>')
    body += [_series(s, palette) for s in report.series]
    body.append('</section><section id="runs"><h2>Runs</h2>')
    body.append(
        _table(
            [
                "Run",
                "Started",
                "Command",
                "Status",
                "Planned",
                "Applied",
                "Conflicts",
                "Failed",
                "Not attempted",
                "Note",
            ],
            [
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
                    f"rollback of {r.rollback_of}"
                    if r.rollback_of
                    else f"rolled back by {r.rolled_back_by}"
                    if r.rolled_back_by
                    else "",
                )
                for r in report.runs
            ],
            numeric=(4, 5, 6, 7, 8),
            css="runs",
        )
    )
    body.append('</section><section id="transitions"><h2>Transitions applied</h2>')
    for matrix in report.matrices:
        body.append(f"<h3>Scenario {_e(matrix.scenario)}</h3>")
        body.append(_matrix(matrix, "write-list", {"result": "applied"}))
    if not report.matrices:
        body.append('<p class="note">None yet.</p>')
    body.append('</section><section id="conflicts"><h2>Conflicts and failures</h2>')
    trouble = [w for w in report.writes if w.result in ("conflict", "failed")]
    if trouble:
        body.append(
            '<p class="note">A conflict is a value someone changed after the plan; '
            "persona-sync left it alone.</p>"
        )
        body.append(
            _table(
                ["Run", "Time", "Employee", "Attribute", "Expected", "Found", "Wanted", "Result"],
                [
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
                css="conflicts",
            )
        )
        if len(trouble) > SERVER_ROWS:
            body.append(
                f'<p class="note">{len(trouble) - SERVER_ROWS:,} more: filter the '
                "writes below by result.</p>"
            )
    else:
        body.append('<p class="note">None.</p>')
    body.append('</section><section id="rollbacks"><h2>Rollbacks</h2>')
    if report.rollbacks:
        body.append(
            _table(
                ["Rollback run", "Started", "Rolled back", "Restored", "Kept (changed since)"],
                [
                    (r.run_id, r.started, r.rollback_of or "", f"{r.applied:,}", f"{r.conflicts:,}")
                    for r in report.rollbacks
                ],
                numeric=(3, 4),
                css="rollbacks",
            )
        )
    else:
        body.append('<p class="note">None.</p>')
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
    encoded = encode_table(columns, [values[c.key] for c in columns], len(writes), budget)
    body.append('</section><section id="writes"><h2>Writes</h2>')
    body.append(
        _list_widget("write-list", "writes", encoded, "the journal files hold every write.")
    )
    body.append("</section>")
    nav = [
        ("summary", "Summary"),
        ("over-time", "Over time"),
        ("runs", "Runs"),
        ("transitions", "Transitions"),
        ("conflicts", "Conflicts"),
        ("rollbacks", "Rollbacks"),
        ("writes", "Writes"),
    ]
    return page(report.title, report.source, nav, "\n".join(body))


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


def render_employee_html(report: EmployeeReport) -> str:
    palette = colours(report.personas)
    current = report.current()
    who = [("Employee", f"{emp} ({dn})") for emp, dn in report.employees]
    body = [
        '<section id="summary"><h2>Summary</h2>',
        _meta([("Looked up", report.key), *who, ("Journal", report.source)]),
        _cards(
            [
                ("journalled writes", len(report.events)),
                ("applied", sum(1 for e in report.events if e.result == "applied")),
                ("conflicts", sum(1 for e in report.events if e.result == "conflict")),
                ("planned", len(report.planned)),
            ]
        ),
    ]
    if current:
        body.append(
            "<p>Now: "
            + ", ".join(f"{_e(s)} = <b>{_e(v)}</b>" for s, v in sorted(current.items()))
            + "</p>"
        )
    body.append(_notes(report.notes) + '</section><section id="journey"><h2>Journey</h2>')
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
        body.append(f"<h3>Scenario {_e(scenario)}</h3>")
        body.append(
            journey_chart(
                steps, _shown(first.old), palette, f"Persona journey of {report.key} ({scenario})"
            )
        )
    body.append('</section><section id="events"><h2>Every change</h2>')
    body.append(
        _table(
            [
                "Time",
                "Run",
                "Command",
                "Scenario",
                "Attribute",
                "Old",
                "New",
                "Rule",
                "Result",
                "Note",
            ],
            [
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
                for e in report.events
            ],
            css="events",
        )
    )
    if not report.events:
        body.append('<p class="note">No journalled writes for this employee.</p>')
    nav = [("summary", "Summary"), ("journey", "Journey"), ("events", "Every change")]
    if report.planned:
        nav.append(("planned", "Planned"))
        body.append('</section><section id="planned"><h2>Planned, not yet applied</h2>')
        body.append(
            _table(
                ["Scenario", "Attribute", "Old", "New", "Rule", "Facts the rule read"],
                [
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
                css="planned",
            )
        )
    body.append("</section>")
    return page(report.title, report.source, nav, "\n".join(body))


def render_html(
    report: PlanReport | HistoryReport | EmployeeReport, budget: int = DEFAULT_BUDGET
) -> str:
    """The report as one HTML document."""
    if isinstance(report, PlanReport):
        return render_plan_html(report, budget)
    if isinstance(report, HistoryReport):
        return render_history_html(report, budget)
    return render_employee_html(report)
