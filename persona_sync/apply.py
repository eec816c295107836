"""Writing changes in journalled batches, and the inverse of a run for rollback.

Every batch is journalled as pending before it is sent and its results after, so the
journal always reflects what was really written. The caller (:mod:`persona_sync.workflow`)
holds the lock and owns the journal's life cycle; this module owns one run's writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from persona_sync.directory.base import (
    STATUSES,
    Cancel,
    Change,
    ChangeResult,
    Directory,
    DirectoryAborted,
)
from persona_sync.errors import DirectoryError
from persona_sync.journal import Journal, RunRecord, record_change
from persona_sync.logs import get_logger

log = get_logger(__name__)

BATCH_SIZE = 200
Progress = Callable[[int, int], None]
NOT_SENT_STOPPED = "not sent: the run stopped at an error"
NOT_SENT_INTERRUPTED = "not sent: run interrupted"


@dataclass(frozen=True)
class RunReport:
    """What one run did: its journal, a result per change, and how it ended."""

    run_id: str
    journal: Path
    results: tuple[ChangeResult, ...]
    status: str = "complete"  # see persona_sync.journal: complete, aborted, interrupted, error
    reason: str = ""  # why it did not complete

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(r.status for r in self.results)
        return {k: counted.get(k, 0) for k in STATUSES}

    @property
    def ok(self) -> bool:
        counts = self.counts
        return self.status == "complete" and not (counts["failed"] or counts["unknown"])


def run_changes(
    directory: Directory,
    changes: Sequence[Change],
    journal: Journal,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    on_results: Callable[[Sequence[ChangeResult]], None] | None = None,
) -> RunReport:
    """Write ``changes`` in journalled batches and end the journal, however the run ends.
    ``on_results`` is given each batch's results once they are journalled.

    A directory error stops the run (``aborted``); a requested cancel stops it between or
    within batches (``interrupted``). Any other exception ends the journal as ``error`` (or
    ``interrupted`` for KeyboardInterrupt) and propagates.
    """
    results: list[ChangeResult] = []
    status, reason = "complete", ""
    try:
        size = directory.batch_size or BATCH_SIZE
        for start in range(0, len(changes), size):
            if cancel is not None and cancel.requested:
                status, reason = "interrupted", cancel.reason
                break
            batch = changes[start : start + size]
            journal.pending(batch)
            try:
                batch_results = directory.apply(batch, cancel)
            except DirectoryAborted as exc:
                batch_results = _complete(batch, exc.results, NOT_SENT_STOPPED)
                status, reason = "aborted", str(exc)
            except DirectoryError as exc:
                batch_results = [ChangeResult(c, "failed", str(exc)) for c in batch]
                status, reason = "aborted", str(exc)
            journal.results(batch_results)
            results.extend(batch_results)
            if on_results is not None:
                on_results(batch_results)
            if progress is not None:
                progress(len(results), len(changes))
            if status == "aborted":
                break
            if cancel is not None and cancel.requested:
                status, reason = "interrupted", cancel.reason
                break
        results.extend(
            ChangeResult(
                c, "skipped", NOT_SENT_INTERRUPTED if status == "interrupted" else NOT_SENT_STOPPED
            )
            for c in changes[len(results) :]
        )
    except KeyboardInterrupt:
        _end(journal, "interrupted", results, reason="KeyboardInterrupt")
        raise
    except BaseException as exc:
        _end(journal, "error", results, reason=f"{type(exc).__name__}: {exc}")
        raise
    _end(journal, status, results, reason=reason)
    report = RunReport(journal.run_id, journal.path, tuple(results), status, reason)
    log.info("run_finished", run_id=journal.run_id, status=status, **report.counts)
    return report


def _complete(
    batch: Sequence[Change], decided: Sequence[ChangeResult], message: str
) -> list[ChangeResult]:
    """One result per change of the batch, in order; those not decided were not sent."""
    by_change = {id(r.change): r for r in decided}
    return [by_change.get(id(c)) or ChangeResult(c, "skipped", message) for c in batch]


def _end(journal: Journal, status: str, results: Sequence[ChangeResult], reason: str) -> None:
    counts = Counter(r.status for r in results)
    extra = {"reason": reason} if reason else {}
    try:
        journal.end(status, {str(k): v for k, v in counts.items()}, **extra)
    finally:
        journal.close()


def rollback_changes(record: RunRecord) -> list[Change]:
    """The inverse of every write a run made (or may have made), newest first.

    Only writes this run made count: ``applied``, and ``unknown`` or unresolved ones whose
    outcome nobody could settle (compare-and-swap finds the old value still there if they
    never landed). A value the run found already there (``unchanged``) was someone else's.
    """
    candidates = [w for w in record.writes if w["result"] == "applied"]
    candidates += record.unresolved()  # unknown, or pending without a result
    return [record_change(item).reversed() for item in reversed(candidates)]
