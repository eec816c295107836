"""Losing the connection in the middle of writing: reconnect where safe, else stop resumably;
the journal matches what the server really holds.

Faults hit at exact points of the LDAP conversation (the proxy counts messages), never
after a delay: the client has received exactly N answers when its connection goes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.ldap.conftest import (
    PEOPLE,
    WINDOW,
    journal_results,
    journal_rows,
    log_events,
    server_values,
    written,
)
from tests.ldap.proxy import LdapProxy, ProxiedConnection
from tests.servers.slapd import SlapdServer

Run = Callable[..., Result]
CLOSED = "the connection was closed by the server or the network"


def test_reconnects_and_finishes(slapd: SlapdServer, proxied: LdapProxy, run_cli: Run) -> None:
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    proxied.after("modifyResponse", 100, proxied.cut)
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 0, result.stderr
    assert proxied.cuts == 1
    lost = log_events(result.stderr, "ldap_connection_lost")
    assert [(e["error"], e["attempt"]) for e in lost] == [(CLOSED, 1)]
    assert written(slapd) == PEOPLE
    # Every write is this run's, once: the ones whose answer was lost are read back as
    # written by us ("applied"), not as found already there.
    rows = journal_rows()
    assert len(rows) == PEOPLE
    assert {row["result"] for row in rows} == {"applied"}
    # Sent again only what had not landed: at most the window in flight was resent.
    assert PEOPLE <= proxied.counts["modifyRequest"] <= PEOPLE + WINDOW


def test_stops_resumably_when_the_server_stays_away(
    slapd: SlapdServer, proxied: LdapProxy, run_cli: Run
) -> None:
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2

    def server_goes_away(connection: ProxiedConnection) -> None:
        proxied.stop_listening()
        proxied.cut(connection)

    proxied.after("modifyResponse", 100, server_goes_away)
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 1, result.stderr
    run_id = str(journal_rows("run")[0]["run_id"])
    confirmed, unconfirmed = journal_results("applied"), journal_results("unknown")
    not_sent = journal_results("skipped")
    # The 100 answered, and those in flight that the (still open) reading connection found
    # written; at most the window was in flight.
    assert 100 <= len(confirmed) <= 100 + WINDOW
    assert len(confirmed) + len(unconfirmed) + len(not_sent) == PEOPLE
    # The journal never claims a write the server lacks, and names every write it may hold.
    on_server = {uid for uid, value in server_values(slapd).items() if value == "engineer"}
    assert confirmed <= on_server <= confirmed | unconfirmed
    lines = result.stderr.splitlines()
    port = proxied.port
    assert lines[-2] == (
        "stopped: connection lost and not regained: cannot connect to "
        f"ldaps://127.0.0.1:{port}: connection refused (nothing listens on 127.0.0.1:{port})"
    )
    unknown = (
        f", {len(unconfirmed)} unconfirmed (the next run reads them back)" if unconfirmed else ""
    )
    assert lines[-1] == (
        f"run {run_id}: {len(confirmed)} applied, 0 already set, 0 conflicts, 0 failed"
        f"{unknown}, {len(not_sent)} not sent; aborted; journal "
        f"{Path('state/journal').resolve() / run_id}.jsonl"
    )
    # Resuming is safe: the same plan finishes the job, and no write is counted twice.
    proxied.listen()
    again = run_cli("apply", "plan.json")
    assert again.exit_code == 0, again.stderr
    assert written(slapd) == PEOPLE
    second = {str(row["run_id"]) for row in journal_rows("run")} - {run_id}
    assert len(second) == 1
    resumed = journal_results("applied", second.pop())
    assert not resumed & confirmed
    assert resumed | confirmed | unconfirmed == set(server_values(slapd))
