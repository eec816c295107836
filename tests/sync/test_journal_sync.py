"""What the journal makes durable, and when: a batch's pending records, with every result
before them, are on disk before the batch is sent; results need no fsync of their own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from persona_sync import journal as journal_module
from persona_sync.directory.base import Change, ChangeResult
from persona_sync.journal import Journal, read_run


def change(n: int) -> Change:
    return Change(f"u{n}", f"cn=u{n},dc=example", "personaName", None, "vip", "vip", "r", "p")


@pytest.fixture
def synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The journal's record types on disk at each fsync of a journal file."""
    seen: list[list[str]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if path.suffix == ".jsonl":
            seen.append(
                [line.split('"type": "')[1].split('"')[0] for line in path.read_text().splitlines()]
            )
        real(fd)

    monkeypatch.setattr(journal_module.os, "fsync", fsync)
    return seen


def test_results_are_made_durable_with_the_next_pending_batch_and_the_end(
    tmp_path: Path, synced: list[list[str]]
) -> None:
    journal = Journal.create(tmp_path, "apply", "ldap:dc=example")
    first, second = [change(1), change(2)], [change(3)]
    journal.pending(first)
    journal.results([ChangeResult(c, "applied") for c in first])
    journal.pending(second)
    journal.results([ChangeResult(c, "conflict", "changed", "other") for c in second])
    journal.end("complete", {"applied": 2, "conflict": 1})
    assert synced == [
        ["run"],
        ["run", "pending", "pending"],
        ["run", "pending", "pending", "write", "write", "pending"],
        ["run", "pending", "pending", "write", "write", "pending", "write", "end"],
    ]
    record = read_run(tmp_path, journal.run_id)
    assert [(w["employee"], w["result"]) for w in record.writes] == [
        ("u1", "applied"),
        ("u2", "applied"),
        ("u3", "conflict"),
    ]


def test_a_journal_closed_without_an_end_still_syncs_its_results(
    tmp_path: Path, synced: list[list[str]]
) -> None:
    journal = Journal.create(tmp_path, "apply", "ldap:dc=example")
    journal.pending([change(1)])
    journal.results([ChangeResult(change(1), "applied")])
    journal.close()
    assert synced[-1] == ["run", "pending", "write"]
    assert read_run(tmp_path, journal.run_id).status == "incomplete"
