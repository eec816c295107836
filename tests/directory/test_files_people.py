"""The file directory picks people by objectClass, as the LDAP presets' filters do: the base,
OU, group, computer, contact and service-account entries of an export get no persona."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from persona_sync.directory.base import Change
from persona_sync.directory.files import FileDirectory

Run = Callable[..., Result]

RULES = """\
facts:
  title:
    type: string
    sources:
      - from: title
personas:
  - id: staff
    name: Staff
    precedence: 0
    default: true
"""

# What `ldapsearch -LLL` of an OpenLDAP tree and `ldifde -f` of an AD domain hold besides
# people: the base, OUs, a group, an AD computer (class user too), an AD contact (class
# person too), a service account, and a person whose classes are spelled in odd case.
EXPORT = """\
dn: dc=example,dc=com
objectClass: top
objectClass: dcObject
objectClass: organization
dc: example
o: Example Corp

dn: ou=People,dc=example,dc=com
objectClass: organizationalUnit
ou: People

dn: cn=Staff,ou=Groups,dc=example,dc=com
objectClass: groupOfNames
cn: Staff
member: uid=ada,ou=People,dc=example,dc=com

dn: uid=ada,ou=People,dc=example,dc=com
objectClass: inetOrgPerson
uid: ada
cn: Ada Lovelace
sn: Lovelace

dn: CN=Bob,OU=People,DC=example,DC=com
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: user
cn: Bob
uid: bob

dn: CN=WS01,OU=Computers,DC=example,DC=com
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: user
objectClass: computer
cn: WS01
uid: WS01$

dn: CN=Vendor,OU=Contacts,DC=example,DC=com
objectClass: top
objectClass: person
objectClass: organizationalPerson
objectClass: contact
cn: Vendor
uid: vendor

dn: uid=svc-persona,ou=Service Accounts,dc=example,dc=com
objectClass: account
objectClass: simpleSecurityObject
uid: svc-persona

dn: uid=cy,ou=People,dc=example,dc=com
objectclass: INETORGPERSON
uid: cy
cn: Cy

dn: uid=noclass,ou=People,dc=example,dc=com
uid: noclass
cn: No class
"""

PEOPLE = ["ada", "bob", "cy"]


def ids(directory: FileDirectory) -> list[str]:
    return [employee.id for employee in directory.read(["cn"])]


def test_only_person_entries_of_an_ldif_export_are_employees(tmp_path: Path) -> None:
    path = tmp_path / "export.ldif"
    path.write_text(EXPORT, encoding="utf-8")
    assert ids(FileDirectory(path, id_attributes=["uid"])) == PEOPLE


def test_an_ldif_without_object_classes_holds_only_employees(tmp_path: Path) -> None:
    path = tmp_path / "people.ldif"
    path.write_text("dn: cn=a,dc=x\ncn: a\n\ndn: cn=b,dc=x\ncn: b\n", encoding="utf-8")
    assert ids(FileDirectory(path)) == ["a", "b"]


def test_object_classes_are_configurable(tmp_path: Path) -> None:
    path = tmp_path / "export.ldif"
    path.write_text(EXPORT, encoding="utf-8")
    services = FileDirectory(path, id_attributes=["uid"], object_classes=["account"])
    assert ids(services) == ["svc-persona"]
    with_computers = FileDirectory(path, id_attributes=["uid"], exclude_object_classes=[])
    assert ids(with_computers) == ["ada", "bob", "WS01$", "vendor", "cy"]


# csvde writes every class, ';'-separated; the Export-Csv of Get-ADObject writes the most
# specific one.
CSVDE = """\
DN,objectClass,sAMAccountName,personaName
"DC=example,DC=com",top;domain;domainDNS,,
"OU=People,DC=example,DC=com",top;organizationalUnit,,
"CN=Bob,OU=People,DC=example,DC=com",top;person;organizationalPerson;user,bob,
"CN=WS01,OU=Computers,DC=example,DC=com",top;person;organizationalPerson;user;computer,WS01$,
"CN=Staff,OU=Groups,DC=example,DC=com",top;group,Staff,
"CN=Vendor,OU=Contacts,DC=example,DC=com",top;person;organizationalPerson;contact,,
"CN=Eve,OU=People,DC=example,DC=com",top;person;organizationalPerson;user,eve,
"""
EXPORT_CSV = """\
"DistinguishedName","ObjectClass","SamAccountName","personaName"
"CN=Bob,OU=People,DC=example,DC=com","user","bob",""
"CN=WS01,OU=Computers,DC=example,DC=com","computer","WS01$",""
"OU=People,DC=example,DC=com","organizationalUnit","",""
"CN=Vendor,OU=Contacts,DC=example,DC=com","contact","",""
"CN=Eve,OU=People,DC=example,DC=com","user","eve",""
"""


@pytest.mark.parametrize("text", [CSVDE, EXPORT_CSV], ids=["csvde", "export-csv"])
def test_only_person_rows_of_a_csv_with_an_object_class_column_are_employees(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "export.csv"
    path.write_text(text, encoding="utf-8")
    assert ids(FileDirectory(path, id_attributes=["sAMAccountName"])) == ["bob", "eve"]


def test_a_csv_without_an_object_class_column_holds_only_employees(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text("sAMAccountName,title\nbob,Nurse\nWS01$,\n", encoding="utf-8")
    assert ids(FileDirectory(path, id_attributes=["sAMAccountName"])) == ["bob", "WS01$"]


def test_a_change_planned_for_an_entry_that_is_not_a_person_is_a_conflict(tmp_path: Path) -> None:
    path = tmp_path / "export.ldif"
    path.write_text(EXPORT, encoding="utf-8")
    change = Change("WS01$", "CN=WS01,OU=Computers,DC=example,DC=com", "personaName", None, "x")
    [result] = FileDirectory(path, id_attributes=["uid"]).apply([change])
    assert (result.status, result.message) == (
        "conflict",
        "entry is no longer a person (objectClass)",
    )
    assert path.read_text(encoding="utf-8") == EXPORT


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


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_sync_writes_only_people_and_leaves_every_other_entry_byte_identical(
    in_tmp: Path, run_cli: Run
) -> None:
    (in_tmp / "export.ldif").write_text(EXPORT, encoding="utf-8")
    config(in_tmp, "  type: file\n  path: export.ldif\n  id_attributes: [uid]\n")
    planned = run_cli("plan", "--format", "json", "-q")
    assert planned.exit_code == 2, planned.stderr
    plan = json.loads(planned.stdout)
    assert [c["employee"] for c in plan["changes"]] == ["bob", "ada", "cy"]
    assert plan["summary"]["employees"] == 3
    result = run_cli("sync", "-q")
    assert result.exit_code == 0, result.stderr
    # The whole file: the persona added to the three people, nothing else touched.
    assert (in_tmp / "export.ldif").read_text(encoding="utf-8") == (
        EXPORT.replace("sn: Lovelace\n", "sn: Lovelace\npersonaName: staff\n")
        .replace("uid: bob\n", "uid: bob\npersonaName: staff\n")
        .replace("cn: Cy\n", "cn: Cy\npersonaName: staff\n")
    )


def test_sync_on_a_csvde_export_writes_only_user_rows(in_tmp: Path, run_cli: Run) -> None:
    (in_tmp / "export.csv").write_text(CSVDE, encoding="utf-8")
    config(in_tmp, "  type: file\n  path: export.csv\n  id_attributes: [sAMAccountName]\n")
    result = run_cli("sync", "-q")
    assert result.exit_code == 0, result.stderr
    assert (in_tmp / "export.csv").read_text(encoding="utf-8") == (
        CSVDE.replace("user,bob,\n", "user,bob,staff\n").replace("user,eve,\n", "user,eve,staff\n")
    )


def test_object_classes_from_the_config(in_tmp: Path, run_cli: Run) -> None:
    (in_tmp / "export.ldif").write_text(EXPORT, encoding="utf-8")
    config(
        in_tmp,
        "  type: file\n  path: export.ldif\n  id_attributes: [uid]\n"
        "  object_classes: [account]\n  exclude_object_classes: []\n",
    )
    planned = run_cli("plan", "--format", "json", "-q")
    assert planned.exit_code == 2, planned.stderr
    assert [c["employee"] for c in json.loads(planned.stdout)["changes"]] == ["svc-persona"]
