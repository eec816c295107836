"""Markdown renderers, for pasting a report into a change ticket.

Same content as the HTML minus charts and the interactive list: long lists are cut at
``max_rows`` with a line saying how many were left out and where the rest is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from persona_sync.plan import EMPTY
from persona_sync.render import headline
from persona_sync.report.history import BEFORE, EmployeeReport, HistoryReport
from persona_sync.report.plan_view import PlanReport, TransitionMatrix, fact_text
from persona_sync.report.population import GroupTable

MAX_ROWS = 200
_SPECIAL = str.maketrans({c: "\\" + c for c in "\\|`*_[]<>"})


def md(value: object) -> str:
    """A table cell: Markdown and HTML characters escaped, on one line."""
    text = EMPTY if value is None else str(value)
    return " ".join(text.split()).translate(_SPECIAL)


def code(value: str) -> str:
    """Inline code, unless the text holds a backtick (then an escaped plain cell)."""
    return f"`{value}`" if "`" not in value and "\n" not in value else md(value)


def _table(
    head: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = ()
) -> list[str]:
    lines = [
        "| " + " | ".join(md(h) for h in head) + " |",
        "|" + "|".join("---:" if i in numeric else "---" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _share(count: int, total: int) -> str:
    return f"{100.0 * count / total:.1f}%" if total else "0.0%"


def _matrix(matrix: TransitionMatrix) -> list[str]:
    rows = [
        [
            old,
            *[matrix.counts.get((old, new), 0) or "" for new in matrix.news],
            sum(matrix.counts.get((old, new), 0) for new in matrix.news),
        ]
        for old in matrix.olds
    ]
    rows.append(
        [
            "total",
            *[sum(matrix.counts.get((o, new), 0) for o in matrix.olds) for new in matrix.news],
            matrix.total,
        ]
    )
    width = len(matrix.news) + 2
    return _table(["old \\ new", *matrix.news, "total"], rows, numeric=range(1, width))


def _groups(table: GroupTable) -> list[str]:
    rows = [
        [g.name, *[g.counts.get(p, 0) or "" for p in table.personas], g.total]
        for g in [*table.groups, *([table.other] if table.other else [])]
    ]
    lines = [f"#### By {table.dimension.label.lower()}", ""]
    lines += _table(
        [table.dimension.label, *table.personas, "total"],
        rows,
        numeric=range(1, len(table.personas) + 2),
    )
    return lines


def _more(shown: int, total: int, where: str) -> list[str]:
    return [f"_{total - shown:,} more not shown; {where}_", ""] if total > shown else []


def render_plan_markdown(report: PlanReport, max_rows: int = MAX_ROWS) -> str:
    plan = report.plan
    p = plan.provenance
    lines = [
        f"## {md(report.title)}",
        "",
        f"**{md(headline(plan))}**",
        "",
        f"- Directory: {code(p.directory)}",
        f"- Rules: {code(p.rules_checksum)}",
        f"- Config: {code(p.config_checksum)}",
        f"- Plan checksum: {code(plan.checksum)}",
        f"- Made: {md(p.created)} with persona-sync {md(p.tool_version)}",
        "",
    ]
    lines += [f"> {md(n)}" for n in report.notes] + ([""] if report.notes else [])
    for dist in report.distributions:
        lines += [f"### Personas ({md(dist.scenario)}): {dist.total:,} in scope", ""]
        lines += _table(
            ["Persona", "Employees", "Share"],
            [(name, n, _share(n, dist.total)) for name, n in dist.counts],
            (1, 2),
        )
        for table in dist.tables:
            lines += _groups(table)
    if not report.has_population:
        lines += ["_By site, country and department: run the report with --config._", ""]
    lines += ["### Decisions by rule", ""]
    lines += _table(
        ["Scenario", "Rule", "Persona", "Employees", "Changes"],
        [
            (u.scenario, u.rule, u.persona, "" if u.employees is None else u.employees, u.changes)
            for u in report.rule_usage
        ],
        (3, 4),
    )
    for matrix in report.matrices:
        lines += [f"### Transitions ({md(matrix.scenario)})", ""] + _matrix(matrix)
    if plan.changes:
        shown = plan.changes[:max_rows]
        lines += ["### Changes", ""]
        lines += _table(
            ["Employee", "Scenario", "Old", "New", "Rule", "Facts the rule read"],
            [
                (c.employee, c.scenario, c.old, c.new, c.rule or "-", fact_text(c.facts))
                for c in shown
            ],
        )
        lines += _more(len(shown), len(plan.changes), "the plan's CSV has every change.")
    lines += _listed(
        "Skipped (cannot be written here)",
        ["Employee", "Attribute", "New", "Reason"],
        [(k.employee, k.attribute, k.new, k.reason) for k in plan.skipped[:max_rows]],
        len(plan.skipped),
    )
    lines += _listed(
        "Foreign values left alone",
        ["Employee", "Attribute", "Value", "Would be"],
        [(f.employee, f.attribute, f.value, f.wanted) for f in plan.foreign[:max_rows]],
        len(plan.foreign),
    )
    return "\n".join(lines)


def _listed(title: str, head: Sequence[str], rows: list[Sequence[object]], total: int) -> list[str]:
    """A section listing the plan's items (the first ``max_rows``); none when empty."""
    if not total:
        return []
    lines = [f"### {title}", "", *_table(head, rows)]
    return lines + _more(len(rows), total, "see the plan's JSON.")


def render_history_markdown(report: HistoryReport, max_rows: int = MAX_ROWS) -> str:
    applied = sum(r.applied for r in report.runs)
    lines = [
        f"## {md(report.title)}",
        "",
        f"- Journal: {code(report.source)}",
        f"- Runs: {len(report.runs)}, applied writes: {applied:,}, conflicts: "
        f"{len(report.conflicts):,}, failed: {len(report.failures):,}, rollbacks: "
        f"{len(report.rollbacks)}",
        "",
    ]
    lines += [f"> {md(n)}" for n in report.notes] + ([""] if report.notes else [])
    for series in report.series:
        kind = (
            "counted back from the directory's current values"
            if series.anchored
            else "net change since before the first run"
        )
        lines += [f"### Personas over time ({md(series.scenario)}), {kind}", ""]
        lines += _table(
            ["After run", "Time", *series.values],
            [
                (
                    "(before the first run)" if pt.run_id == BEFORE else pt.run_id,
                    "" if pt.run_id == BEFORE else pt.time,
                    *[pt.counts.get(v, 0) for v in series.values],
                )
                for pt in series.points
            ],
            range(2, 2 + len(series.values)),
        )
    lines += ["### Runs", ""]
    lines += _table(
        ["Run", "Started", "Command", "Status", "Applied", "Conflicts", "Failed", "Note"],
        [
            (
                r.run_id,
                r.started,
                r.command,
                r.status,
                r.applied,
                r.conflicts,
                r.failed,
                f"rollback of {r.rollback_of}"
                if r.rollback_of
                else f"rolled back by {r.rolled_back_by}"
                if r.rolled_back_by
                else "",
            )
            for r in report.runs
        ],
        (4, 5, 6),
    )
    for matrix in report.matrices:
        lines += [f"### Transitions applied ({md(matrix.scenario)})", ""] + _matrix(matrix)
    trouble = [w for w in report.writes if w.result in ("conflict", "failed")]
    if trouble:
        lines += ["### Conflicts and failures", ""]
        lines += _table(
            ["Run", "Employee", "Attribute", "Expected", "Found", "Wanted", "Result"],
            [
                (
                    w.run_id,
                    w.employee,
                    w.attribute,
                    w.old,
                    w.found if w.result == "conflict" else w.message,
                    w.new,
                    w.result,
                )
                for w in trouble[:max_rows]
            ],
        )
        lines += _more(min(len(trouble), max_rows), len(trouble), "see the HTML report.")
    return "\n".join(lines)


def render_employee_markdown(report: EmployeeReport) -> str:
    lines = [f"## {md(report.title)}", ""]
    lines += [f"- Employee: {md(emp)} ({code(dn)})" for emp, dn in report.employees]
    lines += [f"- Journal: {code(report.source)}"]
    current = report.current()
    if current:
        lines.append(
            "- Now: " + ", ".join(f"{md(s)} = **{md(v)}**" for s, v in sorted(current.items()))
        )
    lines.append("")
    if report.events:
        lines += _table(
            ["Time", "Run", "Command", "Scenario", "Old", "New", "Rule", "Result"],
            [
                (e.time, e.run_id, e.command, e.scenario, e.old, e.new, e.rule or "-", e.result)
                for e in report.events
            ],
        )
    else:
        lines += ["_No journalled writes for this employee._", ""]
    if report.planned:
        lines += ["### Planned, not yet applied", ""]
        lines += _table(
            ["Scenario", "Old", "New", "Rule", "Facts the rule read"],
            [(c.scenario, c.old, c.new, c.rule or "-", fact_text(c.facts)) for c in report.planned],
        )
    return "\n".join(lines)


def render_markdown(
    report: PlanReport | HistoryReport | EmployeeReport, max_rows: int = MAX_ROWS
) -> str:
    """The report as Markdown (GitHub/GitLab/Jira-compatible tables)."""
    if isinstance(report, PlanReport):
        return render_plan_markdown(report, max_rows)
    if isinstance(report, HistoryReport):
        return render_history_markdown(report, max_rows)
    return render_employee_markdown(report)
