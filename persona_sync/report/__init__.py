"""Reports for auditors and IT leads: a plan, the journal's history, one employee's journey.

Library functions take plain values (a :class:`~persona_sync.plan.Plan`, journal run
records, population rows) and return report values; renderers turn those into one
self-contained HTML file or Markdown. The CLI (``persona-sync report``) only adapts
files and the directory to these inputs.
"""

from persona_sync.report.history import (
    EmployeeReport,
    HistoryReport,
    build_employee_report,
    build_history_report,
)
from persona_sync.report.html import render_html
from persona_sync.report.markdown import render_markdown
from persona_sync.report.plan_view import PlanReport, build_plan_report
from persona_sync.report.population import (
    DEFAULT_DIMENSIONS,
    Dimension,
    PopulationRow,
    attribute_counts,
    population_rows,
)

__all__ = [
    "DEFAULT_DIMENSIONS",
    "Dimension",
    "EmployeeReport",
    "HistoryReport",
    "PlanReport",
    "PopulationRow",
    "attribute_counts",
    "build_employee_report",
    "build_history_report",
    "build_plan_report",
    "population_rows",
    "render_html",
    "render_markdown",
]
