"""Disabled managers on Entra ID: outside the scope, still heading their reports' chains."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result

from persona_sync.directory.entra import EntraDirectory
from tests.entra.conftest import Tenant

Run = Callable[..., Result]


def org(tenant: Tenant) -> dict[str, str]:
    """founder -> ops lead -> coordinator -> three analysts; titles without rank keywords,
    so seniority (and with it VIP) comes from the depth in the chain."""
    fake = tenant.fake

    def user(name: str, title: str, manager: str | None = None) -> str:
        return fake.add_user(
            userPrincipalName=f"{name}@contoso.example",
            jobTitle=title,
            officeLocation="Munich HQ",
            **({"manager": manager} if manager else {}),
        )

    founder = user("founder", "Founder")
    ops = user("ops", "Operations Lead", founder)
    coordinator = user("coordinator", "Coordinator", ops)
    people = {"founder": founder, "ops": ops, "coordinator": coordinator}
    for n in range(3):
        people[f"analyst{n}"] = user(f"analyst{n}", "Analyst", coordinator)
    return people


def planned(run_cli: Run) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    result = run_cli("plan", "--format", "json")
    assert result.exit_code == 2, result.stderr
    plan = json.loads(result.stdout)
    return {c["employee"]: c for c in plan["changes"]}, plan["summary"]


def test_disabled_ceo_and_middle_manager_keep_their_reports_chains(
    tenant: Tenant, run_cli: Run
) -> None:
    people = org(tenant)
    enabled, summary = planned(run_cli)
    assert summary["org_chart_problems"] == 0
    assert enabled["ops@contoso.example"]["rule"] == "vip-executive"  # depth 1, has reports
    assert enabled["analyst0@contoso.example"]["facts"]["seniority"] == 5.5  # depth 3

    tenant.fake.set_property(people["founder"], "accountEnabled", False)
    without_ceo, summary = planned(run_cli)
    assert summary["org_chart_problems"] == 0
    assert "founder@contoso.example" not in without_ceo  # out of scope, not written
    assert without_ceo == {k: v for k, v in enabled.items() if k != "founder@contoso.example"}

    tenant.fake.set_property(people["coordinator"], "accountEnabled", False)
    without_both, summary = planned(run_cli)
    assert summary["org_chart_problems"] == 0
    gone = {"founder@contoso.example", "coordinator@contoso.example"}
    assert without_both == {k: v for k, v in enabled.items() if k not in gone}
    # Looked up, not read: only id, UPN and manager of the two disabled managers.
    lookups = [r for r in tenant.fake.requests if r.batch_id is not None and r.method == "GET"]
    assert {r.query["$select"] for r in lookups} == {"id,userPrincipalName"}
    assert {r.path.rsplit("/", 1)[1] for r in lookups} == {
        people["founder"],
        people["coordinator"],
    }


def test_without_the_look_up_the_chains_break(
    tenant: Tenant, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scenario above is sensitive: skipping the look-up changes personas."""
    people = org(tenant)
    tenant.fake.set_property(people["founder"], "accountEnabled", False)
    monkeypatch.setattr(EntraDirectory, "lookup_managers", lambda self, ids: [])
    broken, summary = planned(run_cli)
    assert summary["org_chart_problems"] == 1  # ops: its manager is not found
    assert broken["ops@contoso.example"]["rule"] != "vip-executive"
