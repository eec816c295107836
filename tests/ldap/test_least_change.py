"""Least change: after a full sync, a dump of every entry differs from the one before only in
the target attribute, and only on the planned employees.

The dumps (by ldapsearch, independent of the code under test) hold every entry of the
directory with its user attributes, plus the operational attribute that any write bumps
(entryCSN on OpenLDAP, uSNChanged on AD): so an entry outside the plan is proved not
written at all, not even with its own value again. On OpenLDAP the auxiliary class that
allows the attribute is added where an entry lacked it; nothing else may change.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import pytest
from click.testing import Result

from tests.ldap.conftest import canonical_dn, differences, entries, write_config
from tests.servers.clients import PAGED_SEARCH, run_ldap_tool, sorted_ldif
from tests.servers.samba import VOLATILE_ATTRIBUTES, AdUser, SambaDC
from tests.servers.slapd import SlapdServer

Run = Callable[..., Result]


def dump(
    url: str,
    bind: tuple[str, str],
    base: str,
    ca_file: Path,
    attributes: Sequence[str],
    exclude: Collection[str] = (),
) -> str:
    """Every entry under ``base`` with ``attributes``, as sorted LDIF."""
    output = run_ldap_tool(
        [
            "ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-x", "-H", url, "-D", bind[0],
            "-w", bind[1], *PAGED_SEARCH, "-b", base, "-s", "sub", "(objectClass=*)",
            *attributes,
        ],
        ca_file=ca_file,
    )  # fmt: skip
    return sorted_ldif(output, exclude=exclude)


def planned() -> dict[str, tuple[str | None, str | None]]:
    """canonical DN -> (old, new) of every change in plan.json."""
    changes = json.loads(Path("plan.json").read_text())["changes"]
    return {canonical_dn(c["dn"]): (c["old"], c["new"]) for c in changes}


def lines_of(name: str, lines: list[str]) -> list[str]:
    return [line for line in lines if line.split(":", 1)[0].casefold() == name.casefold()]


# --- OpenLDAP -----------------------------------------------------------------------------

SLAPD_PEOPLE = 40


@pytest.fixture
def slapd_directory(
    slapd_factory: Callable[[], SlapdServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> SlapdServer:
    slapd = slapd_factory()
    people = slapd.people_dn
    kinds = [
        # (title, extra lines): engineers without a value, with the right one, with a wrong
        # one, without the auxiliary class; accountants; a service account out of scope.
        ("Software Engineer", "objectClass: personaHolder\n"),
        ("Software Engineer", "objectClass: personaHolder\npersonaName: engineer\n"),
        ("Software Engineer", "objectClass: personaHolder\npersonaName: vip\n"),
        ("Software Engineer", ""),
        ("Accountant", ""),
    ]
    ldif = "".join(
        f"dn: uid=e{i:02d},{people}\nobjectClass: inetOrgPerson\n{kinds[i % 5][1]}uid: e{i:02d}\n"
        f"cn: E {i}\nsn: E\ntitle: {kinds[i % 5][0]}\nphysicalDeliveryOfficeName: Munich HQ\n\n"
        for i in range(SLAPD_PEOPLE)
    )
    ldif += (
        f"dn: uid=svc-report,{people}\nobjectClass: inetOrgPerson\nuid: svc-report\n"
        "cn: Report job\nsn: Job\nemployeeType: service\n\n"
        f"dn: cn=engineers,{slapd.groups_dn}\nobjectClass: groupOfNames\ncn: engineers\n"
        f"member: uid=e00,{people}\n\n"
    )
    slapd.add_ldif(ldif)  # bulk-loaded: the entries were never written over LDAP
    slapd.start()
    write_config(
        tmp_path,
        (
            "  type: ldap\n  preset: openldap\n"
            f"  urls: [{slapd.ldaps_url}]\n  ca_file: {slapd.ca_file}\n"
            f"  bind: {{user: '{slapd.service_dn}'}}\n  base_dns: ['{people}']\n"
            "  auxiliary_class: personaHolder\n"
        ),
        "personaName",
    )
    monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", slapd.service_password)
    monkeypatch.chdir(tmp_path)
    return slapd


def slapd_dump(slapd: SlapdServer) -> str:
    return dump(
        slapd.url,
        (slapd.admin_dn, slapd.admin_password),
        slapd.base_dn,
        slapd.ca_file,
        ["*", "entryCSN", "modifiersName"],
    )


def test_sync_on_openldap_changes_only_the_target_of_planned_entries(
    slapd_directory: SlapdServer, run_cli: Run
) -> None:
    slapd = slapd_directory
    before = slapd_dump(slapd)
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    plan = planned()
    # Planned: the engineers without the value or with a wrong one, and the accountants.
    assert len(plan) == SLAPD_PEOPLE // 5 * 4
    assert run_cli("apply", "plan.json", "-q").exit_code == 0
    changed = differences(before, slapd_dump(slapd))
    assert sorted(changed) == sorted(plan)  # the others: not even entryCSN moved
    old_entries = entries(before)
    for dn, (removed, added) in changed.items():
        old, new = plan[dn]
        operational = ("entryCSN:", "modifiersName:")
        assert [line for line in removed if not line.startswith(operational)] == (
            [f"personaName: {old}"] if old else []
        ), dn
        had_class = "objectClass: personaHolder" in old_entries[dn]
        assert sorted(line for line in added if not line.startswith(operational)) == sorted(
            [f"personaName: {new}"] + ([] if had_class else ["objectClass: personaHolder"])
        ), dn
        assert len(lines_of("entryCSN", added)) == 1, dn
        assert lines_of("modifiersName", added) == [f"modifiersName: {slapd.service_dn}"], dn


# --- Active Directory (Samba) -----------------------------------------------------------

TARGET = "msDS-cloudExtensionAttribute1"
PASSWORD = "Persona-Sync-Test-1!"


@pytest.fixture
def ad_directory(
    samba_dc: SambaDC, samba_ou: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    office = {"physicalDeliveryOfficeName": "Munich HQ"}
    samba_dc.add_users(
        [
            AdUser("lc-eng", {"title": "Software Engineer", **office}, PASSWORD, samba_ou),
            AdUser("lc-acct", {"title": "Accountant", **office}, PASSWORD, samba_ou),
            AdUser(
                "lc-wrong",
                {"title": "Software Engineer", TARGET: "vip", **office},
                PASSWORD,
                samba_ou,
            ),
            AdUser(
                "lc-right",
                {"title": "Software Engineer", TARGET: "engineer", **office},
                PASSWORD,
                samba_ou,
            ),
            AdUser("lc-off", {"title": "Software Engineer", **office}, None, samba_ou),  # disabled
        ]
    )
    write_config(
        tmp_path,
        (
            "  type: ldap\n  preset: ad\n"
            f"  urls: [{samba_dc.url}]\n  ca_file: {samba_dc.ca_file}\n"
            f"  bind: {{user: '{samba_dc.service_user}'}}\n  base_dns: ['{samba_ou}']\n"
        ),
        TARGET,
    )
    monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", samba_dc.service_password)
    monkeypatch.chdir(tmp_path)
    return samba_ou


def ad_dump(samba_dc: SambaDC, attributes: Sequence[str], exclude: Collection[str]) -> str:
    return dump(
        samba_dc.url,
        (samba_dc.admin_user, samba_dc.admin_password),
        samba_dc.base_dn,
        samba_dc.ca_file,
        attributes,
        exclude,
    )


def test_sync_on_active_directory_changes_only_the_target_of_planned_entries(
    samba_dc: SambaDC, ad_directory: str, run_cli: Run
) -> None:
    # The whole domain, user attributes (less those a bind or Samba itself bumps) ...
    before = ad_dump(samba_dc, ["*"], VOLATILE_ATTRIBUTES)
    # ... and the write counter of every entry in the test's OU.
    counters_before = ad_dump(samba_dc, ["uSNChanged"], ())
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    plan = planned()
    assert sorted(dn.split(",")[0] for dn in plan) == ["cn=lc-acct", "cn=lc-eng", "cn=lc-wrong"]
    assert run_cli("apply", "plan.json", "-q").exit_code == 0
    assert differences(before, ad_dump(samba_dc, ["*"], VOLATILE_ATTRIBUTES)) == {
        dn: ([f"{TARGET}: {old}"] if old else [], [f"{TARGET}: {new}"])
        for dn, (old, new) in plan.items()
    }
    written = {
        dn
        for dn in differences(counters_before, ad_dump(samba_dc, ["uSNChanged"], ()))
        if dn.endswith(ad_directory.casefold())
    }
    assert written == set(plan)  # lc-right and lc-off were not even rewritten
