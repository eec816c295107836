"""The workflows: plan, apply, sync and rollback, each one library function.

Each function that writes owns the run's life cycle: it takes the state folder's lock,
settles runs that died before they could end (:mod:`persona_sync.recovery`), checks the
safety limits, writes through a journal that always ends with how the run ended, and
releases the lock. The CLI and the demo call these functions and only render what they
return.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from persona_sync.apply import Progress, RunReport, rollback_changes, run_changes
from persona_sync.config import LoadedConfig
from persona_sync.directory.base import Cancel, Change, ChangeResult, Directory
from persona_sync.errors import LockHeld, PersonaSyncError, PlanError, SafetyLimitExceeded
from persona_sync.feed_join import FeedSet, load_feeds, verify_feeds
from persona_sync.journal import Journal, read_run
from persona_sync.lock import RunLock
from persona_sync.logs import get_logger
from persona_sync.plan import Evaluator, Plan
from persona_sync.recovery import Settled, settle_unfinished
from persona_sync.refresh import (
    Refresh,
    compute_plan,
    full_read_due,
    record_results,
    row_evaluator,
)
from persona_sync.safety import check_safety
from persona_sync.session import Session
from persona_sync.snapshot import SNAPSHOT_LOCK, Snapshot

log = get_logger(__name__)

ReadProgress = Callable[[int], None]
OnSettled = Callable[[Settled], None]


class RunInterrupted(PersonaSyncError):
    """A signal stopped the run before it wrote anything."""

    def __init__(self, reason: str, stage: str) -> None:
        self.reason = reason
        super().__init__(f"interrupted by {reason} while {stage}; nothing was written")


@dataclass(frozen=True)
class Outcome:
    """What a writing workflow did: runs it settled first, the plan, and its own run."""

    settled: tuple[Settled, ...] = ()
    plan: Plan | None = None
    report: RunReport | None = None  # None: nothing to write


def make_plan(
    session: Session,
    directory: Directory,
    progress: ReadProgress | None = None,
    cancel: Cancel | None = None,
    *,
    delta: bool = False,
    force: bool = False,
) -> Plan:
    """Read (all, or the changes since the snapshot's cursor with ``delta``), evaluate and
    diff. It writes nothing in the directory, so it takes no run lock; it saves the
    snapshot unless another run is updating it (then it plans against a private copy).
    ``force``: plan although a feed shrank more than its limit since the last run."""
    feeds = load_feeds(session.config)  # a bad feed stops the plan before any read
    with _snapshot(session.config, "plan", wait=False) as (store, fresh):
        refresh = _refresh(
            session, directory, store, fresh, progress, cancel, delta, feeds=feeds, force=force
        )
        refresh.commit()
    return refresh.plan


def _refresh(
    session: Session,
    directory: Directory,
    store: Snapshot,
    fresh: str | None,
    progress: ReadProgress | None,
    cancel: Cancel | None,
    delta: bool,
    *,
    feeds: FeedSet | None = None,
    force: bool = False,
) -> Refresh:
    def read(count: int) -> None:
        if cancel is not None and cancel.requested:
            raise RunInterrupted(cancel.reason, "reading employees")
        if progress is not None:
            progress(count)

    every = session.config.spec.snapshot.full_read_every_hours
    refresh = compute_plan(
        session.config,
        session.engine,
        directory,
        read,
        snapshot=store,
        delta=delta,
        full_reason=full_read_due(store, every) if delta else None,
        fresh_reason=fresh,
        feeds=feeds,
        force=force,
        items=session.items,
    )
    read(refresh.summary.read)  # a signal during a short read is seen here
    return refresh


@contextlib.contextmanager
def _snapshot(
    config: LoadedConfig, command: str, wait: bool
) -> Iterator[tuple[Snapshot, str | None]]:
    """The state folder's snapshot under its own lock, and why it starts empty.

    ``wait``: wait for a plan that is saving it (sync, apply). Without: when another run
    holds it, or the state folder cannot be written, a private in-memory copy.
    """
    lock = RunLock(config.state_dir, command, SNAPSHOT_LOCK)
    try:
        lock.acquire(wait)
    except (LockHeld, PersonaSyncError) as exc:
        log.info("snapshot_busy", reason=str(exc))
        store, fresh = _private_copy(config)
        try:
            yield store, fresh
        finally:
            store.close()
        return
    try:
        try:
            store, fresh = Snapshot.open(config.state_dir)
        except (OSError, sqlite3.Error) as exc:
            log.warning("snapshot_unusable", path=str(config.state_dir), error=str(exc))
            store, fresh = Snapshot.in_memory(), f"the snapshot cannot be opened ({exc})"
        try:
            yield store, fresh
        finally:
            store.close()
    finally:
        lock.release()


def _private_copy(config: LoadedConfig) -> tuple[Snapshot, str | None]:
    try:
        return Snapshot.read_only_copy(config.state_dir)
    except (OSError, sqlite3.Error) as exc:
        return Snapshot.in_memory(), f"the snapshot cannot be read ({exc})"


def verify_plan(
    plan: Plan,
    config: LoadedConfig,
    rules_checksum: str,
    directory: Directory,
    feeds: FeedSet | None = None,
) -> None:
    """Refuse a plan made for other rules, another config, another directory, or from
    feeds that changed since (``feeds``: loaded now)."""
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
    verify_feeds(prov.feeds, feeds if feeds is not None else load_feeds(config))


def apply_plan(
    session: Session,
    plan: Plan,
    directory: Directory,
    *,
    force: bool = False,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    command: str = "apply",
    on_settled: OnSettled | None = None,
) -> Outcome:
    """Apply exactly the reviewed plan: verified, within the limits, journalled."""
    config = session.config
    feeds = load_feeds(config)
    verify_plan(plan, config, session.rules_checksum, directory, feeds)
    check_safety(plan, config.spec.safety, force)
    with RunLock(config.state_dir, command):
        settled = _settle(directory, config, on_settled, command)
        if not plan.changes:
            return Outcome(settled, plan)
        directory.check_targets(sorted({c.attribute for c in plan.changes}))
        with _Recorder(session, directory, feeds) as recorder:
            report = _write(
                directory,
                [c.to_change() for c in plan.changes],
                config,
                command,
                progress,
                cancel,
                recorder.put,
                plan_checksum=plan.checksum,
            )
            recorder.finish()
    return Outcome(settled, plan, report)


_DONE = None  # the recorder's last item: commit what is recorded and stop


class _Recorder:
    """Puts an applied plan's results into the snapshot (when it is of this directory), so
    the writes' echo in the next delta read is no change: each batch's in a transaction of
    its own, in a thread, while the next batch is written.

    A write waits on the directory server (at 10,000 changes against slapd, 3 of the
    apply's 4 s), and recording them after the last one took 0.8 s more (reading and
    rewriting 10,000 rows, then the commit's sync and checkpoint). The thread's work is
    mostly SQLite's, which lets the writing thread run. Each batch takes the snapshot's
    lock and connection for its own transaction only, so a plan may save the snapshot
    between batches. A batch recorded and committed before a crash is harmless: the
    record only spares the next delta read from re-evaluating the writes' echo, and a
    write not recorded is re-evaluated instead. The thread never touches the directory's
    connection; an error in it is raised by :meth:`finish`, after the writes.
    """

    def __init__(self, session: Session, directory: Directory, feeds: FeedSet) -> None:
        self._session, self._directory, self._feeds = session, directory, feeds
        self._queue: queue.SimpleQueue[tuple[str, Sequence[ChangeResult]] | None] = (
            queue.SimpleQueue()
        )
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="snapshot-recorder", daemon=True)

    def __enter__(self) -> _Recorder:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        """After writes ended by an error, record what was journalled; after a second
        signal (KeyboardInterrupt) stop at once: the thread records nothing more, and a
        transaction it leaves open dies with the process."""
        if kind is not None and not issubclass(kind, Exception):
            self._stop.set()
        self._queue.put(_DONE)
        if not self._stop.is_set():
            self._thread.join()

    def put(self, run_id: str, results: Sequence[ChangeResult]) -> None:
        self._queue.put((run_id, results))

    def finish(self) -> None:
        """Wait for every batch to be recorded; raise what stopped the thread."""
        self._queue.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        session, directory, feeds = self._session, self._directory, self._feeds
        evaluator = Evaluator(
            session.config, session.engine, directory, feeds.join if feeds else None
        )
        uses_chart = session.engine.rule_set.uses_org_chart
        read = frozenset(session.engine.attributes)
        try:
            while (item := self._queue.get()) is not _DONE and not self._stop.is_set():
                run_id, results = item
                with _snapshot(session.config, "apply", wait=True) as (store, fresh):
                    if fresh is not None or store.get("directory") != directory.identity:
                        continue
                    store.begin()
                    record_results(
                        store, results, run_id, row_evaluator(store, evaluator, uses_chart), read
                    )
                    store.commit()
        except BaseException as exc:  # raised in the writing thread by finish()
            self._error = exc
            while self._queue.get() is not _DONE:  # the rest is not recorded
                pass


def sync(
    session: Session,
    directory: Directory,
    *,
    force: bool = False,
    delta: bool = False,
    read_progress: ReadProgress | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    on_settled: OnSettled | None = None,
) -> Outcome:
    """Plan and apply in one step, holding the lock from the read to the last write.

    The snapshot (and the cursor a delta read starts from next time) is saved only after
    the writes are journalled: a run killed in between reads those changes again.
    """
    config = session.config
    feeds = load_feeds(config)  # a bad feed stops the run before it takes the lock
    with RunLock(config.state_dir, "sync"):
        settled = _settle(directory, config, on_settled, "sync")
        with _snapshot(config, "sync", wait=True) as (store, fresh):
            refresh = _refresh(
                session,
                directory,
                store,
                fresh,
                read_progress,
                cancel,
                delta,
                feeds=feeds,
                force=force,
            )
            plan = refresh.plan
            if on_plan is not None:
                on_plan(plan)
            if not plan.changes:
                refresh.commit()
                return Outcome(settled, plan)
            try:
                check_safety(plan, config.spec.safety, force)
            except SafetyLimitExceeded:
                refresh.commit()  # nothing written: what was read stays read
                raise
            report = _write(
                directory,
                [c.to_change() for c in plan.changes],
                config,
                "sync",
                progress,
                cancel,
                plan_checksum=plan.checksum,
            )
            refresh.record(report.results, report.run_id)
            if session.items is not None:  # a schedule's copy follows the rows just recorded
                session.items.items(store)
            refresh.commit()
    return Outcome(settled, plan, report)


def rollback(
    run_id: str,
    config: LoadedConfig,
    directory: Directory,
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    on_settled: OnSettled | None = None,
) -> Outcome:
    """Restore the old values a run wrote, with compare-and-swap; itself journalled.

    Needs the config and the journal, not the rules: a broken rule commit must not block
    the rollback that repairs its effects.
    """
    read_run(config.state_dir, run_id)  # an unknown id is refused before taking the lock
    with RunLock(config.state_dir, f"rollback {run_id}"):
        settled = _settle(directory, config, on_settled, f"rollback {run_id}")
        record = read_run(config.state_dir, run_id)  # again: recovery may have settled it
        if record.header.get("directory") != directory.identity:
            raise PersonaSyncError(
                f"run {run_id} wrote to {record.header.get('directory')}, but the config "
                f"points at {directory.identity}"
            )
        changes = rollback_changes(record)
        report = _write(
            directory, changes, config, "rollback", progress, cancel, rollback_of=run_id
        )
    return Outcome(settled, None, report)


def _settle(
    directory: Directory, config: LoadedConfig, on_settled: OnSettled | None, command: str
) -> tuple[Settled, ...]:
    by = f"{command} pid {os.getpid()} at {datetime.now(UTC).isoformat(timespec='seconds')}"
    settled = tuple(settle_unfinished(directory, config.state_dir, by))
    if on_settled is not None:
        for item in settled:
            on_settled(item)
    return settled


def _write(
    directory: Directory,
    changes: list[Change],
    config: LoadedConfig,
    command: str,
    progress: Progress | None,
    cancel: Cancel | None,
    on_results: Callable[[str, Sequence[ChangeResult]], None] | None = None,
    **header: object,
) -> RunReport:
    """The changes written through a new journal; ``on_results`` is given the run's id
    and each batch's results once they are journalled."""
    journal = Journal.create(
        config.state_dir, command, directory.identity, changes=len(changes), **header
    )
    report_batch = (
        None if on_results is None else lambda results: on_results(journal.run_id, results)
    )
    return run_changes(directory, changes, journal, progress, cancel, report_batch)
