"""Renderers for plans and runs: table (people), JSON and CSV (scripts), Markdown (tickets:
the report's Markdown renderer)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from persona_sync.apply import RunReport
from persona_sync.directory.base import ChangeResult
from persona_sync.plan import EMPTY, Plan, canonical_json

Renderer = Callable[[Plan], str | bytes]


def headline(plan: Plan) -> str:
    s = plan.summary
    n = s["changes"]
    text = (
        f"{n} change{'s' if n != 1 else ''} for {s['employees_changed']} employees "
        f"({s['in_scope']} in scope, {s['out_of_scope']} out of scope, "
        f"{s['unchanged']} unchanged"
    )
    if s["foreign_values"]:
        text += f", {s['foreign_values']} foreign values left alone"
    if s.get("skipped"):
        text += f", {s['skipped']} skipped"
    problems = s.get("org_chart_problems", 0)
    if problems:
        text += f", {problems} org-chart problem{'s' if problems != 1 else ''} (see the log)"
    return text + ")"


def read_line(plan: Plan) -> str:
    """How the plan's read went, for --delta runs: a delta's counts, or why it read in full."""
    read = plan.summary.get("read") or {}
    n = read.get("entries_read", 0)
    entries = f"{n} entr{'ies' if n != 1 else 'y'}"
    if read.get("mode") == "delta":
        text = (
            f"read: delta since the last read: {entries} read, {read.get('changed', 0)} "
            f"changed, {read.get('removed', 0)} removed; {read.get('re_evaluated', 0)} "
            "employees re-evaluated"
        )
    else:
        text = f"read: {read.get('reason') or 'full read'}; {entries}"
    return "\n".join([text, *(f"read: {note}" for note in read.get("notes", ()))])


def feed_lines(plan: Plan) -> list[str]:
    """One line per feed: its rows, the employees in scope without a row and the rows that
    match no employee, with the plan's examples."""
    lines = []
    for name, feed in (plan.summary.get("feeds") or {}).items():
        without = feed["employees_without_row"]
        orphans = feed["rows_without_employee"]
        rows = [f"{r['key']} at line {r['line']}" for r in feed["rows_without_employee_examples"]]
        lines.append(
            f"feed {name} ({feed['path']}): {_count(feed['rows'], 'row')}; "
            f"{_count(without, 'employee')} in scope without a row"
            f"{_examples(feed['employees_without_row_examples'], without)}; "
            f"{_count(orphans, 'row')} matching no employee{_examples(rows, orphans)}"
        )
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def _examples(shown: list[str], total: int) -> str:
    if not shown:
        return ""
    more = ", ..." if total > len(shown) else ""
    return f" ({', '.join(shown)}{more})"


def _shown(value: str | None) -> str:
    return EMPTY if value is None else value


def render_table(plan: Plan) -> str:
    lines = [f"Plan: {headline(plan)}", ""]
    if plan.changes:
        rows = [("EMPLOYEE", "ATTRIBUTE", "OLD", "NEW", "RULE")] + [
            (c.employee, c.attribute, _shown(c.old), _shown(c.new), c.rule or "-")
            for c in plan.changes
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for i, row in enumerate(rows):
            arrow = "   " if i == 0 else "-> "
            lines.append(
                f"  {row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:<{widths[2]}} "
                f"{arrow}{row[3]:<{widths[3]}}  {row[4]}"
            )
        lines.append("")
    for scenario, data in plan.summary["scenarios"].items():
        lines.append(f"Personas ({scenario}), as the rules assign them:")
        for persona, count in sorted(data["personas"].items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {persona:<28} {count:>7}")
        if data["transitions"]:
            lines.append(f"Transitions ({scenario}):")
            for move, count in sorted(data["transitions"].items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"  {move:<44} {count:>7}")
        lines.append("")
    if plan.foreign:
        lines.append("Foreign values (not personas; left alone unless owns_attribute: true):")
        for f in plan.foreign:
            lines.append(
                f"  {f.employee}  {f.attribute} = {f.value!r} (would be {_shown(f.wanted)})"
            )
        lines.append("")
    feeds = feed_lines(plan)
    if feeds:
        lines.append("Feeds:")
        lines.extend(f"  {line}" for line in feeds)
        lines.append("")
    if plan.skipped:
        lines.append("Skipped (cannot be written in this directory):")
        for k in plan.skipped:
            lines.append(
                f"  {k.employee}  {k.attribute}: {_shown(k.old)} -> {_shown(k.new)}: {k.reason}"
            )
        lines.append("")
    lines.append(f"Checksum: {plan.checksum}")
    return "\n".join(lines)


def render_json(plan: Plan) -> str:
    """The plan file's text (see :func:`render_json_bytes`)."""
    return render_json_bytes(plan).decode("utf-8")


def render_json_bytes(plan: Plan) -> bytes:
    """Stable JSON in UTF-8: sorted keys, one change per line in its canonical form, the
    text the checksum covers (readable, diffable, and fast: the indenting encoder is pure
    Python and takes seconds on 100,000 changes; each change is encoded once, and the
    checksum reuses those texts; a plan from the snapshot has them already)."""
    texts = plan.change_bytes
    data: dict[str, Any] = {"checksum": plan.checksum, **plan.header(), "changes": texts}
    lines = [b"{"]
    keys = sorted(data)
    for position, key in enumerate(keys):
        comma = "," if position < len(keys) - 1 else ""
        value = data[key]
        if isinstance(value, list) and value:
            lines.append(f"  {json.dumps(key)}: [".encode())
            items = texts if key == "changes" else [canonical_json(i).encode() for i in value]
            lines.append(b"    " + b",\n    ".join(items))  # one line each
            lines.append(f"  ]{comma}".encode())
        else:
            text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
            lines.append(
                f"  {json.dumps(key)}: {text.replace(chr(10), chr(10) + '  ')}{comma}".encode()
            )
    lines.append(b"}")
    return b"\n".join(lines)


CSV_COLUMNS = ("employee", "dn", "scenario", "attribute", "old", "new", "persona", "rule", "facts")


def render_csv(plan: Plan) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for c in plan.changes:
        writer.writerow(
            [
                c.employee,
                c.dn,
                c.scenario,
                c.attribute,
                c.old or "",
                c.new or "",
                c.persona or "",
                c.rule or "",
                json.dumps(dict(c.facts), sort_keys=True, ensure_ascii=False),
            ]
        )
    return out.getvalue()


def render_markdown(plan: Plan) -> str:
    """The plan as the Markdown report renders it (for a change ticket or a pull request):
    one Markdown renderer, with its escaping, for both."""
    from persona_sync.report.markdown import render_plan_markdown
    from persona_sync.report.plan_view import build_plan_report

    return render_plan_markdown(build_plan_report(plan, title="persona-sync plan"))


RENDERERS: dict[str, Renderer] = {
    "table": render_table,
    "json": render_json_bytes,
    "csv": render_csv,
    "markdown": render_markdown,
}


def run_summary(report: RunReport) -> str:
    """One line: what the run did, how it ended, where its journal is."""
    c = report.counts
    text = (
        f"run {report.run_id}: {c['applied']} applied, {c['unchanged']} already set, "
        f"{c['conflict']} conflicts, {c['failed']} failed"
    )
    if c["unknown"]:
        text += f", {c['unknown']} unconfirmed (the next run reads them back)"
    if c["skipped"]:
        text += f", {c['skipped']} not sent"
    if report.status != "complete":
        text += f"; {report.status}"
    return text + f"; journal {report.journal}"


CONFLICTS_SHOWN = 100


def conflict_lines(report: RunReport) -> list[str]:
    """Conflicts one per employee (each needs a look); failures once per distinct message."""
    lines = []
    conflicts = [r for r in report.results if r.status == "conflict"]
    for r in conflicts[:CONFLICTS_SHOWN]:
        ch = r.change
        lines.append(f"conflict: {ch.employee} ({ch.dn}) {ch.attribute}: {r.message}")
    if len(conflicts) > CONFLICTS_SHOWN:
        lines.append(
            f"conflict: and {len(conflicts) - CONFLICTS_SHOWN} more, listed in {report.journal}"
        )
    failures: dict[tuple[str, str], list[ChangeResult]] = {}
    for r in report.results:
        if r.status in ("failed", "unknown"):
            failures.setdefault((r.status, r.message), []).append(r)
    for (status, message), group in failures.items():
        if report.status == "aborted" and message == report.reason:
            continue  # the one "stopped:" line says it
        ch = group[0].change
        if len(group) == 1:
            lines.append(f"{status}: {ch.employee} ({ch.dn}) {ch.attribute}: {message}")
        else:
            names = ", ".join(r.change.employee for r in group[:3])
            more = ", ..." if len(group) > 3 else ""
            lines.append(f"{status}: {len(group)} employees ({names}{more}): {message}")
    return lines
