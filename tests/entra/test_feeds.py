"""An HR feed joined to Entra ID users (the Graph fake) on employeeId: a full plan with the
join, and a delta plan after a feed edit that re-evaluates exactly the user it joins."""

from __future__ import annotations

import json
from collections.abc import Callable

from click.testing import Result

from persona_sync.refresh import compute_plan
from persona_sync.session import open_session
from persona_sync.snapshot import Snapshot
from tests.entra.conftest import Tenant
from tests.sync.test_delta import comparable

Run = Callable[..., Result]
FEEDS = "feeds:\n  hr: {path: hr.csv, key: employee_id, matches: employeeId}\n"
HR = "employee_id,grade\nE1,G10\nE2,G9\nE3,G4\nE9,G5\n"


def with_feed(tenant: Tenant) -> None:
    for name, number in (("boss", "E1"), ("nurse", "E2"), ("engineer", "E3")):
        tenant.fake.set_property(tenant.users[name], "employeeId", number)
    (tenant.root / "hr.csv").write_text(HR, encoding="utf-8")
    tenant.config.write_text(tenant.config.read_text(encoding="utf-8") + FEEDS, "utf-8")


def test_a_full_plan_joins_the_feed_on_employee_id(tenant: Tenant, run_cli: Run) -> None:
    with_feed(tenant)
    result = run_cli("plan", "--format", "json")
    assert result.exit_code == 2, result.stderr
    plan = json.loads(result.stdout)
    planned = {c["employee"]: (c["new"], c["rule"]) for c in plan["changes"]}
    # the nurse is G9 in HR: a VIP (without the feed: a clinician)
    assert planned["nurse@contoso.example"] == ("vip", "vip-executive")
    assert planned["eng@contoso.example"] == ("engineer", "engineer-by-title")
    assert plan["summary"]["feeds"]["hr"] == {
        "path": "hr.csv",
        "rows": 4,
        "employees_without_row": 1,
        "employees_without_row_examples": ["synced@contoso.example"],
        "rows_without_employee": 1,
        "rows_without_employee_examples": [{"key": "E9", "line": 5}],
    }
    assert list(plan["provenance"]["feeds"]) == ["hr"]


def test_a_feed_edit_re_evaluates_the_user_it_joins(tenant: Tenant, run_cli: Run) -> None:
    with_feed(tenant)
    assert run_cli("sync", "--delta", "-q").exit_code == 0
    (tenant.root / "hr.csv").write_text(HR.replace("E2,G9", "E2,G3"), encoding="utf-8")
    session = open_session(tenant.config)
    store, _fresh = Snapshot.open(session.config.state_dir)
    try:
        with session.directory() as directory:
            refresh = compute_plan(
                session.config, session.engine, directory, snapshot=store, delta=True
            )
            refresh.commit()
        assert refresh.summary.mode == "delta"
        assert refresh.summary.evaluated == {tenant.users["nurse"].casefold()}
        assert refresh.summary.notes[-1] == (
            "feed hr: 1 row changed, 0 added, 0 removed; 1 employee joined to them"
        )
        assert [(c.employee, c.old, c.new) for c in refresh.plan.changes] == [
            ("nurse@contoso.example", "vip", "clinician")
        ]
    finally:
        store.close()
    with session.directory() as directory:
        full = compute_plan(session.config, session.engine, directory).plan
    assert comparable(refresh.plan) == comparable(full)
