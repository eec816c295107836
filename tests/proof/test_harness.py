"""The proof's own parts, checked on small inputs: each invariant must be able to fail.

Fast (no campaign), so these run in the default suite; the campaigns are marked `proof`.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakegraph import FakeEntra
from tests.proof.crash import KillPoint, RunLog, kill_points
from tests.proof.invariants import (
    journal_findings,
    recovery_findings,
    restored_findings,
    value_findings,
)
from tests.proof.journals import ServerWrite, change_key, read_journals
from tests.proof.targets import SlapdTarget, audit_writes
from tests.servers.plugin import require_slapd
from tests.servers.slapd import SlapdServer

DN = "uid=a,ou=People,dc=example,dc=com"
KEY = change_key(DN, "personaName")
SMITH = "cn=Smith\\, Jr. 96,ou=people,dc=example,dc=com"  # as a manager value spells it

HEADER = (
    "# modify 1796117992 dc=example,dc=com uid=svc-persona,ou=Service Accounts,dc=example,dc=com"
    " IP=127.0.0.1:43682 conn=1003"
)
AUDIT = f"""\
{HEADER}
dn: cn=Smith\\2C Jr. 96,ou=People,dc=example,dc=com
changetype: modify
delete: personaName
personaName: engineer
-
add: personaName
personaName:: dmlw
-
replace: modifiersName
modifiersName: uid=svc-persona,ou=Service Accounts,dc=ex
 ample,dc=com
-
# end modify 1796117992

{HEADER}
dn: uid=a,ou=People,dc=example,dc=com
changetype: modify
add: objectClass
objectClass: personaHolder
-
add: personaName
personaName: knowledge-worker
-
# end modify 1796117993

{HEADER}
dn: uid=a,ou=People,dc=example,dc=com
changetype: modify
delete: personaName
personaName: knowledge-worker
-
"""  # the last record is still being written: not counted


def test_audit_log_records_are_parsed_with_escapes_base64_and_wrapped_lines() -> None:
    writes = audit_writes(AUDIT, "personaName")
    assert [(w.key, w.old, w.new) for w in writes] == [
        (change_key(SMITH, "personaName"), "engineer", "vip"),
        (KEY, None, "knowledge-worker"),
    ]


def _journal(folder: Path, run_id: str, *records: dict[str, Any], end: str | None) -> None:
    lines = [{"type": "run", "run_id": run_id, "time": run_id, "command": "sync"}, *records]
    if end is not None:
        lines.append({"type": "end", "run_id": run_id, "status": end, "settled_by": ""})
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(line) + "\n" for line in lines)
    (folder / f"{run_id}.jsonl").write_text(text, encoding="utf-8")


def _change(kind: str, new: str, result: str | None = None, dn: str = DN) -> dict[str, Any]:
    record = {"type": kind, "dn": dn, "attribute": "personaName", "old": None, "new": new}
    return record | ({"result": result} if result else {})


_unchanged = _change("write", "vip", "unchanged")
_applied = _change("write", "vip", "applied")


def _write(new: str, old: str | None = None) -> ServerWrite:
    return ServerWrite(KEY, old, new, f"modify {DN} -> {new}")


def test_journals_matching_the_server_pass(tmp_path: Path) -> None:
    _journal(
        tmp_path,
        "r1",
        _change("pending", "vip"),
        _change("write", "vip", "unknown"),
        _change("write", "vip", "applied"),  # settled by recovery: supersedes unknown
        end="interrupted",
    )
    _journal(tmp_path, "r2", _change("pending", "vip"), _unchanged, end="complete")
    assert journal_findings(read_journals(tmp_path), [_write("vip")]) == []


def test_a_server_write_journalled_as_unchanged_is_missing(tmp_path: Path) -> None:
    _journal(tmp_path, "r1", _change("pending", "vip"), _unchanged, end="complete")
    [finding] = journal_findings(read_journals(tmp_path), [_write("vip")])
    assert finding.startswith(
        f"missing: {KEY[0]} personaname -> 'vip': the server logged 1 write(s), "
        "the journals 0 applied\n  journal: r1.jsonl: "
    )
    assert '"result": "unchanged"' in finding
    assert finding.endswith(f"  server:  modify {DN} -> vip")


def test_an_applied_outcome_without_a_server_write_is_a_phantom(tmp_path: Path) -> None:
    _journal(tmp_path, "r1", _change("pending", "vip"), _applied, end="complete")
    [finding] = journal_findings(read_journals(tmp_path), [])
    assert finding.startswith(f"phantom: {KEY[0]} personaname -> 'vip': the server logged 0")
    assert finding.endswith("  server:  (no server write)")


def test_unsettled_doubled_and_unended_journals_are_found(tmp_path: Path) -> None:
    _journal(
        tmp_path,
        "r1",
        _change("pending", "vip"),
        _change("pending", "clinician", dn="uid=b,ou=People,dc=example,dc=com"),
        _change("write", "vip", "applied"),
        _change("write", "vip", "applied"),
        end=None,
    )
    with (tmp_path / "r1.jsonl").open("a") as torn:
        torn.write('{"type": "wri')  # a crash mid-line
    with pytest.raises(AssertionError, match=r"r1.jsonl:6: not JSON"):
        read_journals(tmp_path)
    _journal(
        tmp_path,
        "r1",
        _change("pending", "vip"),
        _change("pending", "clinician", dn="uid=b,ou=People,dc=example,dc=com"),
        _change("write", "vip", "applied"),
        _change("write", "vip", "applied"),
        end=None,
    )
    findings = journal_findings(read_journals(tmp_path), [_write("vip")])
    assert findings == [
        'run r1: 0 end records, last record {"type": "write", "dn": "uid=a,ou=People,dc=example,'
        'dc=com", "attribute": "personaName", "old": null, "new": "vip", "result": "applied"}',
        "run r1: uid=b,ou=people,dc=example,dc=com personaname was pending and never settled",
        "run r1: uid=a,ou=people,dc=example,dc=com journalled applied 2 times",
    ]


def test_values_nobody_planned_and_double_writes_are_found() -> None:
    other = change_key("uid=b,ou=People,dc=example,dc=com", "personaName")
    original = {KEY: "engineer", other: None}
    planned = {KEY: "vip"}
    writes = [_write("clinician", "engineer"), _write("vip", "clinician")]
    assert value_findings(original, planned, {KEY: "vip", other: "x"}, writes) == [
        f"{KEY[0]}: written 'clinician', planned 'vip': modify {DN} -> clinician",
        f"{KEY[0]}: written 2 times: modify {DN} -> clinician",
        f"{KEY[0]}: written 2 times: modify {DN} -> vip",
        f"{other[0]}: holds 'x', expected None (originally None, planned '(no change)')",
    ]
    assert value_findings(original, planned, {KEY: "vip", other: None}, writes[1:]) == []
    assert restored_findings(original, {KEY: "vip", other: None}) == [
        f"{KEY[0]}: holds 'vip' after the rollbacks, originally 'engineer'"
    ]


def test_a_killed_run_nobody_settled_is_found(tmp_path: Path) -> None:
    _journal(tmp_path, "r1", _change("pending", "vip"), end=None)
    _journal(tmp_path, "r2", _change("pending", "vip"), end="interrupted")
    logs = [
        RunLog(1, ("sync",), KillPoint("write", 3), -9, "", ["r1"]),
        RunLog(2, ("sync",), KillPoint("write", 3), -9, "", ["r2"]),
        RunLog(3, ("sync",), None, 0, "recovered: run r2 was interrupted; ...", []),
    ]
    assert recovery_findings(logs, read_journals(tmp_path)) == [
        "run 1 (sync, killed after 3 writes of its own, 0.0 s): journal r1 ends {}",
    ]
    logs[2].stderr = "error: the state folder is locked by another run"
    assert recovery_findings(logs, read_journals(tmp_path)) == [
        "run 1 (sync, killed after 3 writes of its own, 0.0 s): journal r1 ends {}",
        "run 2 (sync, killed after 3 writes of its own, 0.0 s): 0 later runs said they "
        "recovered r2",
        "run 3 (sync, exit 0, 0.0 s) printed: error: the state folder is locked by another run",
    ]


def test_kill_points_are_seeded_and_shaped() -> None:
    points = kill_points(9, journal_batch=1000, read_back=True)
    assert points == kill_points(9, journal_batch=1000, read_back=True)
    assert points != kill_points(10, journal_batch=1000, read_back=True)
    assert len(points) == 20 and points[0].kind == "write"
    kinds = [p.kind for p in points]
    assert kinds.count("after-settle") == 2 and kinds.count("read-back") == 2
    for index, point in enumerate(points):
        if point.kind != "write":
            assert points[index - 1].kind == "write"  # a dead run to settle
    assert sum(1 for p in points if p.kind == "write" and p.count > 1000) == 1


def test_the_fake_forgets_a_client_that_dies_during_the_tls_handshake(
    fake_entra: FakeEntra,
) -> None:
    client = socket.create_connection(("127.0.0.1", fake_entra.port))
    _until(lambda: fake_entra.open_connections == 1)  # accepted, waiting for a ClientHello
    client.close()
    _until(lambda: fake_entra.open_connections == 0)


@pytest.mark.servers
def test_slapd_logs_writes_and_lists_its_connections() -> None:
    require_slapd()
    with SlapdServer(audit_log=True, monitor=True) as server:
        server.add_ldif(f"dn: {DN}\nobjectClass: inetOrgPerson\nuid: a\ncn: A\nsn: A\n")
        target = SlapdTarget(server, [DN], "personaName")
        assert target.write_count() == 0
        assert server.open_connections() == 1  # the ldapsearch asking
        server.modify_ldif(
            f"dn: {DN}\nchangetype: modify\nadd: objectClass\nobjectClass: personaHolder\n-\n"
            "add: personaName\npersonaName: vip\n"
        )
        server.modify_ldif(
            f"dn: {DN}\nchangetype: modify\ndelete: personaName\npersonaName: vip\n-\n"
            "add: personaName\npersonaName: clinician\n"
        )
        assert target.write_count() == 2
        assert [(w.key, w.old, w.new) for w in target.server_writes()] == [
            (KEY, None, "vip"),
            (KEY, "vip", "clinician"),
        ]
        assert target.values() == {KEY: "clinician"}


def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)
