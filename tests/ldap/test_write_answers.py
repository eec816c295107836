"""What each answer of slapd to a compare-and-swap modify becomes (issue 9, points 9 and 10).

- A refusal that repeats for every employee stops the run at the first, with one message;
  one that concerns some entries only is reported per entry and the run goes on.
- constraintViolation / attributeOrValueExists mean "a value appeared" only for a plain add;
  otherwise (and when nothing appeared) they are failures with the server's own message,
  decided at once, not after rounds of retries.
- "Already there" and "still the old value" follow the one rule (``same_value``): case does
  not count, as the server's caseIgnoreMatch does not count it.
- A requested cancel stops sending; answers in flight are awaited; the rest is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory.base import GONE, Cancel, Change
from persona_sync.directory.ldap import LdapDirectory
from persona_sync.secrets import Secret
from tests.ldap.conftest import PEOPLE, WINDOW, journal_rows, proxied_config, written
from tests.ldap.proxy import LdapProxy, ldap_proxy
from tests.servers.plugin import require_slapd
from tests.servers.slapd import SlapdServer

Run = Callable[..., Result]


def summary(text: str) -> str:
    run_id = str(journal_rows("run")[-1]["run_id"])
    return f"run {run_id}: {text}; journal {Path('state/journal').resolve() / run_id}.jsonl"


def planned_dns() -> list[str]:
    return [c["dn"] for c in json.loads(Path("plan.json").read_text())["changes"]]


def test_no_write_access_stops_at_the_first_refusal(
    slapd: SlapdServer, proxied: LdapProxy, run_cli: Run, tmp_path: Path
) -> None:
    # displayName is single-valued, and the service account may not write it.
    config = Path("persona-sync.yaml")
    config.write_text(config.read_text().replace("persona: personaName", "persona: displayName"))
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    first = planned_dns()[0]
    result = run_cli("apply", "plan.json")
    reason = (
        f"permission denied: {slapd.service_dn} may not write displayName (refused on {first}: "
        "LDAP 50 insufficientAccessRights); stopped at the first refusal: grant the account "
        "write access to displayName on the employees' entries, then rerun"
    )
    assert (result.exit_code, result.stderr.splitlines()) == (
        1,
        [
            f"stopped: {reason}",
            summary(
                f"0 applied, 0 already set, 0 conflicts, 1 failed, {PEOPLE - 1} not sent; aborted"
            ),
        ],
    )
    assert proxied.counts["modifyRequest"] == 1  # nothing else was sent
    rows = journal_rows()
    assert [(r["dn"], r["result"], r["message"]) for r in rows[:1]] == [(first, "failed", reason)]
    assert {r["result"] for r in rows[1:]} == {"skipped"}


def test_refusals_on_some_entries_do_not_stop_the_run(
    slapd: SlapdServer, proxied: LdapProxy, run_cli: Run, tmp_path: Path
) -> None:
    # The service account may write under ou=People only; three employees live elsewhere.
    contractors = f"ou=Contractors,{slapd.base_dn}"
    slapd.add_ldif(
        f"dn: {contractors}\nobjectClass: organizationalUnit\nou: Contractors\n\n"
        + "".join(
            f"dn: uid=z{i},{contractors}\nobjectClass: inetOrgPerson\nobjectClass: personaHolder\n"
            f"uid: z{i}\ncn: Z {i}\nsn: Z\ntitle: Software Engineer\n\n"
            for i in range(3)
        )
    )
    config = Path("persona-sync.yaml")
    config.write_text(
        config.read_text().replace(
            f"base_dns: ['{slapd.people_dn}']", f"base_dns: ['{slapd.people_dn}', '{contractors}']"
        )
    )
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    result = run_cli("apply", "plan.json")
    assert (result.exit_code, result.stderr.splitlines()) == (
        1,
        [
            f"failed: 3 employees (z0, z1, z2): permission denied: {slapd.service_dn} may not "
            "write personaName on this entry (LDAP 50)",
            summary(f"{PEOPLE} applied, 0 already set, 0 conflicts, 3 failed"),
        ],
    )
    assert written(slapd) == PEOPLE


@pytest.fixture
def constrained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SlapdServer, LdapProxy]]:
    """slapd that accepts only persona ids of letters (no '-'), by slapo-constraint."""
    require_slapd()
    with SlapdServer(constraints=["personaName regex ^[a-z]+$"]) as slapd:
        people = slapd.people_dn
        slapd.add_ldif(f"""\
dn: uid=add-refused,{people}
objectClass: inetOrgPerson
objectClass: personaHolder
uid: add-refused
cn: A
sn: A
title: Accountant

dn: uid=engineer,{people}
objectClass: inetOrgPerson
objectClass: personaHolder
uid: engineer
cn: E
sn: E
title: Software Engineer

dn: uid=replace-refused,{people}
objectClass: inetOrgPerson
objectClass: personaHolder
uid: replace-refused
cn: R
sn: R
title: Accountant
personaName: engineer

""")
        with ldap_proxy(slapd.port, tmp_path / "proxy-tls") as proxy:
            proxied_config(slapd, proxy, tmp_path)
            monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", slapd.service_password)
            monkeypatch.chdir(tmp_path)
            yield slapd, proxy


def test_a_value_the_server_refuses_fails_with_its_message(
    constrained: tuple[SlapdServer, LdapProxy], run_cli: Run
) -> None:
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    result = run_cli("apply", "plan.json")
    # A plain add (nothing was there) and a delete + add (an old value was): both refused
    # for good, so failures with the server's words, each sent once.
    assert (result.exit_code, result.stderr.splitlines()) == (
        1,
        [
            "failed: 2 employees (add-refused, replace-refused): LDAP 19 constraintViolation: "
            "modify breaks constraint on personaName",
            summary("1 applied, 0 already set, 0 conflicts, 2 failed"),
        ],
    )
    assert constrained[1].counts["modifyRequest"] == 3


def test_a_value_that_appeared_since_the_plan(
    slapd: SlapdServer, proxied: LdapProxy, run_cli: Run
) -> None:
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    people = slapd.people_dn
    # Since the plan (empty -> engineer for all): p000 got the planned value in another
    # case, p001 another value.
    slapd.modify_ldif(
        f"dn: uid=p000,{people}\nchangetype: modify\nadd: personaName\npersonaName: ENGINEER\n\n"
        f"dn: uid=p001,{people}\nchangetype: modify\nadd: personaName\n"
        "personaName: tech-support\n\n"
    )
    result = run_cli("apply", "plan.json")
    assert (result.exit_code, result.stderr.splitlines()) == (
        3,
        [
            f"conflict: p001 (uid=p001,{people}) personaName: value changed since the plan: "
            "expected (empty), found 'tech-support'",
            summary(f"{PEOPLE - 2} applied, 1 already set, 1 conflicts, 0 failed"),
        ],
    )
    rows = {str(r["dn"]).split(",")[0][4:]: r for r in journal_rows()}
    assert (rows["p000"]["result"], rows["p000"]["message"], rows["p000"]["found"]) == (
        "unchanged",
        "already had the value",
        "ENGINEER",
    )
    assert "personaName: ENGINEER" in slapd.dump(f"uid=p000,{people}")  # left as it was


def test_old_value_in_another_case_is_still_the_old_value(
    slapd: SlapdServer, proxied: LdapProxy, run_cli: Run
) -> None:
    people = slapd.people_dn
    slapd.modify_ldif(
        f"dn: uid=p000,{people}\nchangetype: modify\nreplace: title\ntitle: Accountant\n"
        "-\nadd: personaName\npersonaName: engineer\n"
    )
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    plan = json.loads(Path("plan.json").read_text())
    assert plan["changes"][0]["old"] == "engineer"
    slapd.modify_ldif(
        f"dn: uid=p000,{people}\nchangetype: modify\nreplace: personaName\npersonaName: ENGINEER\n"
    )
    result = run_cli("apply", "plan.json")
    assert (result.exit_code, result.stderr.splitlines()) == (
        0,
        [summary(f"{PEOPLE} applied, 0 already set, 0 conflicts, 0 failed")],
    )
    assert "personaName: knowledge-worker" in slapd.dump(f"uid=p000,{people}")


def directory_for(slapd: SlapdServer, proxy: LdapProxy) -> LdapDirectory:
    spec = LdapDirectoryConfig.model_validate(
        {
            "type": "ldap",
            "preset": "openldap",
            "urls": [f"ldaps://127.0.0.1:{proxy.port}"],
            "ca_file": slapd.ca_file,
            "bind": {"user": slapd.service_dn},
            "base_dns": [slapd.people_dn],
            "auxiliary_class": "personaHolder",
            "write_window": WINDOW,
        }
    )
    return LdapDirectory(spec, Secret(slapd.service_password, "test"))


def engineers(slapd: SlapdServer) -> list[Change]:
    return [
        Change(f"p{i:03d}", f"uid=p{i:03d},{slapd.people_dn}", "personaName", None, "engineer")
        for i in range(PEOPLE)
    ]


def test_cancel_stops_sending_and_awaits_the_answers_in_flight(
    slapd: SlapdServer, proxied: LdapProxy
) -> None:
    cancel = Cancel()
    proxied.after("modifyResponse", 100, lambda connection: cancel.request("SIGTERM"))
    with directory_for(slapd, proxied) as directory:
        results = directory.apply(engineers(slapd), cancel)
    applied = [r for r in results if r.status == "applied"]
    skipped = [r for r in results if r.status == "skipped"]
    assert 100 <= len(applied) <= 100 + WINDOW
    assert len(applied) + len(skipped) == PEOPLE
    assert {r.message for r in skipped} == {"not sent: run interrupted"}
    # Every request sent got its answer; none was sent after the cancel but the one that
    # may have been on its way.
    assert proxied.counts["modifyRequest"] == proxied.counts["modifyResponse"] == len(applied)
    assert written(slapd) == len(applied)


def test_read_back_reconnects_when_the_reading_connection_was_lost(
    slapd: SlapdServer, proxied: LdapProxy
) -> None:
    changes = engineers(slapd)[:2] + [
        Change("gone", f"uid=gone,{slapd.people_dn}", "personaName", None, "engineer")
    ]
    slapd.modify_ldif(
        f"dn: uid=p001,{slapd.people_dn}\nchangetype: modify\nadd: personaName\npersonaName: vip\n"
    )
    with directory_for(slapd, proxied) as directory:
        assert directory.read_back(changes) == [None, "vip", GONE]
        proxied.after("searchResDone", 1, proxied.cut)  # the next answer ends the connection
        assert directory.read_back(changes) == [None, "vip", GONE]
    assert proxied.cuts == 1
    assert proxied.connections == 2
