"""Report fixtures: a plan and a journal with awkward names, golden files, a real Chromium.

The sample data is built by hand with fixed times so that reports are byte-for-byte
reproducible (golden files). Employees' names carry what real directories carry and a
report must survive: markup characters, quotes, ampersands, escaped commas in DNs,
non-ASCII letters.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import persona_sync.cli.report_cmds  # noqa: F401 - registers `report` and `catalog` on the cli
from persona_sync.journal import JOURNAL_DIR
from persona_sync.plan import ForeignValue, Plan, PlannedChange, Provenance
from persona_sync.report.population import PopulationRow
from tests.conftest import REPO

GOLDEN = Path(__file__).parent / "golden"
CATALOG_RULES = Path(__file__).parent / "catalog_rules"
ARTIFACTS = REPO / "test-artifacts" / "report"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"


def check_golden(name: str, text: str) -> None:
    """Compare with tests/report/golden/NAME; PERSONA_SYNC_UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if os.environ.get("PERSONA_SYNC_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert text == expected, f"{name} differs; rerun with PERSONA_SYNC_UPDATE_GOLDEN=1 and review"


def _change(
    employee: str,
    dn: str,
    old: str | None,
    new: str | None,
    rule: str | None,
    facts: dict[str, Any],
) -> PlannedChange:
    return PlannedChange(
        employee, dn, "persona", "extensionAttribute10", old, new, new, rule, facts
    )


def sample_plan() -> Plan:
    changes = (
        _change(
            "amuller",
            "CN=Müller\\, Anna,OU=Plant,DC=example,DC=com",
            None,
            "plant-floor",
            "plant-production",
            {"role.family": "production", "account.disabled": False},
        ),
        _change(
            "bob",
            "CN=Bob,OU=Plant,DC=example,DC=com",
            "engineer",
            "plant-floor",
            "plant-production",
            {"role.family": "production", "account.disabled": False},
        ),
        _change(
            "cfo",
            'CN=Chief <Finance> & "Co",OU=HQ,DC=example,DC=com',
            None,
            "vip",
            "vip-executive",
            {"seniority": 10.0, "account.disabled": False},
        ),
        _change(
            "dora",
            "CN=Dora,OU=HQ,DC=example,DC=com",
            None,
            "engineer",
            "engineer-by-title",
            {"role.family": "engineering", "account.disabled": False},
        ),
        _change(
            "eve",
            "CN=Eve,OU=HQ,DC=example,DC=com",
            "vip",
            "knowledge-worker",
            "default",
            {"seniority": None, "role.family": "general", "account.disabled": False},
        ),
        _change(
            HOSTILE,
            "CN=Mallory\\, <b>Bold</b>,OU=HQ,DC=example,DC=com",
            None,
            "engineer",
            "engineer-by-title",
            {"role.family": "engineering", "account.disabled": False},
        ),
    )
    foreign = (
        ForeignValue(
            "legacy",
            "CN=Legacy,OU=HQ,DC=example,DC=com",
            "persona",
            "extensionAttribute10",
            "old|tag",
            "knowledge-worker",
        ),
    )
    summary = {
        "employees": 10,
        "in_scope": 9,
        "out_of_scope": 1,
        "unchanged": 2,
        "changes": 6,
        "employees_changed": 6,
        "foreign_values": 1,
        "org_chart_problems": 0,
        "scenarios": {
            "persona": {
                "personas": {"engineer": 3, "knowledge-worker": 3, "plant-floor": 2, "vip": 1},
                "transitions": {
                    "(empty) -> engineer": 2,
                    "(empty) -> plant-floor": 1,
                    "(empty) -> vip": 1,
                    "engineer -> plant-floor": 1,
                    "vip -> knowledge-worker": 1,
                },
            }
        },
    }
    provenance = Provenance(
        "0.1.0",
        "sha256:rules",
        "sha256:config",
        "file:/srv/export.ldif",
        "2026-01-02T03:04:05+00:00",
    )
    return Plan(changes, foreign, summary, provenance)


def sample_population() -> list[PopulationRow]:
    """Nine in-scope employees matching sample_plan's summary."""

    def row(
        name: str, persona: str, rule: str, site: str | None, country: str, department: str
    ) -> PopulationRow:
        return PopulationRow(
            name,
            {"persona": persona},
            {"persona": rule},
            {"site": site, "country": country, "department": department},
        )

    return [
        row("amuller", "plant-floor", "plant-production", "Plant Linz", "Austria", "Production"),
        row("bob", "plant-floor", "plant-production", "Plant Linz", "Austria", "Production"),
        row("cfo", "vip", "vip-executive", "Munich HQ", "Germany", "Finance & <Control>"),
        row("dora", "engineer", "engineer-by-title", "Munich HQ", "Germany", "R&D"),
        row("eve", "knowledge-worker", "default", "Munich HQ", "Germany", "Marketing"),
        row(HOSTILE, "engineer", "engineer-by-title", None, "Germany", "R&D"),
        row("finn", "engineer", "engineer-by-title", "Zürich Office", "Switzerland", "R&D"),
        row("gia", "knowledge-worker", "default", "Zürich Office", "Switzerland", "Marketing"),
        row("hal", "knowledge-worker", "default", "Munich HQ", "Germany", "Marketing"),
    ]


def _record(kind: str, run_id: str, time: str, **fields: Any) -> str:
    return (
        json.dumps(
            {"type": kind, "run_id": run_id, "time": time, **fields},
            ensure_ascii=False,
            sort_keys=True,
        )
        + "\n"
    )


def _write(
    employee: str,
    dn: str,
    old: str | None,
    new: str | None,
    rule: str | None,
    result: str = "applied",
    found: str | None = None,
    message: str = "",
) -> dict[str, Any]:
    return {
        "employee": employee,
        "dn": dn,
        "attribute": "extensionAttribute10",
        "old": old,
        "new": new,
        "persona": new if rule != "rollback" else None,
        "rule": rule,
        "scenario": "persona",
        "result": result,
        "message": message,
        "found": found,
    }


def write_run(
    state: Path, run_id: str, time: str, command: str, writes: list[dict[str, Any]], **header: Any
) -> None:
    """A journal file as persona_sync.journal.Journal writes it (pending, write, end)."""
    folder = state / JOURNAL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        _record(
            "run",
            run_id,
            time,
            command=command,
            directory="file:/srv/export.ldif",
            tool_version="0.1.0",
            changes=len(writes),
            **header,
        )
    ]
    for w in writes:
        pending = {k: v for k, v in w.items() if k not in ("result", "message", "found")}
        lines.append(_record("pending", run_id, time, **pending))
    for w in writes:
        lines.append(_record("write", run_id, time, **w))
    counts: dict[str, int] = {}
    for w in writes:
        counts[w["result"]] = counts.get(w["result"], 0) + 1
    lines.append(_record("end", run_id, time, status="complete", **counts))
    (folder / f"{run_id}.jsonl").write_text("".join(lines), encoding="utf-8")


ANNA = "CN=Müller\\, Anna,OU=Plant,DC=example,DC=com"
BOB = "CN=Bob,OU=Plant,DC=example,DC=com"
CFO = 'CN=Chief <Finance> & "Co",OU=HQ,DC=example,DC=com'


@pytest.fixture
def journal_state(tmp_path: Path) -> Path:
    """Four runs: onboarding, a move, its rollback, and a run with a conflict."""
    state = tmp_path / "state"
    write_run(
        state,
        "20260101T080000Z-aaaaaa",
        "2026-01-01T08:00:00.000+00:00",
        "sync",
        [
            _write("amuller", ANNA, None, "engineer", "engineer-by-title"),
            _write("bob", BOB, None, "engineer", "engineer-by-title"),
            _write("cfo", CFO, None, "vip", "vip-executive"),
        ],
    )
    write_run(
        state,
        "20260201T080000Z-bbbbbb",
        "2026-02-01T08:00:00.000+00:00",
        "apply",
        [
            _write("amuller", ANNA, "engineer", "plant-floor", "plant-production"),
            _write("bob", BOB, "engineer", "plant-floor", "plant-production"),
        ],
        plan_checksum="sha256:p2",
    )
    write_run(
        state,
        "20260202T090000Z-cccccc",
        "2026-02-02T09:00:00.000+00:00",
        "rollback",
        [
            _write("bob", BOB, "plant-floor", "engineer", "rollback"),
            _write("amuller", ANNA, "plant-floor", "engineer", "rollback"),
        ],
        rollback_of="20260201T080000Z-bbbbbb",
    )
    write_run(
        state,
        "20260301T080000Z-dddddd",
        "2026-03-01T08:00:00.000+00:00",
        "sync",
        [
            _write("amuller", ANNA, "engineer", "plant-floor", "plant-production"),
            _write(
                "bob",
                BOB,
                "engineer",
                "plant-floor",
                "plant-production",
                result="conflict",
                found="vip",
                message="value changed since the plan",
            ),
            _write("cfo", CFO, "vip", None, None),
        ],
    )
    return state


@pytest.fixture(scope="session")
def chromium_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's Chromium, headless, with a new empty profile, driven by Playwright."""
    unavailable = None
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        unavailable = (
            "Chromium is not installed: apt-get install chromium "
            "(or sudo bash .ci/install-system-deps)"
        )
    else:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            unavailable = "Playwright is not installed: pip install -e '.[test]' (or playwright)"
    if unavailable is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(unavailable, pytrace=False)
        pytest.skip(unavailable)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@dataclass
class OpenedReport:
    """A report open in Chromium, with what the page logged and requested."""

    page: Any
    url: str
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        return [u for u in self.requests if u != self.url]


@pytest.fixture
def open_report(chromium_context: Any, tmp_path: Path) -> Iterator[Callable[..., OpenedReport]]:
    """Open an HTML report from a file; console messages and requests are recorded."""
    opened: list[OpenedReport] = []

    def _open(html: str, name: str = "report.html") -> OpenedReport:
        path = tmp_path / name
        path.write_text(html, encoding="utf-8")
        page = chromium_context.new_page()
        report = OpenedReport(page, path.as_uri())
        page.on("console", lambda m: report.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: report.console.append(f"pageerror: {e}"))
        page.on("request", lambda r: report.requests.append(r.url))
        page.goto(report.url)
        page.wait_for_load_state("load")
        opened.append(report)
        return report

    yield _open
    for report in opened:
        report.page.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/report/ (gitignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.evaluate("window.scrollTo(0, 0)")  # the sticky navigation belongs at the top
    page.screenshot(path=str(path), full_page=True)
    return path
