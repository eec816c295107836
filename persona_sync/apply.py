"""Applying changes: safety limit, lock, journal, compare-and-swap in batches; and rollback.

The only module that writes to a directory. Every batch is journalled as pending before
it is sent and its results after, so the journal always reflects what was really written.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from persona_sync.config import LoadedConfig, SafetyConfig
from persona_sync.directory.base import Change, ChangeResult, Directory, DirectoryAborted
from persona_sync.errors import DirectoryError, PersonaSyncError, PlanError, SafetyLimitExceeded
from persona_sync.journal import Journal, RunRecord, read_run
from persona_sync.lock import RunLock
from persona_sync.plan import Plan

log = structlog.get_logger(__name__)

BATCH_SIZE = 200
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunReport:
    run_id: str
    journal: Path
    results: tuple[ChangeResult, ...]

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(r.status for r in self.results)
        return {k: counted.get(k, 0) for k in ("applied", "conflict", "failed", "skipped")}

    @property
    def ok(self) -> bool:
        return self.counts["failed"] == 0


def change_limit(safety: SafetyConfig, in_scope: int) -> int:
    """Most employees one run may change: the smaller of the count and percentage limits."""
    by_share = math.floor(in_scope * safety.max_change_percent / 100)
    return min(safety.max_changes, by_share)


def check_safety(plan: Plan, safety: SafetyConfig, force: bool) -> None:
    employees = int(plan.summary.get("employees_changed", len(plan.changes)))
    limit = change_limit(safety, plan.in_scope)
    if employees > limit and not force:
        raise SafetyLimitExceeded(
            f"this run would change {employees} employees, more than the safety limit of "
            f"{limit} (max_changes {safety.max_changes}, max_change_percent "
            f"{safety.max_change_percent:g}% of {plan.in_scope} in scope); nothing was written. "
            "Review the plan, then rerun with --force, or raise the limits under safety: in "
            "the config"
        )


def verify_plan(
    plan: Plan, config: LoadedConfig, rules_checksum: str, directory: Directory
) -> None:
    """Refuse a plan made for other rules, another config or another directory."""
    prov = plan.provenance
    if prov.directory != directory.identity:
        raise PlanError(
            f"this plan is for directory {prov.directory}, but the config points at "
            f"{directory.identity}"
        )
    if prov.rules_checksum != rules_checksum:
        raise PlanError("the rules changed since this plan was made: make a new plan")
    if prov.config_checksum != config.checksum:
        raise PlanError("the config changed since this plan was made: make a new plan")


def run_changes(
    directory: Directory,
    changes: Sequence[Change],
    state_dir: Path,
    command: str,
    progress: Progress | None = None,
    **header: Any,
) -> RunReport:
    """Write changes in journalled batches; the caller holds the lock."""
    journal = Journal(state_dir, command, directory.identity, changes=len(changes), **header)
    results: list[ChangeResult] = []
    status = "complete"
    try:
        size = directory.batch_size or BATCH_SIZE
        for start in range(0, len(changes), size):
            batch = changes[start : start + size]
            journal.pending(batch)
            try:
                batch_results = directory.apply(batch)
            except DirectoryAborted as exc:
                done = {id(r.change) for r in exc.results}
                batch_results = exc.results + [
                    ChangeResult(c, "failed", f"not written: {exc}")
                    for c in batch
                    if id(c) not in done
                ]
                status = "aborted"
            except DirectoryError as exc:
                batch_results = [ChangeResult(c, "failed", str(exc)) for c in batch]
                status = "aborted"
            journal.results(batch_results)
            results.extend(batch_results)
            if progress is not None:
                progress(len(results), len(changes))
            if status == "aborted":
                remaining = changes[start + size :]
                skipped = [
                    ChangeResult(c, "skipped", "not attempted: run aborted") for c in remaining
                ]
                results.extend(skipped)
                break
    finally:
        counts = Counter(r.status for r in results)
        try:
            journal.end({str(key): value for key, value in counts.items()}, status)
        finally:
            journal.close()
    report = RunReport(journal.run_id, journal.path, tuple(results))
    log.info("run_finished", run_id=journal.run_id, status=status, **report.counts)
    return report


def apply_plan(
    plan: Plan,
    config: LoadedConfig,
    rules_checksum: str,
    directory: Directory,
    force: bool = False,
    progress: Progress | None = None,
    command: str = "apply",
) -> RunReport:
    verify_plan(plan, config, rules_checksum, directory)
    check_safety(plan, config.spec.safety, force)
    directory.check_targets(sorted({c.attribute for c in plan.changes}))
    with RunLock(config.state_dir, command):
        return run_changes(
            directory,
            [c.to_change() for c in plan.changes],
            config.state_dir,
            command,
            progress,
            plan_checksum=plan.checksum,
        )


def rollback_changes(record: RunRecord) -> list[Change]:
    """The inverse of every write a run made (or may have made), newest first."""
    changes: list[Change] = []
    # Failed writes may still have reached the directory (a lost connection); reversing
    # one that did not is harmless: compare-and-swap finds the value already restored.
    candidates = [w for w in record.writes if w["result"] in ("applied", "failed")]
    candidates += record.unresolved()
    for item in reversed(candidates):
        original = Change(
            item["employee"],
            item["dn"],
            item["attribute"],
            item["old"],
            item["new"],
            item.get("persona"),
            item.get("rule"),
            item.get("scenario"),
        )
        changes.append(original.reversed())
    return changes


def rollback(
    run_id: str, config: LoadedConfig, directory: Directory, progress: Progress | None = None
) -> RunReport:
    """Restore the old values a run wrote, with compare-and-swap; itself journalled."""
    record = read_run(config.state_dir, run_id)
    if record.header.get("directory") != directory.identity:
        raise PersonaSyncError(
            f"run {run_id} wrote to {record.header.get('directory')}, but the config points at "
            f"{directory.identity}"
        )
    changes = rollback_changes(record)
    with RunLock(config.state_dir, f"rollback {run_id}"):
        return run_changes(
            directory, changes, config.state_dir, "rollback", progress, rollback_of=run_id
        )
