"""The plan file's text: one canonical line per change, the checksum over the same texts."""

from __future__ import annotations

import json

from persona_sync.plan import (
    ForeignValue,
    Plan,
    PlannedChange,
    Provenance,
    SkippedChange,
    canonical_json,
    load_plan,
    plan_checksum,
)
from persona_sync.render import render_json


def a_plan() -> Plan:
    changes = tuple(
        PlannedChange(
            f"user{n}",
            f"cn=Müller\\, Jörg {n},ou=People,dc=example,dc=com",
            "persona",
            "personaName",
            None if n % 2 else "engineer",
            "vip",
            "vip",
            "vip-executive",
            {"role.family": "exec", "account.disabled": False, "depth": n},
        )
        for n in range(3)
    )
    foreign = (ForeignValue("legacy", "cn=Legacy", "persona", "personaName", "tag", "vip"),)
    skipped = (SkippedChange("x", "cn=X", "persona", "personaName", None, "vip", "no class"),)
    summary = {"employees": 5, "changes": 3, "scenarios": {"persona": {"personas": {"vip": 3}}}}
    provenance = Provenance("1.0", "sha256:r", "sha256:c", "ldap:dc=example,dc=com", "now")
    return Plan(changes, foreign, summary, provenance, skipped)


def test_the_checksum_is_that_of_the_canonical_body() -> None:
    plan = a_plan()
    assert plan.checksum == plan_checksum(plan._body())
    assert plan.change_texts == [
        json.dumps(c, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        for c in plan.change_dicts
    ]


def test_each_change_is_one_canonical_line_and_the_file_loads_back() -> None:
    plan = a_plan()
    text = render_json(plan)
    lines = text.splitlines()
    start = lines.index('  "changes": [')
    assert lines[start + 1 : start + 4] == [
        f"    {plan.change_texts[0]},",
        f"    {plan.change_texts[1]},",
        f"    {plan.change_texts[2]}",
    ]
    assert '    {"attribute":"personaName","dn":"cn=Legacy","employee":"legacy",' in text
    assert lines[start + 1].startswith(
        '    {"attribute":"personaName","dn":"cn=Müller\\\\, Jörg 0,ou=People,dc=example,dc=com",'
    )
    again = load_plan(text, "plan.json")
    assert again.checksum == plan.checksum
    assert again.changes == plan.changes
    assert json.loads(text)["checksum"] == plan.checksum
    assert canonical_json({"b": 1, "a": "ü"}) == '{"a":"ü","b":1}'
