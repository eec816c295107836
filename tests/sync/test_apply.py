"""The batch writer on its own (persona_sync.apply): every batch journalled as pending
before it is sent and its results after, and the journal ended however the run ends.

The directory here is a recording stand-in: what is under test is the writer's own
bookkeeping, which the backend suites (slapd, Samba, the Graph fake) exercise end to end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from persona_sync.apply import (
    NOT_SENT_INTERRUPTED,
    NOT_SENT_STOPPED,
    rollback_changes,
    run_changes,
)
from persona_sync.directory.base import (
    Cancel,
    Change,
    ChangeResult,
    Directory,
    DirectoryAborted,
    ReadBack,
)
from persona_sync.employee import Employee
from persona_sync.errors import DirectoryError
from persona_sync.journal import Journal, read_run

CHANGES = [
    Change(f"e{i}", f"uid=e{i},dc=x", "personaName", None, f"p{i}", f"p{i}") for i in range(7)
]


class Recording(Directory):
    """Applies every change it is given, in batches of three, unless ``on_batch`` says
    otherwise; keeps the journal's lines as they were when each batch was sent."""

    identity = "test:recording"
    batch_size = 3

    def __init__(
        self, journal_path: Callable[[], Path], on_batch: Callable[[int], None] | None = None
    ) -> None:
        self.journal_path = journal_path
        self.on_batch = on_batch
        self.sent: list[list[str]] = []
        self.journal_at_send: list[list[str]] = []

    def read(self, attributes: Sequence[str]) -> Iterator[Employee]:
        return iter(())

    def apply(self, changes: Sequence[Change], cancel: Cancel | None = None) -> list[ChangeResult]:
        self.journal_at_send.append(
            [json.loads(line)["type"] for line in self.journal_path().read_text().splitlines()]
        )
        self.sent.append([c.employee for c in changes])
        if self.on_batch is not None:
            self.on_batch(len(self.sent))
        return [ChangeResult(c, "applied") for c in changes]

    def read_back(self, changes: Sequence[Change]) -> list[ReadBack]:
        return []


def start(tmp_path: Path) -> Journal:
    return Journal.create(tmp_path, "apply", "test:recording")


def test_each_batch_is_pending_in_the_journal_before_it_is_sent(tmp_path: Path) -> None:
    journal = start(tmp_path)
    directory = Recording(lambda: journal.path)
    seen: list[tuple[int, int]] = []
    report = run_changes(directory, CHANGES, journal, progress=lambda d, t: seen.append((d, t)))
    assert directory.sent == [["e0", "e1", "e2"], ["e3", "e4", "e5"], ["e6"]]
    assert directory.journal_at_send == [
        ["run", *["pending"] * 3],
        ["run", *["pending"] * 3, *["write"] * 3, *["pending"] * 3],
        ["run", *(["pending"] * 3 + ["write"] * 3) * 2, "pending"],
    ]
    assert seen == [(3, 7), (6, 7), (7, 7)]
    assert (report.status, report.reason, report.ok) == ("complete", "", True)
    run = read_run(tmp_path, journal.run_id)
    assert (run.status, run.count("applied"), run.end and run.end["applied"]) == (
        "complete",
        7,
        7,
    )


def test_an_aborted_batch_keeps_its_decided_results_and_sends_nothing_more(
    tmp_path: Path,
) -> None:
    journal = start(tmp_path)

    def refuse(batch: int) -> None:
        if batch == 2:
            decided = [ChangeResult(CHANGES[3], "applied")]
            raise DirectoryAborted("insufficient access rights on uid=e4,dc=x", decided)

    report = run_changes(Recording(lambda: journal.path, refuse), CHANGES, journal)
    assert [(r.change.employee, r.status, r.message) for r in report.results[2:]] == [
        ("e2", "applied", ""),
        ("e3", "applied", ""),
        ("e4", "skipped", NOT_SENT_STOPPED),
        ("e5", "skipped", NOT_SENT_STOPPED),
        ("e6", "skipped", NOT_SENT_STOPPED),
    ]
    assert (report.status, report.reason) == (
        "aborted",
        "insufficient access rights on uid=e4,dc=x",
    )
    run = read_run(tmp_path, journal.run_id)
    assert run.status == "aborted"
    assert run.end is not None and run.end["reason"] == "insufficient access rights on uid=e4,dc=x"
    # e6 was never pending: only what was sent or decided is in the journal
    assert [p["employee"] for p in run.pending] == ["e0", "e1", "e2", "e3", "e4", "e5"]


def test_a_directory_error_fails_its_batch_and_stops(tmp_path: Path) -> None:
    journal = start(tmp_path)

    def lose(batch: int) -> None:
        if batch == 1:
            raise DirectoryError("cannot connect to ldaps://dc1: timed out")

    report = run_changes(Recording(lambda: journal.path, lose), CHANGES, journal)
    assert [r.status for r in report.results] == ["failed"] * 3 + ["skipped"] * 4
    assert report.results[0].message == "cannot connect to ldaps://dc1: timed out"
    assert (report.status, report.ok) == ("aborted", False)


def test_a_cancel_between_batches_skips_the_rest_as_interrupted(tmp_path: Path) -> None:
    journal = start(tmp_path)
    cancel = Cancel()
    report = run_changes(
        Recording(lambda: journal.path, lambda batch: cancel.request("SIGTERM")),
        CHANGES,
        journal,
        cancel=cancel,
    )
    assert [r.status for r in report.results] == ["applied"] * 3 + ["skipped"] * 4
    assert {r.message for r in report.results[3:]} == {NOT_SENT_INTERRUPTED}
    assert (report.status, report.reason) == ("interrupted", "SIGTERM")
    assert read_run(tmp_path, journal.run_id).status == "interrupted"


def test_an_unexpected_error_ends_the_journal_and_propagates(tmp_path: Path) -> None:
    journal = start(tmp_path)

    def crash(batch: int) -> None:
        if batch == 2:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="^boom$"):
        run_changes(Recording(lambda: journal.path, crash), CHANGES, journal)
    run = read_run(tmp_path, journal.run_id)
    assert run.status == "error"
    assert run.end is not None and run.end["reason"] == "RuntimeError: boom"
    assert run.count("applied") == 3
    assert [p["employee"] for p in run.unresolved()] == ["e3", "e4", "e5"]


def test_rollback_undoes_applied_and_unsettled_writes_newest_first(tmp_path: Path) -> None:
    journal = start(tmp_path)
    journal.pending(CHANGES[:4])
    journal.results(
        [
            ChangeResult(CHANGES[0], "applied"),
            ChangeResult(CHANGES[1], "unchanged"),
            ChangeResult(CHANGES[2], "unknown", "no answer"),
        ]
    )
    journal.close()
    undo = rollback_changes(read_run(tmp_path, journal.run_id))
    # e1's value was already there (someone else's): left alone; e3 was pending only
    assert [(c.employee, c.old, c.new) for c in undo] == [
        ("e3", "p3", None),
        ("e2", "p2", None),
        ("e0", "p0", None),
    ]
