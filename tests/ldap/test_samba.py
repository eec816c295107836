"""The LDAP backend against a real Samba AD DC (LDAPS, least-privilege service account)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result
from ldap3.utils.dn import escape_rdn

from tests.ldap.conftest import canonical_dn, differences, write_config
from tests.servers.samba import AdUser, SambaDC

Run = Callable[..., Result]
TARGET = "msDS-cloudExtensionAttribute1"
PASSWORD = "Persona-Sync-Test-1!"


@dataclass(frozen=True)
class NamedUser(AdUser):
    """A user whose CN differs from its sAMAccountName (AD allows any CN)."""

    cn: str = ""

    @property
    def dn(self) -> str:
        return f"CN={escape_rdn(self.cn)},{self.parent_dn}"


@pytest.fixture
def domain(
    samba_dc: SambaDC, samba_ou: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    executives = samba_dc.create_ou(f"{samba_ou.split(',')[0][3:]}-exec")
    ceo = AdUser(
        "ps-ceo",
        {"title": "Chief Executive Officer", "physicalDeliveryOfficeName": "Munich HQ"},
        PASSWORD,
        executives,
    )
    users = [
        ceo,
        NamedUser(
            "ps-nurse",
            {
                "title": "Registered Nurse",
                "manager": ceo.dn,
                "physicalDeliveryOfficeName": "North Clinic",
            },
            PASSWORD,
            samba_ou,
            cn='Smith, John "Jr" <x>; +1 #',
        ),
        NamedUser(
            "ps-eng",
            {
                "title": "Software Engineer",
                "manager": ceo.dn,
                "physicalDeliveryOfficeName": "Munich HQ",
            },
            PASSWORD,
            samba_ou,
            cn="Jörg Müller",
        ),
        AdUser(
            "ps-coord",
            {
                "title": "Coordinator",
                "manager": ceo.dn,
                "physicalDeliveryOfficeName": "Munich HQ",
                TARGET: "engineer",
            },
            PASSWORD,
            samba_ou,
        ),
        AdUser("ps-gone", {"title": "Chief Financial Officer"}, None, samba_ou),  # disabled
    ]
    samba_dc.add_users(users)
    dns = {u.name: u.dn for u in users}
    write_config(
        tmp_path,
        (
            "  type: ldap\n  preset: ad\n"
            f"  urls: [{samba_dc.url}]\n  ca_file: {samba_dc.ca_file}\n"
            f"  bind: {{user: '{samba_dc.service_user}'}}\n"
            f"  base_dns: ['{samba_ou}']\n"
        ),
        TARGET,
    )
    monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", samba_dc.service_password)
    monkeypatch.chdir(tmp_path)
    yield dns
    samba_dc.delete_tree(executives)


def test_plan_apply_on_active_directory(
    samba_dc: SambaDC, samba_ou: str, domain: dict[str, str], run_cli: Run
) -> None:
    before = samba_dc.dump(samba_ou)
    planned = run_cli("plan", "-o", "plan.json")
    assert planned.exit_code == 2, planned.stderr
    plan = json.loads(Path("plan.json").read_text())
    assert sorted((c["employee"], c["old"], c["new"]) for c in plan["changes"]) == [
        ("ps-coord", "engineer", "knowledge-worker"),
        ("ps-eng", None, "engineer"),
        ("ps-nurse", None, "clinician"),
    ]
    # The disabled account is out of scope; the CEO lives outside the search base.
    assert plan["summary"]["out_of_scope"] == 1
    applied = run_cli("apply", "plan.json")
    assert applied.exit_code == 0, applied.stderr
    assert differences(before, samba_dc.dump(samba_ou)) == {
        canonical_dn(domain["ps-coord"]): (
            [f"{TARGET}: engineer"],
            [f"{TARGET}: knowledge-worker"],
        ),
        canonical_dn(domain["ps-eng"]): ([], [f"{TARGET}: engineer"]),
        canonical_dn(domain["ps-nurse"]): ([], [f"{TARGET}: clinician"]),
    }
    assert run_cli("plan", "-q").exit_code == 0  # a second run changes nothing


def test_conflict_and_rollback(
    samba_dc: SambaDC, samba_ou: str, domain: dict[str, str], run_cli: Run
) -> None:
    before = samba_dc.dump(samba_ou)
    run_cli("plan", "-o", "plan.json", "-q")
    samba_dc.modify_ldif(
        f"dn: {domain['ps-coord']}\nchangetype: modify\nreplace: {TARGET}\n{TARGET}: tech-support\n"
    )
    edited = samba_dc.dump(samba_ou)
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 3, result.stderr
    assert result.stderr.splitlines()[0] == (
        f"conflict: ps-coord ({domain['ps-coord']}) {TARGET}: value changed since the plan: "
        "expected 'engineer', found 'tech-support'"
    )
    run_id = json.loads(run_cli("runs", "--format", "json").stdout)[0]["run_id"]
    rolled = run_cli("rollback", run_id)
    assert rolled.exit_code == 0, rolled.stderr
    assert samba_dc.dump(samba_ou) == edited
    assert differences(before, edited) == {
        canonical_dn(domain["ps-coord"]): ([f"{TARGET}: engineer"], [f"{TARGET}: tech-support"]),
    }


def test_manager_outside_the_base_feeds_the_org_chart(domain: dict[str, str], run_cli: Run) -> None:
    result = run_cli("explain", "ps-coord", "--format", "json")
    assert result.exit_code == 0, result.stderr
    facts = {f["fact"]: f for f in json.loads(result.stdout)["facts"]}
    assert (facts["seniority"]["value"], facts["seniority"]["origin"]) == (
        8.5,
        "org chart (depth 1, 0 direct reports)",
    )


def test_least_privilege_is_enforced(
    samba_dc: SambaDC, domain: dict[str, str], run_cli: Run
) -> None:
    config = Path("persona-sync.yaml")
    config.write_text(config.read_text().replace(TARGET, "msDS-cloudExtensionAttribute2"))
    result = run_cli("sync")
    # The first refusal stops the run: one message, and the two others are not sent.
    first = domain["ps-eng"]  # changes go in DN order
    lines = result.stderr.splitlines()
    assert (result.exit_code, lines[1:-1]) == (
        1,
        [
            f"stopped: permission denied: {samba_dc.service_user} may not write "
            f"msDS-cloudExtensionAttribute2 (refused on {first}: LDAP 50 "
            f"insufficientAccessRights: 00002098: Object {first} has no write property "
            "access); stopped at the first refusal: grant the account write access to "
            "msDS-cloudExtensionAttribute2 on the employees' entries, then rerun"
        ],
    )
    assert lines[-1].endswith(
        "0 applied, 0 already set, 0 conflicts, 1 failed, 2 not sent; aborted; journal "
        f"{lines[-1].split('journal ')[1]}"
    )


@pytest.mark.parametrize("user", ["dn", "EXAMPLE\\svc-persona"])
def test_other_bind_names(
    samba_dc: SambaDC, domain: dict[str, str], run_cli: Run, user: str
) -> None:
    name = samba_dc.service_dn if user == "dn" else user
    config = Path("persona-sync.yaml")
    config.write_text(
        config.read_text().replace(
            f"  bind: {{user: '{samba_dc.service_user}'}}", f"  bind: {{user: '{name}'}}"
        )
    )
    result = run_cli("plan", "-q")
    assert result.exit_code == 2, result.stderr


def test_ntlm_bind_refused_by_samba_says_what_to_do(
    samba_dc: SambaDC, domain: dict[str, str], run_cli: Run
) -> None:
    config = Path("persona-sync.yaml")
    config.write_text(
        config.read_text().replace(
            f"  bind: {{user: '{samba_dc.service_user}'}}",
            "  bind: {method: ntlm, user: 'EXAMPLE\\svc-persona'}",
        )
    )
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        (
            f"error: {samba_dc.url} dropped the NTLM bind (Samba AD DCs do not implement the "
            "Sicily NTLM bind that ldap3 uses): bind with method: simple as DOMAIN\\user or "
            "user@domain over TLS instead\n"
        ),
    )


def test_check_connection_on_active_directory(
    samba_dc: SambaDC, domain: dict[str, str], run_cli: Run
) -> None:
    result = run_cli("check-connection", "--format", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    findings = {f["check"]: f for f in json.loads(result.stdout)}
    assert findings["target"]["detail"] == f"{TARGET}: in the schema, single-valued"
    assert findings["employees"]["detail"] == "4 read, 3 in scope, 1 out of scope"
    assert findings["write access"]["ok"] is True
    config = Path("persona-sync.yaml")
    config.write_text(config.read_text().replace(TARGET, "extensionAttribute1"))
    missing = run_cli("check-connection")
    assert missing.exit_code == 1
    assert missing.stdout.splitlines()[-1] == (
        "FAIL  target        target attribute extensionAttribute1 does not exist in this "
        "directory's schema; attributes that fit: msDS-cloudExtensionAttribute1..20 or "
        "employeeType; extensionAttribute1..15 where the Exchange schema is installed"
    )
