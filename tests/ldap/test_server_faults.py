"""Server faults on LDAP, through the CLI: slapd stopped and restarted mid-read and mid-write,
a server that stops answering, wrong TLS certificates, unknown host, nothing listening.

Each ends in success or in one clear error naming the cause, within the configured
timeout; the journal shows what happened, and rerunning converges. Faults hit after the
Nth LDAP message (the proxy counts them), never after a delay.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme
from click.testing import Result

from tests.ldap.conftest import (
    PEOPLE,
    journal_results,
    journal_rows,
    log_events,
    proxied_config,
    server_values,
    write_config,
    written,
)
from tests.ldap.proxy import LdapProxy, ProxiedConnection, ldap_proxy
from tests.servers.slapd import SlapdServer

Run = Callable[..., Result]
BASE = "ou=People,dc=example,dc=com"


def restart(slapd: SlapdServer, proxy: LdapProxy, sig: signal.Signals) -> Callable[..., None]:
    def action(connection: ProxiedConnection) -> None:
        slapd.restart(sig)
        proxy.cut(connection)  # the connection died with the old process

    return action


def summary(run_id: str, text: str) -> str:
    return f"run {run_id}: {text}; journal {Path('state/journal').resolve() / run_id}.jsonl"


def only_run() -> str:
    runs = journal_rows("run")
    assert len(runs) == 1
    return str(runs[0]["run_id"])


def test_slapd_restarted_mid_read(
    slapd: SlapdServer, proxied: LdapProxy, run_cli: Run, tmp_path: Path
) -> None:
    proxied_config(slapd, proxied, tmp_path, "  page_size: 50\n")
    proxied.after("searchResEntry", 120, restart(slapd, proxied, signal.SIGTERM))
    result = run_cli("sync")
    assert result.exit_code == 0, result.stderr
    # The search resumed on a new connection; the 100 entries given before (two whole pages:
    # the page in progress is lost with the connection) were not given twice.
    resumed = log_events(result.stderr, "ldap_read_resumed")
    assert [(e["base"], e["given"]) for e in resumed] == [(BASE, 100)]
    assert result.stderr.splitlines()[-1] == summary(
        only_run(), f"{PEOPLE} applied, 0 already set, 0 conflicts, 0 failed"
    )
    assert written(slapd) == PEOPLE
    assert len(journal_results("applied")) == PEOPLE
    assert run_cli("plan", "-q").exit_code == 0  # converged: nothing left to do


def test_slapd_killed_and_restarted_mid_write(
    slapd: SlapdServer, proxied: LdapProxy, run_cli: Run
) -> None:
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    proxied.after("modifyResponse", 100, restart(slapd, proxied, signal.SIGKILL))
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 0, result.stderr
    assert [e["attempt"] for e in log_events(result.stderr, "ldap_connection_lost")] == [1]
    assert result.stderr.splitlines()[-1] == summary(
        only_run(), f"{PEOPLE} applied, 0 already set, 0 conflicts, 0 failed"
    )
    assert written(slapd) == PEOPLE
    rows = journal_rows()
    assert len(rows) == PEOPLE and {r["result"] for r in rows} == {"applied"}
    assert run_cli("plan", "-q").exit_code == 0


def test_slapd_killed_mid_write_and_gone_stops_resumably(
    slapd: SlapdServer, proxied: LdapProxy, run_cli: Run
) -> None:
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2

    def crash(connection: ProxiedConnection) -> None:
        slapd.kill()
        proxied.stop_listening()
        proxied.cut(connection)

    proxied.after("modifyResponse", 100, crash)
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 1, result.stderr
    run_id = only_run()
    port = proxied.port
    refused = (
        f"cannot connect to ldaps://127.0.0.1:{port}: connection refused (nothing listens on "
        f"127.0.0.1:{port})"
    )
    lines = result.stderr.splitlines()
    assert lines[-2] == f"stopped: connection lost and not regained: {refused}"
    # The reading connection died with the server too: what was in flight stays unconfirmed.
    confirmed, unconfirmed = journal_results("applied"), journal_results("unknown")
    assert len(confirmed) == 100
    assert 1 <= len(unconfirmed) <= 20
    not_sent = PEOPLE - 100 - len(unconfirmed)
    assert lines[-1] == summary(
        run_id,
        f"100 applied, 0 already set, 0 conflicts, 0 failed, {len(unconfirmed)} unconfirmed "
        f"(the next run reads them back), {not_sent} not sent; aborted",
    )
    assert f"unknown: {len(unconfirmed)} employees (" in result.stderr
    slapd.restart()
    proxied.listen()
    on_server = {uid for uid, value in server_values(slapd).items() if value == "engineer"}
    assert confirmed <= on_server <= confirmed | unconfirmed
    again = run_cli("apply", "plan.json")
    assert again.exit_code == 0, again.stderr
    assert written(slapd) == PEOPLE


def test_server_that_stops_answering_mid_read_times_out(
    slapd: SlapdServer, proxied: LdapProxy, run_cli: Run, tmp_path: Path
) -> None:
    proxied_config(slapd, proxied, tmp_path, "  page_size: 50\n  timeout: 1\n")
    proxied.after("searchResEntry", 120, proxied.hang)
    result = run_cli("plan")
    port = proxied.port
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        1,
        f"error: reading {BASE} failed: the connection was lost and not regained: cannot "
        f"connect to ldaps://127.0.0.1:{port}: no answer from 127.0.0.1:{port} within 1 s",
    )
    assert [e["error"] for e in log_events(result.stderr, "ldap_read_resumed")] == [
        "no answer from the server within 1 s"
    ]


def test_server_that_stops_answering_mid_write_times_out(
    slapd: SlapdServer, proxied: LdapProxy, run_cli: Run, tmp_path: Path
) -> None:
    proxied_config(slapd, proxied, tmp_path, "  timeout: 1\n")
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    proxied.after("modifyResponse", 100, proxied.hang)
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 1, result.stderr
    port = proxied.port
    lines = result.stderr.splitlines()
    assert lines[-2] == (
        "stopped: connection lost and not regained: cannot connect to "
        f"ldaps://127.0.0.1:{port}: no answer from 127.0.0.1:{port} within 1 s"
    )
    assert [e["error"] for e in log_events(result.stderr, "ldap_connection_lost")] == [
        "no answer within 1 s"
    ]
    confirmed, unconfirmed = journal_results("applied"), journal_results("unknown")
    assert len(confirmed) == 100 and 1 <= len(unconfirmed) <= 20
    on_server = {uid for uid, value in server_values(slapd).items() if value == "engineer"}
    assert confirmed <= on_server <= confirmed | unconfirmed
    proxied.recover()
    again = run_cli("apply", "plan.json")
    assert again.exit_code == 0, again.stderr
    assert written(slapd) == PEOPLE


@pytest.fixture
def direct(
    slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, Path], None]:
    """Point the config at a URL and CA file of the test's choosing."""
    monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", slapd.service_password)
    monkeypatch.chdir(tmp_path)

    def configure(url: str, ca_file: Path) -> None:
        write_config(
            tmp_path,
            (
                f"  type: ldap\n  preset: openldap\n  urls: ['{url}']\n  ca_file: {ca_file}\n"
                f"  bind: {{user: '{slapd.service_dn}'}}\n  base_dns: ['{slapd.people_dn}']\n"
                "  timeout: 5\n"
            ),
            "personaName",
        )

    return configure


def test_certificate_from_another_ca(
    slapd: SlapdServer, direct: Callable[[str, Path], None], run_cli: Run, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    direct(slapd.ldaps_url, other)
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: cannot connect to {slapd.ldaps_url}: TLS certificate verification failed: the "
        f"server's certificate is not signed by the CA in directory.ca_file ({other}); set "
        "directory.ca_file to the CA that signed it\n",
    )


def test_certificate_for_another_name(
    slapd: SlapdServer, direct: Callable[[str, Path], None], run_cli: Run, tmp_path: Path
) -> None:
    # The certificate names 127.0.0.1, localhost and dc1.example.test, not 127.0.0.2.
    with ldap_proxy(slapd.port, tmp_path / "proxy-tls", host="127.0.0.2") as proxy:
        url = f"ldaps://127.0.0.2:{proxy.port}"
        direct(url, slapd.ca_file)
        result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: cannot connect to {url}: the server's TLS certificate is not issued for "
        "127.0.0.2: connect with a host name the certificate names\n",
    )


def test_unknown_host_name(
    slapd: SlapdServer, direct: Callable[[str, Path], None], run_cli: Run
) -> None:
    direct("ldaps://no-such-host.invalid", slapd.ca_file)
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: cannot connect to ldaps://no-such-host.invalid: host name no-such-host.invalid "
        "not found (DNS lookup failed)\n",
    )


def test_connection_refused(
    slapd: SlapdServer, direct: Callable[[str, Path], None], run_cli: Run
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    direct(f"ldaps://127.0.0.1:{port}", slapd.ca_file)
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: cannot connect to ldaps://127.0.0.1:{port}: connection refused (nothing "
        f"listens on 127.0.0.1:{port})\n",
    )
