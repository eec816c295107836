"""Catalog export: JSON and CSV service hints, Entra ID dynamic groups; golden files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from persona_sync.catalog import (
    catalog_entries,
    entra_groups,
    entra_property,
    membership_rule,
    render_catalog_csv,
    render_catalog_json,
    render_entra_groups,
)
from persona_sync.errors import ConfigError
from persona_sync.rules.loader import load_rules
from tests.conftest import DEFAULT_RULES
from tests.report.conftest import CATALOG_RULES, check_golden

Run = Callable[..., Result]
Write = Callable[[str, str], Path]


def test_catalog_json_golden() -> None:
    check_golden("catalog.json", render_catalog_json(load_rules([CATALOG_RULES])))


def test_catalog_csv_golden() -> None:
    check_golden("catalog.csv", render_catalog_csv(load_rules([CATALOG_RULES])))


def test_entra_groups_golden() -> None:
    groups = entra_groups(load_rules([CATALOG_RULES]), {"persona": "extensionAttribute10"})
    check_golden("entra-groups.json", render_entra_groups(groups))


def test_catalog_is_in_precedence_order_and_carries_every_hint() -> None:
    entries = catalog_entries(load_rules([DEFAULT_RULES]))
    assert [e.precedence for e in entries] == sorted((e.precedence for e in entries), reverse=True)
    vip = next(e for e in entries if e.id == "vip")
    assert (vip.queue, vip.tier, vip.priority, vip.refresh_months) == ("vip-desk", 0, "P1", 24)
    assert vip.work_profile == {
        "technology": 3,
        "network": 3,
        "interaction": 4,
        "communication": 4,
        "mobility": 3,
    }
    assert "vip-executive" in vip.rules


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("extensionAttribute10", "extensionAttribute10"),
        ("onPremisesExtensionAttributes.extensionAttribute10", "extensionAttribute10"),
        ("EXTENSIONATTRIBUTE7", "extensionAttribute7"),
        (
            "extension_0123456789ABCDEF0123456789abcdef_persona",
            "extension_0123456789abcdef0123456789abcdef_persona",
        ),
    ],
)
def test_entra_property(attribute: str, expected: str) -> None:
    assert entra_property(attribute) == expected


@pytest.mark.parametrize(
    "attribute",
    [
        "msDS-cloudExtensionAttribute1",
        "extensionAttribute16",
        "extensionAttribute0",
        "extension_0123-4567_persona",
        "department",
    ],
)
def test_entra_property_refuses_attributes_groups_cannot_select_on(attribute: str) -> None:
    with pytest.raises(ConfigError) as caught:
        entra_property(attribute)
    assert str(caught.value) == (
        f"attribute {attribute!r} cannot be used in an Entra ID dynamic membership rule: write "
        "the persona to extensionAttribute1-15 (onPremisesExtensionAttributes."
        "extensionAttributeN) or to a directory extension, and pass --attribute "
        "extensionAttributeN or --attribute extension_<appId without dashes>_<name>"
    )


def test_membership_rule_escapes_quotes_with_backticks() -> None:
    rule = membership_rule("extensionAttribute1", 'a"b`c')
    assert rule == 'user.extensionAttribute1 -eq "a`"b``c"'


SCENARIO_RULES = """
personas:
  - { id: vip, name: VIP, precedence: 100, rules: [{ id: r1, when: { fact: t, equals: x } }] }
  - { id: engineer, name: Engineer, precedence: 50,
      rules: [{ id: r2, when: { fact: t, equals: y } }] }
  - { id: worker, name: Worker, precedence: 10, default: true }
facts:
  t: { from: title }
scenarios:
  - { id: routing, order: [vip, worker] }
  - { id: refresh, order: [engineer, worker] }
"""


def test_entra_groups_per_scenario_name_the_scenario(write: Write) -> None:
    rules = write("rules/rules.yaml", SCENARIO_RULES)
    groups = entra_groups(
        load_rules([rules.parent]),
        {
            "routing": "extensionAttribute1",
            "refresh": "extension_0123456789abcdef0123456789abcdef_refreshPersona",
        },
    )
    assert [(g["displayName"], g["mailNickname"], g["membershipRule"]) for g in groups] == [
        ("Persona - VIP (routing)", "persona-routing-vip", 'user.extensionAttribute1 -eq "vip"'),
        (
            "Persona - Worker (routing)",
            "persona-routing-worker",
            'user.extensionAttribute1 -eq "worker"',
        ),
        (
            "Persona - Engineer (refresh)",
            "persona-refresh-engineer",
            'user.extension_0123456789abcdef0123456789abcdef_refreshPersona -eq "engineer"',
        ),
        (
            "Persona - Worker (refresh)",
            "persona-refresh-worker",
            'user.extension_0123456789abcdef0123456789abcdef_refreshPersona -eq "worker"',
        ),
    ]


def test_cli_exports_each_format(run_cli: Run, tmp_path: Path) -> None:
    result = run_cli("catalog", "export", "--rules", str(CATALOG_RULES))
    assert result.exit_code == 0
    assert result.stdout == render_catalog_json(load_rules([CATALOG_RULES]))
    result = run_cli("catalog", "export", "--rules", str(CATALOG_RULES), "--format", "csv")
    assert result.stdout == render_catalog_csv(load_rules([CATALOG_RULES]))
    out = tmp_path / "groups.json"
    result = run_cli(
        "catalog",
        "export",
        "--rules",
        str(CATALOG_RULES),
        "--format",
        "entra-groups",
        "--attribute",
        "extensionAttribute10",
        "-o",
        str(out),
    )
    assert result.exit_code == 0
    assert result.stdout == ""
    check_golden("entra-groups.json", out.read_text(encoding="utf-8"))


def test_cli_entra_groups_take_the_attribute_from_the_config(run_cli: Run, write: Write) -> None:
    write("company.csv", "sAMAccountName,title\nx,Nurse\n")
    config = write(
        "sync.yaml",
        f"""
        rules: {CATALOG_RULES}
        directory: {{ type: file, path: company.csv }}
        targets: {{ persona: onPremisesExtensionAttributes.extensionAttribute3 }}
        """,
    )
    result = run_cli("catalog", "export", "--config", str(config), "--format", "entra-groups")
    assert result.exit_code == 0, result.stderr
    rules = [g["membershipRule"] for g in json.loads(result.stdout)]
    assert rules == [
        'user.extensionAttribute3 -eq "vip"',
        'user.extensionAttribute3 -eq "clinician"',
        'user.extensionAttribute3 -eq "knowledge-worker"',
    ]


def test_cli_entra_groups_errors(run_cli: Run, write: Write) -> None:
    result = run_cli("catalog", "export", "--rules", str(CATALOG_RULES), "--format", "entra-groups")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: entra-groups needs the attribute persona-sync writes: pass --attribute NAME "
        "(e.g. extensionAttribute10) or --config FILE\n"
    )
    rules = write("rules/rules.yaml", SCENARIO_RULES)
    result = run_cli(
        "catalog",
        "export",
        "--rules",
        str(rules.parent),
        "--format",
        "entra-groups",
        "--attribute",
        "extensionAttribute1",
    )
    assert result.exit_code == 1
    assert result.stderr == (
        "error: the rules have scenarios routing, refresh: pass --attribute "
        "SCENARIO=NAME for each\n"
    )
    result = run_cli(
        "catalog",
        "export",
        "--rules",
        str(rules.parent),
        "--format",
        "entra-groups",
        "--attribute",
        "routnig=extensionAttribute1",
    )
    assert result.stderr == (
        "error: --attribute routnig=extensionAttribute1: no scenario "
        "'routnig' in the rules (scenarios: routing, refresh)\n"
    )
