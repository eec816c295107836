"""The journal on its own: what a run's file holds, how it is read back, and how a crash
in the middle of a line or between a write and its result is read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from persona_sync.directory.base import Change, ChangeResult
from persona_sync.errors import PersonaSyncError
from persona_sync.journal import Journal, list_runs, read_run, unfinished_runs

ALICE = Change("alice", "uid=alice,ou=People,dc=x", "personaName", "old", "nurse", "nurse")
BOB = Change("bob", "uid=bob,ou=People,dc=x", "personaName", None, "doctor", "doctor")
CAROL = Change("carol", "uid=carol,ou=People,dc=x", "personaName", "x", None)


def lines(journal: Journal) -> list[dict[str, object]]:
    return [json.loads(line) for line in journal.path.read_text().splitlines()]


def test_a_run_is_a_header_pending_writes_results_and_an_end(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, "apply", "ldap://dc1", plan_checksum="abc")
    journal.pending([ALICE, BOB])
    journal.results([ChangeResult(ALICE, "applied"), ChangeResult(BOB, "conflict", "", "other")])
    journal.end("complete", {"applied": 1, "conflicts": 1})
    records = lines(journal)
    assert [r["type"] for r in records] == ["run", "pending", "pending", "write", "write", "end"]
    header = records[0]
    assert (header["command"], header["directory"], header["plan_checksum"]) == (
        "apply",
        "ldap://dc1",
        "abc",
    )
    assert records[4] == {
        "type": "write",
        "run_id": journal.run_id,
        "time": records[4]["time"],
        "employee": "bob",
        "dn": "uid=bob,ou=People,dc=x",
        "attribute": "personaName",
        "old": None,
        "new": "doctor",
        "persona": "doctor",
        "rule": None,
        "scenario": None,
        "result": "conflict",
        "message": "",
        "found": "other",
    }
    run = read_run(tmp_path, journal.run_id)
    assert (run.status, run.count("applied"), run.count("conflict")) == ("complete", 1, 1)
    assert run.unresolved() == []
    assert unfinished_runs(tmp_path) == []


def test_sent_without_a_result_is_unresolved_until_a_later_run_settles_it(
    tmp_path: Path,
) -> None:
    journal = Journal.create(tmp_path, "sync", "file")
    journal.pending([ALICE, BOB, CAROL])
    journal.results([ChangeResult(ALICE, "applied"), ChangeResult(BOB, "unknown", "no answer")])
    journal.close()  # killed: no end record
    run = read_run(tmp_path, journal.run_id)
    assert run.status == "incomplete"
    assert [item["employee"] for item in run.unresolved()] == ["bob", "carol"]
    assert [r.run_id for r in unfinished_runs(tmp_path)] == [journal.run_id]

    later = Journal.reopen(tmp_path, journal.run_id)
    later.results(
        [ChangeResult(BOB, "applied"), ChangeResult(CAROL, "unchanged")], settled_by="run-2"
    )
    later.end("interrupted", {})
    run = read_run(tmp_path, journal.run_id)
    assert run.unresolved() == []
    # the settled result replaces the unknown one, in the order the changes came first
    assert [(w["employee"], w["result"], w.get("settled_by")) for w in run.writes] == [
        ("alice", "applied", None),
        ("bob", "applied", "run-2"),
        ("carol", "unchanged", "run-2"),
    ]
    assert run.status == "interrupted"
    assert unfinished_runs(tmp_path) == []


def test_a_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, "sync", "file")
    journal.pending([ALICE])
    journal.close()
    with open(journal.path, "a", encoding="utf-8") as handle:
        handle.write('{"type": "write", "run_id": "')  # the process died mid-write
    run = read_run(tmp_path, journal.run_id)
    assert (run.status, run.writes, len(run.pending)) == ("incomplete", [], 1)

    later = Journal.reopen(tmp_path, journal.run_id)
    later.results([ChangeResult(ALICE, "applied")], settled_by="run-2")
    later.end("interrupted", {})
    assert [r["type"] for r in lines(later)] == ["run", "pending", "write", "end"]


def test_a_damaged_line_before_the_last_is_an_error_that_says_where(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, "sync", "file")
    journal.pending([ALICE])
    journal.end("complete", {})
    text = journal.path.read_text().splitlines()
    journal.path.write_text("\n".join([text[0], "{not json", *text[1:]]) + "\n")
    with pytest.raises(PersonaSyncError) as caught:
        read_run(tmp_path, journal.run_id)
    assert str(caught.value) == f"{journal.path}:2: damaged journal line"


def test_a_journal_without_its_header_or_empty_is_an_error(tmp_path: Path) -> None:
    journal = Journal.create(tmp_path, "sync", "file")
    journal.pending([ALICE])
    journal.close()
    text = journal.path.read_text().splitlines()
    journal.path.write_text(text[1] + "\n")
    with pytest.raises(PersonaSyncError) as caught:
        read_run(tmp_path, journal.run_id)
    assert str(caught.value) == f"{journal.path}:1: journal does not start with a run record"
    journal.path.write_text("")
    with pytest.raises(PersonaSyncError) as caught:
        read_run(tmp_path, journal.run_id)
    assert str(caught.value) == f"{journal.path}: empty journal"


def test_an_unknown_run_id_names_the_latest_runs(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    with pytest.raises(PersonaSyncError) as caught:
        read_run(tmp_path, "20260101T000000Z-abcdef")
    assert str(caught.value) == (
        f"unknown run id '20260101T000000Z-abcdef' in {folder} (no runs recorded yet)"
    )
    first = Journal.create(tmp_path, "sync", "file")
    first.end("complete", {})
    with pytest.raises(PersonaSyncError) as caught:
        read_run(tmp_path, "../lock")
    assert str(caught.value) == f"unknown run id '../lock' in {folder} (latest: {first.run_id})"
    assert [r.run_id for r in list_runs(tmp_path)] == [first.run_id]


def test_a_journal_that_cannot_be_created_says_which(tmp_path: Path) -> None:
    (tmp_path / "journal").write_text("a file where the folder belongs")
    with pytest.raises(PersonaSyncError) as caught:
        Journal.create(tmp_path, "sync", "file")
    folder = re.escape(str(tmp_path / "journal"))
    assert re.fullmatch(
        rf"cannot create journal {folder}/\d{{8}}T\d{{6}}Z-[0-9a-f]{{6}}\.jsonl: File exists",
        str(caught.value),
    )
