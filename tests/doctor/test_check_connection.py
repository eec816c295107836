"""check-connection: per-backend checks, and the warning about target attributes that
already hold values that are not persona ids (file backend, slapd, Samba AD DC)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from tests.conftest import DEFAULT_RULES
from tests.ldap.conftest import write_config
from tests.servers.samba import AdUser, SambaDC
from tests.servers.slapd import SlapdServer

Run = Callable[..., Result]

WHY = (
    "Another product may keep its data in this attribute (the Power BI gateway's SSO user "
    "mapping, for one, can use msDS-cloudExtensionAttribute1); "
)
LEFT_ALONE = (
    "persona-sync leaves such values alone (the plan lists them as foreign values); if "
    "another product owns them, choose a free attribute"
)
REPLACED = (
    "owns_attribute is true, so a sync replaces those in scope: unless they are yours to "
    "replace, choose a free attribute"
)


def person(dn: str, account: str, title: str, value: str | None = None, *extra: str) -> str:
    lines = [f"dn: {dn}", f"sAMAccountName: {account}", f"title: {title}", *extra]
    if value is not None:
        lines.append(f"msDS-cloudExtensionAttribute1: {value}")
    return "\n".join(lines) + "\n\n"


@pytest.fixture
def company(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write company.ldif from person() blocks and a config for it; return the config."""

    def make(*people: str, owns: bool = False) -> Path:
        (tmp_path / "company.ldif").write_text("".join(people), encoding="utf-8")
        config = tmp_path / "persona-sync.yaml"
        config.write_text(
            f"rules: {DEFAULT_RULES}\n"
            "directory:\n  type: file\n  path: company.ldif\n"
            "targets:\n  persona: msDS-cloudExtensionAttribute1\n"
            f"owns_attribute: {'true' if owns else 'false'}\n"
            "state_dir: state\n",
            encoding="utf-8",
        )
        return config

    monkeypatch.chdir(tmp_path)
    return make


def test_file_without_foreign_values_has_no_warning(
    company: Callable[..., Path], run_cli: Run, tmp_path: Path
) -> None:
    company(
        person("CN=Ann,OU=People,DC=example,DC=com", "ann", "Software Engineer", "engineer"),
        person("CN=Bob,OU=People,DC=example,DC=com", "bob", "Registered Nurse", "VIP"),
        person("CN=Cid,OU=People,DC=example,DC=com", "cid", "Cashier"),
    )
    result = run_cli("check-connection")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        f"ok    file          {tmp_path / 'company.ldif'}\n"
        "ok    employees     3 read, 3 in scope, 0 out of scope\n",
        "",
    )


def test_file_warns_with_count_examples_and_why(
    company: Callable[..., Path], run_cli: Run, tmp_path: Path
) -> None:
    before = company(
        person("CN=Zed,OU=People,DC=example,DC=com", "zed", "Cashier", "zed@contoso.example"),
        person("CN=Ann,OU=People,DC=example,DC=com", "ann", "Software Engineer", "engineer"),
        person("CN=Bob,OU=People,DC=example,DC=com", "bob", "Cashier", "bob@contoso.example"),
        person(
            "CN=Old,OU=People,DC=example,DC=com",
            "old",
            "Cashier",
            "x" * 50,
            "userAccountControl: 514",  # disabled: out of scope, but still someone's value
        ),
        person("CN=Amy,OU=People,DC=example,DC=com", "Amy", "Cashier", "legacy tag"),
    ).parent
    ldif = (before / "company.ldif").read_bytes()
    result = run_cli("check-connection")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        f"ok    file          {tmp_path / 'company.ldif'}\n"
        "ok    employees     5 read, 4 in scope, 1 out of scope\n"
        "WARN  target values msDS-cloudExtensionAttribute1 already holds 4 values that are "
        "not persona ids (3 in scope): Amy='legacy tag', bob='bob@contoso.example', "
        f"old='{'x' * 37}...' and 1 more. {WHY}{LEFT_ALONE}\n",
        "",
    )
    assert (before / "company.ldif").read_bytes() == ldif  # nothing written
    assert not (before / "state").exists()


def test_file_warning_when_persona_sync_owns_the_attribute(
    company: Callable[..., Path], run_cli: Run, tmp_path: Path
) -> None:
    company(
        person("CN=Tab,OU=People,DC=example,DC=com", "tab", "Cashier", "a\tb"),
        person("CN=Svc,OU=Service Accounts,DC=example,DC=com", "svc", "Backup job", "sso"),
        owns=True,
    )
    result = run_cli("check-connection")
    assert (result.exit_code, result.stdout) == (
        0,
        f"ok    file          {tmp_path / 'company.ldif'}\n"
        "ok    employees     2 read, 1 in scope, 1 out of scope\n"
        "WARN  target values msDS-cloudExtensionAttribute1 already holds 2 values that are "
        f"not persona ids (1 in scope): svc='sso', tab='a\\tb'. {WHY}{REPLACED}\n",
    )


def test_file_warning_in_json(company: Callable[..., Path], run_cli: Run, tmp_path: Path) -> None:
    company(person("CN=Bob,OU=People,DC=example,DC=com", "bob", "Cashier", "kiosk"))
    result = run_cli("check-connection", "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == [
        {
            "check": "file",
            "ok": True,
            "detail": str(tmp_path / "company.ldif"),
            "warning": False,
        },
        {
            "check": "employees",
            "ok": True,
            "detail": "1 read, 1 in scope, 0 out of scope",
            "warning": False,
        },
        {
            "check": "target values",
            "ok": True,
            "detail": "msDS-cloudExtensionAttribute1 already holds 1 value that is not a "
            f"persona id (1 in scope): bob='kiosk'. {WHY}{LEFT_ALONE}",
            "warning": True,
        },
    ]


def test_help_describes_each_backend(run_cli: Run) -> None:
    result = run_cli("check-connection", "--help")
    assert result.exit_code == 0
    usage, _, text = result.stdout.partition("\n")
    assert usage.endswith(" check-connection [OPTIONS]")  # the program's name is the runner's
    assert text == (
        "\n"
        "  Check the directory before the first sync; writes nothing.\n"
        "\n"
        "  What it checks depends on the directory type in the config:\n"
        "\n"
        "  file   the LDIF or CSV file exists; it and its folder are writable.\n"
        "  ldap   binds (and says whether TLS protects the bind), reads the server's\n"
        "         rootDSE (server, naming context), checks that each target attribute\n"
        "         is in the schema and single-valued, and probes on one employee in\n"
        "         scope that the account may write it: it deletes a value nobody has,\n"
        '         which the server refuses as "no such value" (may write) or\n'
        '         "insufficient access" (may not); nothing changes.\n'
        "  entra  gets a token (app, tenant), lists the application permissions in it\n"
        "         (writing needs User.ReadWrite.All), and checks that an extension\n"
        "         target is registered on this app (else: entra create-extension).\n"
        "         Graph has no harmless write probe: the first write shows it.\n"
        "\n"
        "  Then, on every backend: reads the employees, counts those in scope, and\n"
        "  warns (WARN) when a target attribute already holds values that are not\n"
        "  persona ids, with how many and a few examples: another product may keep\n"
        "  its data in that attribute.\n"
        "\n"
        "  Exit codes: 0 every check passed (warnings do not count), 1 a check failed.\n"
        "\n"
        "Options:\n"
        "  --config PATH         Sync configuration [default: ./persona-sync.yaml; env\n"
        "                        PERSONA_SYNC_CONFIG].\n"
        "  --format [text|json]  [default: text]\n"
        "  -h, --help            Show this message and exit.\n"
    )


# --- slapd ---------------------------------------------------------------------------


def test_slapd_warns_about_values_that_are_not_persona_ids(
    slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    base = slapd.people_dn
    slapd.add_ldif(
        "".join(
            f"dn: uid={uid},{base}\nobjectClass: inetOrgPerson\nobjectClass: personaHolder\n"
            f"uid: {uid}\ncn: {uid}\nsn: {uid}\ntitle: {title}\n"
            + (f"personaName: {value}\n" if value else "")
            + ("employeeType: service\n" if title == "Report job" else "")
            + "\n"
            for uid, title, value in [
                ("eng", "Software Engineer", None),
                ("svc-a", "Report job", "gw:svc-a@contoso.example"),
                ("svc-b", "Report job", "gw:svc-b@contoso.example"),
            ]
        )
    )
    write_config(
        tmp_path,
        (
            "  type: ldap\n  preset: openldap\n"
            f"  urls: [{slapd.ldaps_url}]\n  ca_file: {slapd.ca_file}\n"
            f"  bind: {{user: '{slapd.service_dn}'}}\n"
            f"  base_dns: ['{base}']\n"
            "  auxiliary_class: personaHolder\n"
        ),
        "personaName",
    )
    monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", slapd.service_password)
    monkeypatch.chdir(tmp_path)
    before = slapd.dump()
    result = run_cli("check-connection")
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith("ok    server        ")
    del lines[1]  # the server's name depends on the slapd build
    assert lines == [
        f"ok    connect       {slapd.ldaps_url} as {slapd.service_dn} (TLS)",
        "ok    decoder       entries decoded by the compiled decoder",
        "ok    target        personaName: in the schema, single-valued",
        "ok    employees     3 read, 1 in scope, 2 out of scope",
        "WARN  target values personaName already holds 2 values that are not persona ids "
        "(0 in scope): svc-a='gw:svc-a@contoso.example', svc-b='gw:svc-b@contoso.example'. "
        f"{WHY}{LEFT_ALONE}",
        f"ok    write access  may write personaName (probed on uid=eng,{base}, nothing changed)",
    ]
    assert slapd.dump() == before


# --- Samba AD DC (fixed ports: run under flock /tmp/persona-samba.lock) ----------------


def test_samba_warns_about_values_that_are_not_persona_ids(
    samba_dc: SambaDC,
    samba_ou: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Run,
) -> None:
    target = "msDS-cloudExtensionAttribute1"
    samba_dc.add_users(
        [
            AdUser("cc-eng", {"title": "Software Engineer"}, "Persona-Sync-Test-1!", samba_ou),
            AdUser(
                "cc-bi",
                {"title": "Analyst", target: "cc-bi@contoso.example"},
                "Persona-Sync-Test-1!",
                samba_ou,
            ),
        ]
    )
    write_config(
        tmp_path,
        (
            "  type: ldap\n  preset: ad\n"
            f"  urls: [{samba_dc.url}]\n  ca_file: {samba_dc.ca_file}\n"
            f"  bind: {{user: '{samba_dc.service_user}'}}\n"
            f"  base_dns: ['{samba_ou}']\n"
        ),
        target,
    )
    monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", samba_dc.service_password)
    monkeypatch.chdir(tmp_path)
    before = samba_dc.dump(samba_ou)
    result = run_cli("check-connection", "--format", "json")
    assert result.exit_code == 0, result.stdout + result.stderr
    findings = {f["check"]: f for f in json.loads(result.stdout)}
    assert findings["employees"]["detail"] == "2 read, 2 in scope, 0 out of scope"
    assert findings["target values"] == {
        "check": "target values",
        "ok": True,
        "detail": f"{target} already holds 1 value that is not a persona id (1 in scope): "
        f"cc-bi='cc-bi@contoso.example'. {WHY}{LEFT_ALONE}",
        "warning": True,
    }
    assert findings["write access"]["ok"] is True
    assert samba_dc.dump(samba_ou) == before
