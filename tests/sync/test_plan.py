"""The plan file on its own (persona_sync.plan): a round trip keeps every field, and every
way a file can be foreign, damaged or edited is refused with its own message."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from persona_sync.errors import PlanError
from persona_sync.plan import PLAN_VERSION, Plan, load_plan
from tests.report.conftest import sample_plan


def saved(plan: Plan) -> dict[str, Any]:
    return json.loads(json.dumps(plan.to_dict()))


def refusal(data: object, source: str = "plan.json") -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    with pytest.raises(PlanError) as caught:
        load_plan(text, source)
    return str(caught.value)


def test_a_saved_plan_loads_back_as_it_was() -> None:
    plan = dataclasses.replace(
        sample_plan(),
        changes=tuple(
            dataclasses.replace(c, key=f"guid-{n}") for n, c in enumerate(sample_plan().changes)
        ),
    )
    loaded = load_plan(json.dumps(plan.to_dict()), "plan.json")
    assert loaded == plan
    assert loaded.checksum == plan.checksum
    assert [c.to_change().key for c in loaded.changes] == [
        f"guid-{n}" for n in range(len(plan.changes))
    ]


def test_a_plan_without_keys_keeps_its_checksum() -> None:
    """Changes carry their key only when known: a plan written before keys existed reads
    the same and checks out."""
    data = saved(sample_plan())
    assert all("key" not in c for c in data["changes"])
    assert load_plan(json.dumps(data), "old.json").checksum == data["checksum"]


def test_foreign_and_damaged_files_are_refused() -> None:
    assert refusal("{not json") == "plan.json: not a persona-sync plan (invalid JSON at line 1)"
    assert refusal([1, 2]) == (
        "plan.json: not a persona-sync plan (save one with "
        "`persona-sync plan --format json -o FILE`)"
    )
    data = saved(sample_plan())
    assert refusal({**data, "version": PLAN_VERSION + 1}) == (
        f"plan.json: plan format version {PLAN_VERSION + 1} is not supported "
        f"(expected {PLAN_VERSION})"
    )
    incomplete = {k: v for k, v in data.items() if k != "summary"}
    assert refusal(incomplete) == "plan.json: plan is incomplete or damaged ('summary')"
    unknown = {**data, "changes": [{**data["changes"][0], "color": "red"}]}
    assert refusal(unknown) == (
        "plan.json: plan is incomplete or damaged (PlannedChange.__init__() got an "
        "unexpected keyword argument 'color')"
    )


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["changes"][0].update(new="vip"),
        lambda d: d["changes"][0].update(key="someone-else"),
        lambda d: d["changes"].pop(),
        lambda d: d["summary"].update(changes=0),
        lambda d: d["provenance"].update(directory="ldap:dc=other"),
    ],
    ids=["new-value", "added-key", "dropped-change", "summary", "directory"],
)
def test_any_edit_is_refused(edit: Any) -> None:
    data = saved(sample_plan())
    edit(data)
    assert refusal(data) == (
        "plan.json: plan checksum does not match its contents: the file was edited or "
        "damaged; make a new plan"
    )


def test_a_field_left_out_is_an_edit_even_where_it_has_a_default() -> None:
    """The checksum covers the changes as the file holds them: a change without its (empty)
    facts reads as the same change, but the file is not the one plan wrote."""
    plan = sample_plan()
    plan = dataclasses.replace(
        plan, changes=(*plan.changes[:-1], dataclasses.replace(plan.changes[-1], facts={}))
    )
    data = saved(plan)
    assert load_plan(json.dumps(data), "plan.json") == plan
    del data["changes"][-1]["facts"]
    assert refusal(data) == (
        "plan.json: plan checksum does not match its contents: the file was edited or "
        "damaged; make a new plan"
    )
