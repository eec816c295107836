"""A 100,000-change plan: the HTML stays under 10 MB with every change, and renders fast."""

from __future__ import annotations

import json

import pytest

from bench.report_bench import synthetic_plan
from persona_sync.report import build_plan_report, render_html, render_markdown

LIMIT_BYTES = 10 * 1024 * 1024


def _embedded(html: str) -> int:
    start = html.index('id="change-list-data">') + len('id="change-list-data">')
    return len(json.loads(html[start : html.index("</script>", start)])["rows"])


def test_hundred_thousand_changes_fit_in_ten_megabytes() -> None:
    plan, rows = synthetic_plan(100_000, 100_000)
    html = render_html(build_plan_report(plan, rows))
    assert len(html.encode()) < LIMIT_BYTES
    assert _embedded(html) == 100_000


def test_markdown_stays_short() -> None:
    plan, _ = synthetic_plan(5_000, 5_000)
    text = render_markdown(build_plan_report(plan))
    assert text.count("\n| u0") == 200
    assert "_4,800 more not shown; the plan's CSV has every change._" in text


@pytest.mark.slow
def test_more_than_fits_is_cut_with_a_note() -> None:
    plan, _ = synthetic_plan(200_000, 200_000)
    html = render_html(build_plan_report(plan))
    assert len(html.encode()) < LIMIT_BYTES
    assert 100_000 < _embedded(html) < 200_000
    assert "of 200,000 changes to stay small" in html
