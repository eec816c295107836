"""The LDAP backend against a real OpenLDAP slapd started by the test suite."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from ldap3.utils.dn import escape_rdn

from persona_sync.directory import ldap_checks, ldap_stream
from tests.ldap.conftest import canonical_dn, differences, write_config
from tests.servers.slapd import SlapdServer

Run = Callable[..., Result]

HOSTILE_CN = 'Smith, John "Jr" <x>; +1 \\ # *)(uid=*'
UMLAUT_CN = "Jörg Müller"


def people(slapd: SlapdServer) -> dict[str, str]:
    base = slapd.people_dn
    return {
        "ceo": f"uid=ceo,{base}",
        "nurse": f"cn={escape_rdn(HOSTILE_CN)},{base}",
        "engineer": f"cn={escape_rdn(UMLAUT_CN)},{base}",
        "svc": f"uid=svc-report,{base}",
        "accountant": f"uid=acct,{base}",
    }


def load_people(slapd: SlapdServer) -> dict[str, str]:
    dns = people(slapd)
    slapd.add_ldif(f"""\
dn: {dns["ceo"]}
objectClass: inetOrgPerson
uid: ceo
cn: Ada Chief
sn: Chief
title: Chief Executive Officer
physicalDeliveryOfficeName: Munich HQ

dn: {dns["nurse"]}
objectClass: inetOrgPerson
uid: jsmith
cn: {HOSTILE_CN}
sn: Smith
title: Registered Nurse *)(uid=*
physicalDeliveryOfficeName: North Clinic
manager: {dns["ceo"]}

dn: {dns["engineer"]}
objectClass: inetOrgPerson
uid: jmuller
cn: {UMLAUT_CN}
sn: Müller
title: Software Engineer
physicalDeliveryOfficeName: Munich HQ
manager: {dns["ceo"]}

dn: {dns["svc"]}
objectClass: inetOrgPerson
uid: svc-report
cn: Report job
sn: Job
employeeType: service

dn: {dns["accountant"]}
objectClass: inetOrgPerson
objectClass: personaHolder
uid: acct
cn: Accountant
sn: Counter
title: Accountant
physicalDeliveryOfficeName: Munich HQ
manager: {dns["ceo"]}
personaName: engineer

""")
    return dns


@pytest.fixture
def setup(slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    dns = load_people(slapd)
    write_config(
        tmp_path,
        (
            "  type: ldap\n  preset: openldap\n"
            f"  urls: [{slapd.ldaps_url}]\n  ca_file: {slapd.ca_file}\n"
            f"  bind: {{user: '{slapd.service_dn}'}}\n"
            f"  base_dns: ['{slapd.people_dn}']\n"
            "  auxiliary_class: personaHolder\n"
        ),
        "personaName",
    )
    monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", slapd.service_password)
    monkeypatch.chdir(tmp_path)
    return dns


def test_plan_apply_writes_exactly_the_plan(
    slapd: SlapdServer, setup: dict[str, str], run_cli: Run
) -> None:
    before = slapd.dump()
    planned = run_cli("plan", "-o", "plan.json")
    assert planned.exit_code == 2, planned.stderr
    plan = json.loads(Path("plan.json").read_text())
    assert sorted((canonical_dn(c["dn"]), c["old"], c["new"]) for c in plan["changes"]) == sorted(
        [
            (canonical_dn(setup["ceo"]), None, "vip"),
            (canonical_dn(setup["nurse"]), None, "clinician"),
            (canonical_dn(setup["engineer"]), None, "engineer"),
            (canonical_dn(setup["accountant"]), "engineer", "knowledge-worker"),
        ]
    )
    assert plan["provenance"]["directory"] == f"ldap:{slapd.people_dn.casefold()}"
    assert slapd.dump() == before  # planning writes nothing
    applied = run_cli("apply", "plan.json")
    assert applied.exit_code == 0, applied.stderr
    assert re.fullmatch(
        r"run (\S+): 4 applied, 0 already set, 0 conflicts, 0 failed; journal \S+/\1\.jsonl\n",
        applied.stderr,
    ), applied.stderr
    assert differences(before, slapd.dump()) == {
        canonical_dn(setup["ceo"]): ([], ["objectClass: personaHolder", "personaName: vip"]),
        canonical_dn(setup["nurse"]): (
            [],
            ["objectClass: personaHolder", "personaName: clinician"],
        ),
        canonical_dn(setup["engineer"]): (
            [],
            ["objectClass: personaHolder", "personaName: engineer"],
        ),
        canonical_dn(setup["accountant"]): (
            ["personaName: engineer"],
            ["personaName: knowledge-worker"],
        ),
    }
    again = run_cli("plan", "--format", "json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["changes"] == []


def test_edit_between_plan_and_apply_is_a_conflict(
    slapd: SlapdServer, setup: dict[str, str], run_cli: Run
) -> None:
    run_cli("plan", "-o", "plan.json", "-q")
    slapd.modify_ldif(
        f"dn: {setup['accountant']}\nchangetype: modify\n"
        "replace: personaName\npersonaName: tech-support\n"
    )
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 3, result.stderr
    assert result.stderr.splitlines()[0] == (
        f"conflict: acct ({setup['accountant']}) personaName: value changed since the plan: "
        "expected 'engineer', found 'tech-support'"
    )
    assert "personaName: tech-support" in slapd.dump(setup["accountant"])


def test_rollback_restores(slapd: SlapdServer, setup: dict[str, str], run_cli: Run) -> None:
    before = slapd.dump()
    assert run_cli("sync").exit_code == 0
    run_id = json.loads(run_cli("runs", "--format", "json").stdout)[0]["run_id"]
    result = run_cli("rollback", run_id)
    assert result.exit_code == 0, result.stderr
    # The values are back; the auxiliary class added to hold them stays (harmless).
    assert differences(before, slapd.dump()) == {
        canonical_dn(setup[key]): ([], ["objectClass: personaHolder"])
        for key in ("ceo", "nurse", "engineer")
    }


def test_explain_finds_hostile_names(
    slapd: SlapdServer, setup: dict[str, str], run_cli: Run
) -> None:
    result = run_cli("explain", "jsmith", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["employee"]["id"] == "jsmith"
    assert canonical_dn(data["employee"]["dn"]) == canonical_dn(setup["nurse"])
    assert data["scenarios"][0]["persona"] == "clinician"
    injected = run_cli("explain", "*)(uid=*")
    assert injected.exit_code == 1
    assert injected.stderr.startswith("error: no employee '*)(uid=*' in ldap:")


def test_multi_valued_target_is_refused(
    slapd: SlapdServer, setup: dict[str, str], run_cli: Run
) -> None:
    config = Path("persona-sync.yaml")
    config.write_text(config.read_text().replace("persona: personaName", "persona: personaTags"))
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        (
            "error: target attribute personaTags is multi-valued in this directory's schema, so "
            "compare-and-swap cannot protect it; choose a single-valued attribute: a custom "
            "single-valued attribute (see the README for a two-line schema)\n"
        ),
    )
    config.write_text(config.read_text().replace("persona: personaTags", "persona: noSuchAttr"))
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        (
            "error: target attribute noSuchAttr does not exist in this directory's schema; "
            "attributes that fit: a custom single-valued attribute (see the README for a two-line "
            "schema)\n"
        ),
    )


def test_connection_errors_are_clear(
    slapd: SlapdServer,
    setup: dict[str, str],
    run_cli: Run,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", "wrong")
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: bind as {slapd.service_dn} refused: invalid credentials (LDAP 49)\n",
    )
    monkeypatch.delenv("PERSONA_SYNC_BIND_PASSWORD")
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        (
            "error: no bind password: set the environment variable PERSONA_SYNC_BIND_PASSWORD, or "
            "name a file with the secret (never put it on the command line)\n"
        ),
    )
    secret = tmp_path / "bind-password"
    secret.write_text(slapd.service_password + "\n")
    config = Path("persona-sync.yaml")
    config.write_text(
        config.read_text().replace("  bind: {", f"  bind: {{password_file: {secret}, ")
    )
    assert run_cli("plan", "-q").exit_code == 2
    config.write_text(config.read_text().replace(f"  ca_file: {slapd.ca_file}\n", ""))
    result = run_cli("plan")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: cannot connect to {slapd.ldaps_url}: TLS certificate verification failed (set "
        "directory.ca_file to the CA that signed the server's certificate)\n"
    )
    config.write_text(config.read_text().replace(slapd.ldaps_url, slapd.url))
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        (
            f"error: directory.urls: {slapd.url} is plain LDAP, which would send the bind "
            "password in clear: use ldaps://, set start_tls: true, or (test labs only) "
            "allow_plaintext: true\n"
        ),
    )
    config.write_text(
        config.read_text().replace(
            "  auxiliary_class", f"  ca_file: {slapd.ca_file}\n  start_tls: true\n  auxiliary_class"
        )
    )
    assert run_cli("plan", "-q").exit_code == 2


def test_check_connection(slapd: SlapdServer, setup: dict[str, str], run_cli: Run) -> None:
    result = run_cli("check-connection")
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"ok    connect       {slapd.ldaps_url} as {slapd.service_dn} (TLS)"
    assert lines[1].startswith("ok    server        ")
    assert lines[2] == "ok    decoder       entries decoded by the compiled decoder"
    assert lines[3] == "ok    target        personaName: in the schema, single-valued"
    assert lines[4] == "ok    employees     5 read, 4 in scope, 1 out of scope"
    assert lines[5].startswith("ok    write access  may write personaName (probed on ")
    before = slapd.dump()
    assert run_cli("check-connection").exit_code == 0
    assert slapd.dump() == before  # the probe changes nothing
    # Installed without a C compiler: the read still works, more slowly, and says why.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ldap_checks, "DECODER", "python")
        patch.setattr(ldap_stream, "decode_entries", None)
        patch.setattr(ldap_stream, "frame_messages", None)
        slow = run_cli("check-connection")
    assert slow.exit_code == 0, slow.stdout + slow.stderr
    assert slow.stdout.splitlines()[2:5] == [
        "WARN  decoder       entries decoded in pure Python (a full plan takes about a third "
        "longer): reinstall persona-sync where a C compiler and Python's headers are "
        "installed (Debian: apt install gcc python3-dev) to build the compiled decoder",
        "ok    target        personaName: in the schema, single-valued",
        "ok    employees     5 read, 4 in scope, 1 out of scope",
    ]
    config = Path("persona-sync.yaml")
    config.write_text(config.read_text().replace("persona: personaName", "persona: displayName"))
    denied = run_cli("check-connection")
    assert denied.exit_code == 1
    assert denied.stdout.splitlines()[-1].startswith(
        "FAIL  write access  may NOT write displayName on "
    )


def test_failover_to_the_next_url(slapd: SlapdServer, setup: dict[str, str], run_cli: Run) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"ldaps://127.0.0.1:{probe.getsockname()[1]}"
    config = Path("persona-sync.yaml")
    config.write_text(
        config.read_text().replace(
            f"urls: [{slapd.ldaps_url}]", f"urls: [{dead}, {slapd.ldaps_url}]"
        )
    )
    assert run_cli("plan", "-q").exit_code == 2
    config.write_text(config.read_text().replace(f", {slapd.ldaps_url}]", "]"))
    result = run_cli("plan")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: cannot connect to {dead}: ")
