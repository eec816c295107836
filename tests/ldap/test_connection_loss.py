"""Losing the connection in the middle of writing: reconnect where safe, else stop resumably;
the journal matches what the server really holds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import Result

from tests.ldap.conftest import write_config
from tests.ldap.proxy import CuttingProxy, cutting_proxy
from tests.servers.slapd import SlapdServer

Run = Callable[..., Result]
PEOPLE = 300


def entries_ldif(slapd: SlapdServer) -> str:
    return "".join(
        f"dn: uid=p{i:03d},{slapd.people_dn}\nobjectClass: inetOrgPerson\n"
        f"objectClass: personaHolder\nuid: p{i:03d}\n"
        f"cn: Person {i}\nsn: P\ntitle: Software Engineer\nphysicalDeliveryOfficeName: Munich HQ\n\n"
        for i in range(PEOPLE)
    )


@pytest.fixture
def proxied(
    slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CuttingProxy]:
    slapd.add_ldif(entries_ldif(slapd))
    port = urlsplit(slapd.ldaps_url).port
    assert port is not None
    with cutting_proxy(port) as proxy:
        write_config(
            tmp_path,
            (
                "  type: ldap\n  preset: openldap\n"
                f"  urls: ['ldaps://127.0.0.1:{proxy.port}']\n  ca_file: {slapd.ca_file}\n"
                f"  bind: {{user: '{slapd.service_dn}'}}\n"
                f"  base_dns: ['{slapd.people_dn}']\n"
                "  auxiliary_class: personaHolder\n  write_window: 20\n"
            ),
            "personaName",
        )
        monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", slapd.service_password)
        monkeypatch.chdir(tmp_path)
        yield proxy


def written(slapd: SlapdServer) -> int:
    return slapd.dump().count("personaName: engineer")


def journal_results(result: str) -> set[str]:
    """uid of every write the journal records with this result."""
    rows = [
        json.loads(line)
        for path in Path("state/journal").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    return {
        row["dn"].split(",")[0][4:]
        for row in rows
        if row["type"] == "write" and row["result"] == result
    }


def server_values(slapd: SlapdServer) -> dict[str, str]:
    """uid -> personaName as an independent client (ldapsearch) sees it."""
    values: dict[str, str] = {}
    for block in slapd.dump(slapd.people_dn).split("\n\n"):
        lines = block.splitlines()
        uid = next((line[5:] for line in lines if line.startswith("uid: ")), None)
        value = next((line[13:] for line in lines if line.startswith("personaName: ")), None)
        if uid and value:
            values[uid] = value
    return values


def test_reconnects_and_finishes(slapd: SlapdServer, proxied: CuttingProxy, run_cli: Run) -> None:
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    # Connection 1 reads (plan is done); in apply, 2 is the reader, 3 the writer.
    proxied.cut_connection = proxied.connections + 2
    proxied.cut_after_bytes = 6000  # past the TLS handshake and bind, into the modifies
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 0, result.stderr
    assert proxied.cuts == 1
    assert written(slapd) == PEOPLE
    assert len(journal_results("applied")) == PEOPLE


def test_stops_resumably_when_the_server_stays_away(
    slapd: SlapdServer, proxied: CuttingProxy, run_cli: Run
) -> None:
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    proxied.cut_connection = proxied.connections + 2
    proxied.cut_after_bytes = 6000  # past the TLS handshake and bind, into the modifies
    proxied.refuse_after_cut = True
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 1
    assert proxied.cuts == 1
    done = written(slapd)
    assert 0 < done < PEOPLE
    # The journal never claims a write the server lacks, and names every write it may hold:
    # confirmed <= on the server <= confirmed + not confirmed (in flight when it was cut).
    confirmed, unconfirmed = journal_results("applied"), journal_results("failed")
    on_server = {dn for dn, value in server_values(slapd).items() if value == "engineer"}
    assert confirmed <= on_server <= confirmed | unconfirmed
    assert len(confirmed) + len(unconfirmed) == PEOPLE
    last = result.stderr.splitlines()[-1]
    assert last.startswith("run ") and f": {len(confirmed)} applied, 0 conflicts, " in last
    assert "may or may not be written; rerun apply with the same plan" in result.stderr
    # Resuming is safe: the same plan finishes the job.
    proxied.refuse_after_cut = False
    proxied.cut_connection = 0
    again = run_cli("apply", "plan.json")
    assert again.exit_code == 0, again.stderr
    assert written(slapd) == PEOPLE
