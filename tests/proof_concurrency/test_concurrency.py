"""Issue 9's proof, concurrency: nothing clobbered, nothing jammed.

- 1,000 employees edited by another client between plan and apply (on a real slapd, and on
  the Graph fake): 1,000 conflicts, 0 overwritten, exit 3, every conflict journalled with
  the value found.
- Two syncs at once on one config: the first runs, the second stops at once with the lock
  message and writes nothing; the first then completes. Deterministic: the first sync is a
  subprocess whose backend ``apply`` waits for the test at a given call (a test-only hook),
  so the second always meets a run that holds the lock mid-write.
- A lock file left by a dead run on another host does not block a sync on slapd
  (tests/sync/test_lock.py covers the file directory).
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from tests.conftest import DEFAULT_RULES
from tests.entra.conftest import ON_PREMISES, Tenant
from tests.fakegraph import FakeEntra
from tests.servers.slapd import SlapdServer
from tests.sync.conftest import CONFIG as FILE_CONFIG
from tests.sync.conftest import DIRECTORY as FILE_DIRECTORY

Run = Callable[..., Result]

EDITED = 1000
BIND_PASSWORD_ENV = "PERSONA_SYNC_BIND_PASSWORD"
#: Bound on waiting for a subprocess, so a broken hook fails the test instead of hanging it.
PROCESS_TIMEOUT = 120

# A `persona-sync` whose directory backends pause inside `apply`: on call number PAUSE_AT it
# writes "paused" to the inherited file descriptor SIGNAL_FD, then waits for a line on stdin
# before doing the real work. BATCH_SIZE (0: the backend's own) makes LDAP batches small, so
# the pause can fall between two batches: after some writes, before the others.
HOOKED_CLI = textwrap.dedent(
    """
    import os
    import sys

    from persona_sync.cli.main import main
    from persona_sync.directory.files import FileDirectory
    from persona_sync.directory.ldap import LdapDirectory

    signal_fd, pause_at, batch_size = (int(arg) for arg in sys.argv[1:4])
    del sys.argv[1:4]
    calls = 0


    def hooked(real):
        def apply(self, changes, cancel=None):
            global calls
            calls += 1
            if calls == pause_at:
                os.write(signal_fd, b"paused\\n")
                sys.stdin.readline()
            return real(self, changes, cancel)

        return apply


    for backend in (FileDirectory, LdapDirectory):
        backend.apply = hooked(backend.apply)
    if batch_size:
        LdapDirectory.batch_size = batch_size
    sys.argv[0] = "persona-sync"
    main()
    """
)


# --- helpers ---------------------------------------------------------------------------


def people_ldif(server: SlapdServer, count: int, *, half_with_persona: bool) -> str:
    """Engineers (the rules give them `engineer`); every odd one already holds another
    persona when ``half_with_persona``, so both compare-and-swap forms are exercised (delete
    old + add new, and add to an empty attribute)."""
    return "".join(
        f"dn: uid=e{i:04d},{server.people_dn}\nobjectClass: inetOrgPerson\n"
        f"objectClass: personaHolder\nuid: e{i:04d}\ncn: Employee {i}\nsn: E\n"
        "title: Software Engineer\nphysicalDeliveryOfficeName: Munich HQ\n"
        + ("personaName: clinician\n" if half_with_persona and i % 2 else "")
        + "\n"
        for i in range(count)
    )


def write_slapd_config(server: SlapdServer, folder: Path) -> None:
    (folder / "persona-sync.yaml").write_text(
        f"rules: {DEFAULT_RULES}\n"
        "directory:\n  type: ldap\n  preset: openldap\n"
        f"  urls: [{server.ldaps_url}]\n  ca_file: {server.ca_file}\n"
        f"  bind: {{user: '{server.service_dn}'}}\n"
        f"  base_dns: ['{server.people_dn}']\n"
        "  auxiliary_class: personaHolder\n"
        "targets:\n  persona: personaName\n"
        "safety:\n  max_changes: 5000\n  max_change_percent: 100\n"
        "state_dir: state\n",
        encoding="utf-8",
    )


def persona_values(server: SlapdServer) -> dict[str, str | None]:
    """uid -> personaName as an independent client (ldapsearch) sees it."""
    values: dict[str, str | None] = {}
    for block in server.dump(server.people_dn).split("\n\n"):
        lines = block.splitlines()
        uid = next((line[5:] for line in lines if line.startswith("uid: ")), None)
        if uid is not None:
            values[uid] = next(
                (line[13:] for line in lines if line.startswith("personaName: ")), None
            )
    return values


def journals(state: Path) -> dict[str, list[dict[str, Any]]]:
    """run id -> its journal records."""
    return {
        path.stem: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for path in sorted((state / "journal").glob("*.jsonl"))
    }


def shown(value: str | None) -> str:
    return "(empty)" if value is None else repr(value)


def assert_all_conflicts(
    result: Result,
    changes: list[dict[str, Any]],
    theirs: dict[str, str],
    state: Path,
) -> None:
    """Exit 3; one line per conflict (the first 100, then a count), the summary; and a
    journal that records every conflict with the value found and nothing else."""
    [(run_id, records)] = journals(state).items()
    journal = state / "journal" / f"{run_id}.jsonl"
    expected = [
        f"conflict: {c['employee']} ({c['dn']}) {c['attribute']}: value changed since the "
        f"plan: expected {shown(c['old'])}, found {theirs[c['employee']]!r}"
        for c in changes[:100]
    ] + [
        f"conflict: and {EDITED - 100} more, listed in {journal}",
        f"run {run_id}: 0 applied, 0 already set, {EDITED} conflicts, 0 failed; journal {journal}",
    ]
    assert (result.exit_code, result.stderr.splitlines()) == (3, expected)
    writes = [r for r in records if r["type"] == "write"]
    assert len(writes) == EDITED
    assert {r["result"] for r in writes} == {"conflict"}
    assert {r["employee"]: r["found"] for r in writes} == theirs
    assert [(r["employee"], r["old"], r["new"]) for r in writes] == [
        (c["employee"], c["old"], c["new"]) for c in changes
    ]
    end = records[-1]
    assert (end["type"], end["status"], end.get("conflict"), end.get("applied")) == (
        "end",
        "complete",
        EDITED,
        None,
    )


# --- 1,000 edits between plan and apply ---------------------------------------------------


def test_slapd_a_thousand_edits_between_plan_and_apply_are_all_conflicts(
    slapd_factory: Callable[[], SlapdServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Run,
) -> None:
    server = slapd_factory()
    server.add_ldif(people_ldif(server, EDITED, half_with_persona=True))  # slapadd
    server.start()
    write_slapd_config(server, tmp_path)
    monkeypatch.setenv(BIND_PASSWORD_ENV, server.service_password)
    monkeypatch.chdir(tmp_path)

    planned = run_cli("plan", "-o", "plan.json", "-q")
    assert planned.exit_code == 2, planned.stderr
    changes = json.loads(Path("plan.json").read_text())["changes"]
    assert len(changes) == EDITED
    assert {(c["old"], c["new"]) for c in changes} == {
        (None, "engineer"),
        ("clinician", "engineer"),
    }

    # Another client (ldapmodify as the admin) edits every planned employee.
    theirs = {f"e{i:04d}": f"desk-override-{i:04d}" for i in range(EDITED)}
    server.modify_ldif(
        "".join(
            f"dn: uid={uid},{server.people_dn}\nchangetype: modify\n"
            f"replace: personaName\npersonaName: {value}\n\n"
            for uid, value in theirs.items()
        )
    )
    edited = server.dump()

    result = run_cli("apply", "plan.json")

    assert_all_conflicts(result, changes, theirs, tmp_path / "state")
    assert persona_values(server) == theirs  # 0 overwritten: every value is the other client's
    assert server.dump() == edited  # nothing else written either (no objectClass, nothing)


def test_graph_a_thousand_edits_between_plan_and_apply_are_all_conflicts(
    fake_entra: FakeEntra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    fake = fake_entra
    users: dict[str, str] = {}
    for i in range(EDITED):
        upn = f"e{i:04d}@contoso.example"
        users[upn] = fake.add_user(
            userPrincipalName=upn, jobTitle="Software Engineer", officeLocation="Munich HQ"
        )
        if i % 2:
            fake.set_property(users[upn], ON_PREMISES, "clinician")
    tenant = Tenant(fake, tmp_path, users)
    tenant.write_config()
    tenant.config.write_text(
        tenant.config.read_text().replace("safety:\n", "safety:\n  max_changes: 5000\n")
    )
    assert fake.app is not None
    monkeypatch.setenv("PERSONA_SYNC_CLIENT_SECRET", fake.app.secret)
    monkeypatch.chdir(tmp_path)

    planned = run_cli("plan", "-o", "plan.json", "-q")
    assert planned.exit_code == 2, planned.stderr
    changes = json.loads(Path("plan.json").read_text())["changes"]
    assert len(changes) == EDITED
    assert {(c["old"], c["new"]) for c in changes} == {
        (None, "engineer"),
        ("clinician", "engineer"),
    }

    # Another admin edits every planned user (the fake's own API: not a client write).
    theirs = {upn: f"desk-override-{upn[1:5]}" for upn in users}
    for upn, value in theirs.items():
        fake.set_property(users[upn], ON_PREMISES, value)

    result = run_cli("apply", "plan.json")

    assert_all_conflicts(result, changes, theirs, tmp_path / "state")
    assert fake.writes == []  # 0 overwritten: no PATCH changed anything
    assert {upn: tenant.value(upn) for upn in users} == theirs


# --- two syncs at once ---------------------------------------------------------------------


@contextmanager
def paused_sync(root: Path, pause_at: int, batch_size: int = 0) -> Iterator[subprocess.Popen[str]]:
    """A `persona-sync sync` subprocess, yielded once it waits inside backend apply call
    number ``pause_at``; write a line to its stdin to let it go on. Killed if left running."""
    signal_read, signal_write = os.pipe()
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOOKED_CLI,
            str(signal_write),
            str(pause_at),
            str(batch_size),
            "sync",
        ],
        cwd=root,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=(signal_write,),
    )
    os.close(signal_write)
    try:
        ready, _, _ = select.select([signal_read], [], [], PROCESS_TIMEOUT)
        said = os.read(signal_read, 64) if ready else b""
        if said != b"paused\n":  # it exited (or hung) before reaching the pause
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"sync #1 never paused (exit {process.returncode}):\n{out}{err}")
        yield process
    finally:
        os.close(signal_read)
        if process.poll() is None:
            process.kill()
            process.communicate()


def second_sync_is_refused(root: Path, first: subprocess.Popen[str]) -> None:
    """Sync #2 stops at once with the holder's name and leaves no trace."""
    state = root / "state"
    lock = state / "lock"
    holder = lock.read_text()
    since = json.loads(holder)["since"]
    runs = sorted((state / "journal").glob("*.jsonl"))
    second = subprocess.run(
        [sys.executable, "-m", "persona_sync", "sync"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT,
        check=False,
    )
    assert (second.returncode, second.stdout, second.stderr) == (
        1,
        "",
        f"error: another run holds {lock}: sync since {since} (pid {first.pid} on "
        f"{socket.gethostname()}); it ends on its own (a dead run's lock is released by the "
        "system): try again later\n",
    )
    assert sorted((state / "journal").glob("*.jsonl")) == runs  # no run of its own
    assert lock.read_text() == holder  # still names sync #1


def first_sync_completes(root: Path, first: subprocess.Popen[str], run_cli: Run) -> None:
    out, err = first.communicate("go\n", timeout=PROCESS_TIMEOUT)
    assert first.returncode == 0, err
    [(run_id, records)] = journals(root / "state").items()
    assert (records[-1]["type"], records[-1]["status"]) == ("end", "complete")
    assert err.splitlines()[-1].startswith(f"run {run_id}: ")
    again = run_cli("plan", "-q")  # nothing left to do: sync #1 wrote its whole plan
    assert again.exit_code == 0, again.stderr


def test_two_syncs_at_once_on_a_file_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli: Run
) -> None:
    directory = tmp_path / "company.ldif"
    directory.write_text(FILE_DIRECTORY, encoding="utf-8")
    (tmp_path / "persona-sync.yaml").write_text(
        FILE_CONFIG.format(rules=DEFAULT_RULES), encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    before = directory.read_bytes()
    with paused_sync(tmp_path, pause_at=1) as first:  # holds the lock, about to write
        second_sync_is_refused(tmp_path, first)
        assert directory.read_bytes() == before
        first_sync_completes(tmp_path, first, run_cli)
    assert directory.read_bytes() != before


@pytest.fixture
def small_slapd(slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SlapdServer:
    slapd.add_ldif(people_ldif(slapd, 10, half_with_persona=False))
    write_slapd_config(slapd, tmp_path)
    monkeypatch.setenv(BIND_PASSWORD_ENV, slapd.service_password)
    monkeypatch.chdir(tmp_path)
    return slapd


def test_two_syncs_at_once_on_slapd(small_slapd: SlapdServer, tmp_path: Path, run_cli: Run) -> None:
    # Batches of 4: sync #1 pauses before its second batch, 4 of 10 values written.
    with paused_sync(tmp_path, pause_at=2, batch_size=4) as first:
        during = small_slapd.dump()
        assert sorted(v for v in persona_values(small_slapd).values() if v) == ["engineer"] * 4
        second_sync_is_refused(tmp_path, first)
        assert small_slapd.dump() == during
        first_sync_completes(tmp_path, first, run_cli)
    assert set(persona_values(small_slapd).values()) == {"engineer"}


def test_a_lock_left_by_a_dead_pod_on_another_host_does_not_block_slapd(
    small_slapd: SlapdServer, tmp_path: Path, run_cli: Run
) -> None:
    lock = tmp_path / "state" / "lock"
    lock.parent.mkdir()
    lock.write_text(
        json.dumps(
            {
                "pid": 1,
                "host": "persona-sync-28675309-xk2pq",
                "command": "sync",
                "since": "2026-01-01T00:00:00+00:00",
            }
        )
    )
    result = run_cli("sync")
    assert result.exit_code == 0, result.stderr
    assert set(persona_values(small_slapd).values()) == {"engineer"}
    holder = json.loads(lock.read_text())
    assert (holder["pid"], holder["host"], holder["command"]) == (
        os.getpid(),
        socket.gethostname(),
        "sync",
    )
