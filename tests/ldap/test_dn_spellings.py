"""Org-chart links survive every spelling of a manager's DN, on slapd and in an LDIF file.

slapd returns an entry's DN in its own form (``cn=Smith\\2C Jr. 78``, ``cn=\\231 Fan``)
while a ``manager`` value bulk-loaded with slapadd keeps the spelling it was written in
(``CN=SMITH\\, JR. 78,OU=people``), and hand-made files mix ``\\,`` and ``\\2C``, upper and
lower case, spaces after commas. A report whose manager link is not matched loses its org
depth and can get the wrong persona, so these tests read depth through personas: level-N
means depth N.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.servers.slapd import SlapdServer

Factory = Callable[[], SlapdServer]

Run = Callable[..., Result]

RULES = """\
facts:
  depth:
    type: number
    sources:
      - from: "@org_depth"
personas:
  - id: level-2
    name: Two below the top
    precedence: 4
    rules:
      - id: depth-2
        when: {fact: depth, gte: 2}
  - id: level-1
    name: One below the top
    precedence: 3
    rules:
      - id: depth-1
        when: {fact: depth, gte: 1}
  - id: level-0
    name: The top
    precedence: 2
    rules:
      - id: depth-0
        when: {fact: depth, gte: 0}
  - id: lost
    name: Chain broken
    precedence: 1
    rules:
      - id: no-depth
        when: {fact: depth, missing: true}
  - id: staff
    name: Staff
    precedence: 0
    default: true
"""

PEOPLE = "ou=People,dc=example,dc=com"

# (uid, RDN as added, cn, manager value as written: another spelling of the manager's DN).
STAFF = [
    ("ceo", r"cn=Smith\, Jr. 78", "Smith, Jr. 78", None),
    # Managers one below the top: RDNs with + " \ # and non-ASCII; each names the CEO
    # in another spelling.
    (
        "vpplus",
        "cn=Dee Doe+uid=vpplus",
        "Dee Doe",
        r"CN=SMITH\, JR. 78,OU=people,DC=EXAMPLE,DC=COM",
    ),
    ("vpquote", r"cn=\"Q\" Lee", '"Q" Lee', r"cn=Smith\2C Jr. 78,ou=People,dc=example,dc=com"),
    (
        "vpback",
        r"cn=Back\\slash Bo",
        "Back\\slash Bo",
        r"cn = smith\2c jr. 78, ou=People, dc=Example, dc=com",
    ),
    ("vphash", r"cn=\#1 Fan", "#1 Fan", r"cn=Smith\, Jr. 78,ou=PEOPLE,dc=example,dc=com"),
    (
        "vpcsharp",
        "cn=C# Guild Lead",
        "C# Guild Lead",
        r"CN=Smith\2C JR. 78,OU=People,DC=example,DC=com",
    ),
    (
        "vpumlaut",
        "cn=Renée Müller",
        "Renée Müller",
        r"cn=SMITH\, jr. 78,ou=people,dc=example,dc=com",
    ),
    # Their reports, naming them in yet other spellings.
    ("r-plus", "cn=Rp", "Rp", "UID=VPPLUS+CN=dee doe,ou=people,dc=example,dc=com"),
    ("r-quote", "cn=Rq", "Rq", r"cn=\22q\22 LEE,ou=People,dc=example,dc=com"),
    ("r-back", "cn=Rb", "Rb", r"CN=BACK\5CSLASH BO,ou=People,dc=example,dc=com"),
    ("r-hash", "cn=Rh", "Rh", r"cn=\231 fan,ou=people,dc=example,dc=com"),
    ("r-csharp", "cn=Rc", "Rc", r"cn=c\# guild lead,OU=People,DC=Example,DC=Com"),
    ("r-umlaut", "cn=Ru", "Ru", r"cn=Ren\C3\A9e M\C3\BCller,ou=People,dc=example,dc=com"),
    ("r-upper", "cn=Rx", "Rx", "CN=RENÉE MÜLLER,OU=PEOPLE,DC=EXAMPLE,DC=COM"),
]

EXPECTED = {
    "ceo": "level-0",
    **{uid: "level-1" for uid in ("vpplus", "vpquote", "vpback", "vphash", "vpcsharp", "vpumlaut")},
    **{
        uid: "level-2"
        for uid in ("r-plus", "r-quote", "r-back", "r-hash", "r-csharp", "r-umlaut", "r-upper")
    },
}


def staff_ldif() -> str:
    blocks = []
    for uid, rdn, cn, manager in STAFF:
        lines = [
            f"dn: {rdn},{PEOPLE}",
            "objectClass: inetOrgPerson",
            f"uid: {uid}",
            f"cn: {cn}",
            "sn: X",
        ]
        if manager is not None:
            lines.append(f"manager: {manager}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks) + "\n"


def config(folder: Path, directory: str) -> None:
    (folder / "rules.yaml").write_text(RULES, encoding="utf-8")
    (folder / "persona-sync.yaml").write_text(
        "rules: rules.yaml\n"
        f"directory:\n{directory}"
        "targets:\n  persona: personaName\n"
        "safety:\n  max_change_percent: 100\n"
        "state_dir: state\n",
        encoding="utf-8",
    )


def planned_personas(run_cli: Run) -> tuple[dict[str, str | None], dict[str, object], str]:
    result = run_cli("plan", "--format", "json")
    assert result.exit_code == 2, result.stderr
    plan = json.loads(result.stdout)
    return {c["employee"]: c["new"] for c in plan["changes"]}, plan["summary"], result.stderr


def loaded_slapd(slapd_factory: Factory) -> SlapdServer:
    """slapd with STAFF bulk-loaded (slapadd keeps the manager values as written, as in a
    directory migrated in bulk; ldapadd would reformat them)."""
    slapd = slapd_factory()
    slapd.add_ldif(staff_ldif())
    slapd.start()
    # The test is only worth something if what the backend reads differs as text.
    dump = slapd.dump(PEOPLE)
    assert r"dn: cn=Smith\2C Jr. 78,ou=People,dc=example,dc=com" in dump
    assert r"manager: CN=SMITH\, JR. 78,OU=people,DC=EXAMPLE,DC=COM" in dump
    return slapd


def test_slapd_manager_links_in_other_spellings_keep_the_org_depth(
    slapd_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    slapd = loaded_slapd(slapd_factory)
    config(
        tmp_path,
        "  type: ldap\n  preset: openldap\n"
        f"  urls: [{slapd.ldaps_url}]\n  ca_file: {slapd.ca_file}\n"
        f"  bind: {{user: '{slapd.service_dn}'}}\n"
        f"  base_dns: ['{PEOPLE}']\n"
        "  auxiliary_class: personaHolder\n",
    )
    monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", slapd.service_password)
    monkeypatch.chdir(tmp_path)
    personas, summary, stderr = planned_personas(run_cli)
    assert personas == EXPECTED
    assert summary["org_chart_problems"] == 0
    assert "not found" not in stderr


def test_ldif_file_manager_links_in_other_spellings_keep_the_org_depth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    # The file as written, escapes and case as the people who made it typed them.
    (tmp_path / "people.ldif").write_text(staff_ldif(), encoding="utf-8")
    config(tmp_path, "  type: file\n  path: people.ldif\n  id_attributes: [uid]\n")
    monkeypatch.chdir(tmp_path)
    personas, summary, stderr = planned_personas(run_cli)
    assert personas == EXPECTED
    assert summary["org_chart_problems"] == 0
    assert "not found" not in stderr


def test_ldif_export_of_slapd_keeps_the_org_depth(
    slapd_factory: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    # The same people as slapd exports them (its spellings, base64 DNs, and the base, OU
    # and service-account entries around them, which are not employees).
    slapd = loaded_slapd(slapd_factory)
    (tmp_path / "export.ldif").write_text(slapd.dump(), encoding="utf-8")
    config(tmp_path, "  type: file\n  path: export.ldif\n  id_attributes: [uid]\n")
    monkeypatch.chdir(tmp_path)
    personas, summary, stderr = planned_personas(run_cli)
    assert personas == EXPECTED
    assert summary["org_chart_problems"] == 0
    assert "not found" not in stderr
