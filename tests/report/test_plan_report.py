"""Plan reports: counts, transitions, rule usage; Markdown golden; HTML escaping and size."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser

from persona_sync.plan import EMPTY
from persona_sync.report import build_plan_report, render_html, render_markdown
from persona_sync.report.markdown import md
from persona_sync.report.page import POLICY, SCRIPT, STYLE
from tests.report.conftest import HOSTILE, check_golden, sample_plan, sample_population


def test_transition_matrix_agrees_with_the_plan_summary() -> None:
    plan = sample_plan()
    report = build_plan_report(plan)
    (matrix,) = report.matrices
    flat = {f"{old} -> {new}": n for (old, new), n in matrix.counts.items()}
    assert flat == plan.summary["scenarios"]["persona"]["transitions"]
    assert matrix.olds == (EMPTY, "engineer", "vip")
    assert matrix.news == ("engineer", "plant-floor", "knowledge-worker", "vip")
    assert matrix.total == len(plan.changes)


def test_rule_usage_counts_population_and_changes() -> None:
    report = build_plan_report(sample_plan(), sample_population())
    usage = {(u.rule, u.persona): (u.employees, u.changes) for u in report.rule_usage}
    assert usage == {
        ("engineer-by-title", "engineer"): (3, 2),
        ("default", "knowledge-worker"): (3, 1),
        ("plant-production", "plant-floor"): (2, 2),
        ("vip-executive", "vip"): (1, 1),
    }
    without = build_plan_report(sample_plan())
    assert {u.employees for u in without.rule_usage} == {None}


def test_markdown_golden_with_population() -> None:
    report = build_plan_report(
        sample_plan(), sample_population(), notes=["The config changed since this plan was made."]
    )
    check_golden("plan.md", render_markdown(report))


def test_markdown_golden_without_population_cut_at_max_rows() -> None:
    check_golden("plan-short.md", render_markdown(build_plan_report(sample_plan()), max_rows=2))


def test_markdown_cells_cannot_break_the_table_or_inject_markup() -> None:
    assert md("a|b\nc") == "a\\|b c"
    assert md(HOSTILE) == "\\<img src=x onerror=\"document.title='pwned'\"\\>"
    assert md(None) == EMPTY


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()
        self.scripts: list[dict[str, str | None]] = []
        self.metas: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)
        if tag == "script":
            self.scripts.append(dict(attrs))
        if tag == "meta":
            self.metas.append(dict(attrs))


def test_html_is_self_contained_escaped_and_deterministic() -> None:
    report = build_plan_report(sample_plan(), sample_population())
    html = render_html(report)
    assert html == render_html(build_plan_report(sample_plan(), sample_population()))
    parsed = _Collector()
    parsed.feed(html)
    assert "img" not in parsed.tags and "onerror" not in parsed.attributes  # names stay text
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert not re.search(r"<(link|iframe|object|embed|img)\b", html)
    assert parsed.scripts == [{"type": "application/json", "id": "change-list-data"}, {}]
    policy = {"http-equiv": "Content-Security-Policy", "content": POLICY}  # attribute unescaped
    assert policy in parsed.metas
    assert f"<style>{STYLE}</style>" in html and f"<script>{SCRIPT}</script>" in html
    assert "<th>Finance &amp; &lt;Control&gt;</th>" in html  # server-rendered: escaped
    assert '"\\u003cimg src=x onerror=\\"document.title=' in html  # embedded: JSON-escaped


def test_html_embeds_every_change_for_the_page_list() -> None:
    plan = sample_plan()
    html = render_html(build_plan_report(plan))
    start = html.index('id="change-list-data">') + len('id="change-list-data">')
    data = json.loads(html[start : html.index("</script>", start)])
    assert data["total"] == len(data["rows"]) == len(plan.changes)
    assert [c["key"] for c in data["columns"]] == ["employee", "dn", "old", "new", "rule", "facts"]
    assert data["rows"][0][0] == "amuller"
    assert HOSTILE in [row[0] for row in data["rows"]]


def test_html_without_population_says_how_to_get_groups() -> None:
    html = render_html(build_plan_report(sample_plan()))
    assert "Distribution by site, country and department needs the directory" in html
    assert 'data-dimension="site"' not in html
    html = render_html(build_plan_report(sample_plan(), sample_population()))
    assert 'data-dimension="site"' in html and 'data-dimension="department"' in html


def test_several_scenarios_get_their_own_matrix_and_a_scenario_column() -> None:
    plan = sample_plan()
    refresh = [
        dataclasses.replace(c, scenario="refresh", attribute="extensionAttribute11")
        for c in plan.changes[:2]
    ]
    refresh_summary = {"personas": {"plant-floor": 9}, "transitions": {}}
    summary = {
        **plan.summary,
        "scenarios": {**plan.summary["scenarios"], "refresh": refresh_summary},
    }
    plan = dataclasses.replace(plan, changes=plan.changes + tuple(refresh), summary=summary)
    report = build_plan_report(plan)
    assert [m.scenario for m in report.matrices] == ["persona", "refresh"]
    assert [d.scenario for d in report.distributions] == ["persona", "refresh"]
    html = render_html(report)
    assert '"key":"scenario"' in html and '"key":"attribute"' in html
    assert "### Transitions (refresh)" in render_markdown(report)


def test_an_empty_plan_renders() -> None:
    plan = dataclasses.replace(sample_plan(), changes=(), foreign=())
    html = render_html(build_plan_report(plan))
    assert "No changes: nothing moves." in html
    assert '"rows":[]' in html
