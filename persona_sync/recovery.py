"""Recovery without a person: settle the runs that died before they could end.

A run killed by SIGKILL, the OOM killer or a pod eviction leaves a journal without an end
record, and maybe writes that were sent but never confirmed. The next run, holding the
lock (so no run is alive), reads those writes back from the directory, records what it
found in the dead run's journal (``settled_by``), marks that run ``interrupted`` and
carries on. Nobody has to remove a lock or edit a journal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from persona_sync.directory.base import GONE, Change, ChangeResult, Directory, same_value
from persona_sync.journal import Journal, RunRecord, record_change, unfinished_runs
from persona_sync.logs import get_logger

log = get_logger(__name__)

READ_BACK_CHUNK = 500


@dataclass(frozen=True)
class Settled:
    """What recovery found out about one dead run."""

    run_id: str
    counts: dict[str, int]  # outcome -> changes settled
    directory: str
    settled: bool  # False: the run wrote to another directory than the one configured

    def describe(self) -> str:
        if not self.settled:
            return (
                f"run {self.run_id} was interrupted (it wrote to {self.directory}, not the "
                "directory configured now, so its unconfirmed writes stay unknown)"
            )
        if not self.counts:
            return f"run {self.run_id} was interrupted; it had no unconfirmed writes"
        found = ", ".join(f"{n} {status}" for status, n in sorted(self.counts.items()))
        return f"run {self.run_id} was interrupted; its unconfirmed writes read back: {found}"


def settle_unfinished(directory: Directory, state_dir: Path, by: str) -> list[Settled]:
    """Settle every run without an end record; the caller holds the lock.

    ``by`` names the settling command in the dead run's journal (``settled_by``), e.g.
    ``sync pid 4242 at 2026-12-01T10:00:00+00:00``.
    """
    settled = []
    for record in unfinished_runs(state_dir):
        settled.append(_settle(directory, state_dir, record, by))
        log.info("run_recovered", run_id=record.run_id, **settled[-1].counts)
    return settled


def _settle(directory: Directory, state_dir: Path, record: RunRecord, by: str) -> Settled:
    same_directory = record.header.get("directory") == directory.identity
    results: list[ChangeResult] = []
    if same_directory:
        changes = [record_change(item) for item in record.unresolved()]
        for start in range(0, len(changes), READ_BACK_CHUNK):
            chunk = changes[start : start + READ_BACK_CHUNK]
            results.extend(_outcomes(chunk, directory.read_back(chunk)))
    journal = Journal.reopen(state_dir, record.run_id)
    try:
        journal.results(results, settled_by=by)
        counts = Counter(w["result"] for w in record.writes if w["result"] != "unknown")
        counts.update(r.status for r in results)
        journal.end(
            "interrupted",
            {str(k): v for k, v in counts.items()},
            reason="the process ended before the run did"
            + (
                ""
                if same_directory
                else f"; not settled: the config points at {directory.identity}"
            ),
            settled_by=by,
        )
    finally:
        journal.close()
    return Settled(
        record.run_id,
        dict(Counter(r.status for r in results)),
        str(record.header.get("directory")),
        same_directory,
    )


def _outcomes(changes: Sequence[Change], found: Sequence[object]) -> list[ChangeResult]:
    results = []
    for change, value in zip(changes, found, strict=True):
        if value is GONE:
            results.append(ChangeResult(change, "conflict", "entry no longer exists"))
        elif same_value(value, change.new):  # type: ignore[arg-type]
            results.append(
                ChangeResult(change, "applied", "confirmed on recovery: the new value is there")
            )
        elif same_value(value, change.old):  # type: ignore[arg-type]
            results.append(
                ChangeResult(change, "skipped", "not written: the old value is still there")
            )
        else:
            results.append(
                ChangeResult(
                    change,
                    "conflict",
                    "on recovery the value is neither the old nor the new one",
                    str(value),
                )
            )
    return results
