"""The read path: bring the snapshot up to date from the directory, then plan from it.

A full read takes every entry (held until the org chart is complete, or past
:data:`~persona_sync.full_evaluation.HELD_MAX` entries streamed into the snapshot page by
page) and evaluates everyone, on two cores where there are two. A
delta read (``delta=True``) asks the directory only for what changed since the saved
cursor, compares each entry with its row (an entry whose attributes are what the snapshot
holds, such as the echo of this tool's own write, is no change), and re-evaluates only:

- the employees whose attributes changed, and the new ones;
- everyone whose org-chart position moved, when a manager link, a DN or a membership
  changed and the rules read the org chart (a moved manager takes the subtree along);
- everyone, from the snapshot and without a directory read, when the rules, the fact
  mapping or the config changed since the rows were computed.

Either way the plan is assembled from every row, so a delta plan equals the plan a full
read would make. The snapshot transaction stays open until :meth:`Refresh.commit`: ``sync``
commits after its writes are journalled (a crash in between only re-reads those changes),
``plan`` right away.
"""

from __future__ import annotations

import marshal
import sqlite3
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from persona_sync import full_evaluation
from persona_sync.config import LoadedConfig
from persona_sync.directory.base import ChangeResult, Cursor, DeltaRead, Directory
from persona_sync.dn import normalize_new_dn
from persona_sync.employee import Employee
from persona_sync.errors import ValidationFailed
from persona_sync.feed_join import (
    FeedSet,
    check_shrink,
    feed_summary,
    load_feeds,
    refresh_feeds,
)
from persona_sync.full_evaluation import Evaluation, HeldRow, evaluate_held, evaluate_loaded
from persona_sync.item_cache import ItemCache
from persona_sync.logs import get_logger
from persona_sync.plan import (
    Evaluator,
    ForeignValue,
    Plan,
    SkippedChange,
    StoredChanges,
    assemble_plan,
    check_targets,
    log_problems,
    outside_managers,
    plan_items,
    read_attributes,
    stored_items,
)
from persona_sync.rules.engine import Engine
from persona_sync.rules.orgchart import MANAGER_ATTRIBUTE, ChartBuilder, Position, normalize_dn
from persona_sync.snapshot import SEPARATOR, Row, Snapshot, damaged, labels_text

log = get_logger(__name__)

Progress = Callable[[int], None]
BATCH = 2000


@dataclass
class ReadSummary:
    """How the run read: ``mode`` full or delta, and why; what it found and re-evaluated."""

    mode: str
    reason: str = ""
    read: int = 0
    changed: int = 0
    removed: int = 0
    re_evaluated: int = 0
    notes: list[str] = field(default_factory=list)
    #: the keys re-evaluated (None: every row); for tests and the debug log, not the plan
    evaluated: set[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "reason": self.reason,
            "entries_read": self.read,
            "changed": self.changed,
            "removed": self.removed,
            "re_evaluated": self.re_evaluated,
            "notes": list(self.notes),
        }


class Refresh:
    """A plan and the snapshot transaction it rests on: commit once the writes are in."""

    def __init__(
        self,
        plan: Plan,
        snapshot: Snapshot,
        evaluate: Callable[[Iterable[str] | None], int],
        cursor: Cursor | None,
        summary: ReadSummary,
        facts_read: Collection[str] = (),
    ) -> None:
        self.plan = plan
        self.snapshot = snapshot
        self._evaluate = evaluate
        self.cursor = cursor
        self.summary = summary
        self._facts_read = facts_read

    def record(self, results: Iterable[ChangeResult], run_id: str) -> None:
        """Put what the run found and wrote into the rows (see :func:`record_results`)."""
        record_results(self.snapshot, results, run_id, self._evaluate, self._facts_read)

    def commit(self) -> None:
        self.snapshot.set_meta(cursor=_cursor_dict(self.cursor))
        self.snapshot.commit()

    def rollback(self) -> None:
        self.snapshot.rollback()


def compute_plan(
    config: LoadedConfig,
    engine: Engine,
    directory: Directory,
    progress: Progress | None = None,
    *,
    snapshot: Snapshot | None = None,
    delta: bool = False,
    full_reason: str | None = None,
    fresh_reason: str | None = None,
    feeds: FeedSet | None = None,
    force: bool = False,
    items: ItemCache | None = None,
) -> Refresh:
    """Read (in full, or the changes since the snapshot's cursor) and plan.

    ``snapshot`` None: a throw-away one in memory. ``full_reason``: read in full although a
    delta was asked (the last full read is too old). ``fresh_reason``: why the snapshot is
    empty (it was missing, damaged, of another version), said when a delta was asked.
    ``feeds``: the config's feeds, loaded (None: loaded here); ``force``: plan although a
    feed shrank more than its limit since the last run. ``items``: a resident process's
    copy of the plan items, from which the plan is assembled (None: they are read).

    Damage SQLite meets in the snapshot on the way (SQLITE_CORRUPT: the snapshot is not
    checked page by page when opened) drops the read, rebuilds the snapshot empty and
    reads in full, saying why.
    """
    store = snapshot if snapshot is not None else Snapshot.in_memory()
    reads: list[DeltaRead] = []
    feeds = load_feeds(config) if feeds is None else feeds
    args = (config, engine, directory, progress, store, delta, feeds, force, items)
    try:
        return _compute_plan(*args, full_reason, fresh_reason, reads)
    except sqlite3.DatabaseError as exc:
        if not damaged(exc):
            raise
        for read in reads:  # a stream left half read holds a connection's answers
            close = getattr(read.entries, "close", None)
            if close is not None:
                close()
        log.info("snapshot_rebuilt", path=str(store.path), reason=str(exc))
        store.rebuild()
        return _compute_plan(*args, None, f"the snapshot was damaged ({exc})", [])


def _compute_plan(
    config: LoadedConfig,
    engine: Engine,
    directory: Directory,
    progress: Progress | None,
    store: Snapshot,
    delta: bool,
    feeds: FeedSet,
    force: bool,
    items: ItemCache | None,
    full_reason: str | None,
    fresh_reason: str | None,
    reads: list[DeltaRead],
) -> Refresh:
    rule_set = engine.rule_set
    check_targets(rule_set, config)
    directory.check_targets(list(config.spec.targets.values()))
    ValidationFailed.raise_if_any(feeds.problems(rule_set, unknown_feeds=False))
    check_shrink(feeds, store.get("feeds"), force)
    attributes = read_attributes(engine, config)
    cursor, reason = _cursor_to_use(store, directory, attributes, delta, full_reason, fresh_reason)
    store.begin()
    read = directory.read_delta(attributes, cursor)
    reads.append(read)
    summary = ReadSummary("full" if read.full else "delta", read.reason if read.full else "")
    if read.full and cursor is None:
        summary.reason = reason
    summary.notes.extend(read.notes)
    uses_chart = rule_set.uses_org_chart
    evaluator = Evaluator(config, engine, directory, feeds.join if feeds else None)
    evaluate = row_evaluator(store, evaluator, uses_chart)

    now = datetime.now(UTC).isoformat(timespec="seconds")
    evaluation: Evaluation | None = None
    if read.full:
        chart = ChartBuilder() if uses_chart else None
        end, held = _read_full(store, directory, read, summary, progress, chart)
        if held is not None and len({row[0] for row in held}) != len(held):
            store.clear_rows()
            store.load(held)  # a key read twice: the load keeps its last row
            held = None
        if held is not None:
            positions = (
                _loaded_positions(store, directory, chart, None) if chart is not None else None
            )
            evaluation = evaluate_held(store, held, evaluator, positions)
            del held
            store.end_load()
        else:
            rowids = None
            if store.end_load() and chart is not None:
                chart, rowids = _chart_of_rows(store)  # a key read twice: its last row only
            positions = (
                _loaded_positions(store, directory, chart, rowids) if chart is not None else None
            )
            evaluation = evaluate_loaded(store, evaluator, positions)
        summary.re_evaluated = evaluation.rows
        store.set_meta(last_full=now)
        summary.evaluated = None
        if feeds or store.get("feeds"):
            refresh_feeds(store, feeds, None)
    else:
        affected, chart_dirty, end, stale = _read_changes(store, directory, read, summary, progress)
        if uses_chart:
            outside_moved, outside_gone = _refresh_outside(store, directory)
            chart_dirty = chart_dirty or outside_moved
            stale |= outside_gone
        relinked = _reread_links(store, directory, attributes, stale, affected, summary)
        affected |= relinked
        chart_dirty = chart_dirty or bool(relinked)
        if feeds or store.get("feeds"):
            joined, notes = refresh_feeds(store, feeds, affected)
            affected |= joined
            summary.notes.extend(notes)
        rules_changed = (
            store.get("rules_checksum") != rule_set.checksum
            or store.get("config_checksum") != config.checksum
        )
        chart_moved = (
            _org_chart(store, directory)[0]
            if uses_chart
            and (chart_dirty or rules_changed or store.get("uses_org_chart") != uses_chart)
            else set()
        )
        if rules_changed:
            summary.notes.append(
                "the rules or the config changed since the snapshot was computed: every "
                "employee re-evaluated from the snapshot"
            )
            summary.re_evaluated = evaluate(None)
        else:
            summary.evaluated = affected | chart_moved
            summary.re_evaluated = evaluate(summary.evaluated)
    store.set_meta(
        directory=directory.identity,
        attributes=sorted(attributes),
        rules_checksum=rule_set.checksum,
        config_checksum=config.checksum,
        uses_org_chart=uses_chart,
        last_read=now,
        last_mode=summary.mode,
        last_reason=summary.reason,
    )
    stored = _stored_from(store, evaluation.population if evaluation is not None else None, items)
    plan = assemble_plan(
        rule_set,
        config,
        directory,
        stored.population,
        stored.changes,
        stored.foreign,
        stored.skipped,
        int(store.get("org_chart_problems", 0)) if uses_chart else 0,
        summary.as_dict(),
        feeds=feed_summary(store, feeds),
        feed_provenance=feeds.provenance(),
    )
    log.info("snapshot_refreshed", **summary.as_dict())
    return Refresh(plan, store, evaluate, end, summary, frozenset(engine.attributes))


def row_evaluator(
    store: Snapshot, evaluator: Evaluator, uses_chart: bool
) -> Callable[[Iterable[str] | None], int]:
    """A function that re-evaluates rows (by key; all with None) and stores the results."""

    def evaluate(keys: Iterable[str] | None) -> int:
        done = 0
        for chunk in store.chunks(keys):
            decided = []
            for row in chunk:
                position = Position(row.depth, row.reports) if uses_chart else None
                result = evaluator(Employee(row.id, row.dn, row.attributes), position)
                decided.append(
                    (
                        labels_text(result.population),
                        int(bool(result.changes)),
                        plan_items(result),
                        row.key,
                    )
                )
            store.set_decisions(decided)
            done += len(chunk)
        return done

    return evaluate


def record_results(
    store: Snapshot,
    results: Iterable[ChangeResult],
    run_id: str,
    evaluate: Callable[[Iterable[str] | None], int],
    read_attributes: Collection[str] = (),
) -> int:
    """Put what a run found and wrote into the rows, so the writes' echo in the next delta
    is no change. Returns how many rows it touched.

    A change written (or found already there) leaves the row's plan items and nothing else
    moves, unless the rules read the attribute written (``read_attributes``, lower case):
    those rows, and those where a conflict found another value, are evaluated again.
    """
    results = list(results)
    unkeyed = [r.change.dn for r in results if r.change.key is None]
    keys = store.keys_of_dns(unkeyed) if unkeyed else {}  # plans made before changes had keys
    writes = []
    settled: list[tuple[str, str, str | None]] = []
    again: set[str] = set()
    for result in results:
        change = result.change
        key = change.key if change.key is not None else keys.get(change.dn)
        if key is None:
            continue
        attribute = change.attribute.lower()
        if result.status in ("applied", "unchanged"):
            writes.append((key, attribute, change.new, run_id))
            if attribute in read_attributes:
                again.add(key)
            else:
                settled.append((key, attribute, change.new))
        elif result.status == "conflict":
            writes.append((key, attribute, result.found, run_id))
            again.add(key)
    again |= store.record_written(writes, settled)
    if again:
        evaluate(again)
    return len({key for key, *_ in writes})


@dataclass
class _Stored:
    """Every row's population and plan items, as the snapshot holds them: a plan's input."""

    population: list[tuple[tuple[str, ...] | None, bool, int]]
    changes: StoredChanges
    foreign: list[ForeignValue]
    skipped: list[SkippedChange]


def _stored_from(
    store: Snapshot,
    population: list[tuple[tuple[str, ...] | None, bool, int]] | None,
    items: ItemCache | None = None,
) -> _Stored:
    """The plan's input from the snapshot, full read or delta alike (``population`` when
    the caller counted it already; ``items``: a copy of the plan items to bring up to
    date and use): the changes stay the canonical texts stored, which the plan file is
    written from (see :class:`~persona_sync.plan.StoredChanges`)."""
    found = items.items(store) if items is not None else store.plan_items()
    changes, foreign, skipped = stored_items(found)
    if population is None:
        population = list(_population(store))
    return _Stored(population, changes, foreign, skipped)


def _cursor_to_use(
    store: Snapshot,
    directory: Directory,
    attributes: list[str],
    delta: bool,
    full_reason: str | None,
    fresh_reason: str | None,
) -> tuple[Cursor | None, str]:
    """The saved cursor a delta read may start from, or None and why a full read."""
    if not delta:
        return None, "no --delta: a full read"
    if fresh_reason is not None:
        return None, f"{fresh_reason}: full read"
    if store.get("cursor") is None and store.count() == 0:
        return None, "no snapshot yet: full read"
    if store.get("directory") != directory.identity:
        return None, (f"the snapshot is of another directory ({store.get('directory')}): full read")
    missing = sorted(set(attributes) - set(store.get("attributes") or ()))
    if missing:
        return None, (
            "the rules now read attributes the snapshot does not hold "
            f"({', '.join(missing)}): full read"
        )
    saved = store.get("cursor")
    if not isinstance(saved, dict):
        return None, "no cursor yet: full read"
    if full_reason is not None:
        return None, full_reason
    return Cursor(
        str(saved.get("kind")), dict(saved.get("state") or {}), str(saved.get("taken"))
    ), ""


def full_read_due(store: Snapshot, every_hours: float, now: datetime | None = None) -> str | None:
    """Why the scheduled full read is due (the last one is older than ``every_hours``)."""
    last = store.get("last_full")
    if not isinstance(last, str):
        return None
    try:
        taken = datetime.fromisoformat(last)
    except ValueError:
        return None
    age = (now or datetime.now(UTC)) - taken
    if age < timedelta(hours=every_hours):
        return None
    hours = age.total_seconds() / 3600
    return (
        f"the last full read was {hours:.0f} h ago (snapshot.full_read_every_hours: "
        f"{every_hours:g}): full read"
    )


def _read_full(
    store: Snapshot,
    directory: Directory,
    read: DeltaRead,
    summary: ReadSummary,
    progress: Progress | None,
    chart: ChartBuilder | None,
) -> tuple[Cursor | None, list[HeldRow] | None]:
    """Every entry in the order read, into the org chart when the rules read it (node n
    is row n + 1), and returned to be evaluated and written once (see
    :mod:`~persona_sync.full_evaluation`); past HELD_MAX entries, loaded into the snapshot
    as they come instead (None returned: evaluate them from there)."""
    store.start_load()
    key_of, pack = directory.key, marshal.dumps
    normalize, intern = normalize_new_dn, sys.intern
    held_max = full_evaluation.HELD_MAX
    rows: list[HeldRow] = []
    holding = True
    count = 0
    for employee in read.entries:
        attributes = employee.attributes
        manager = attributes.get(MANAGER_ATTRIBUTE)
        if manager is not None:
            manager = intern(manager)  # a manager's many reports share one string
        if type(attributes) is not dict:
            attributes = dict(attributes)
        rows.append((key_of(employee), employee.id, employee.dn, manager, pack(attributes)))
        if chart is not None:
            chart.add(employee.id, normalize(employee.dn), manager)
        count += 1
        if len(rows) % BATCH == 0:
            if not holding or len(rows) > held_max:
                if holding:
                    store.clear_rows()
                store.load(rows)
                rows.clear()
                holding = False
            summary.read = count
            if progress is not None:
                progress(count)
    summary.read = summary.changed = count
    if not holding:
        store.load(rows)
    return read.finish().cursor, rows if holding else None


def _chart_of_rows(store: Snapshot) -> tuple[ChartBuilder, list[int]]:
    """The org chart's nodes from the loaded rows, and each node's rowid."""
    chart = ChartBuilder()
    rowids = []
    for rowid, id_, dn, manager in store.links_loaded():
        chart.add(id_, normalize_new_dn(dn), manager)
        rowids.append(rowid)
    return chart, rowids


def _build_chart(
    store: Snapshot, directory: Directory, chart: ChartBuilder
) -> tuple[list[int | None], list[int]]:
    """Add the managers outside the scope (kept in the snapshot), build the chart, log and
    count its problems: each node's depth and direct reports."""
    extra = outside_managers(directory, chart)
    if extra:
        store.put_outside((e.dn, e.id, e.get(MANAGER_ATTRIBUTE)) for e in extra)
    depths, reports, problems = chart.build()
    log_problems(problems)
    store.set_meta(org_chart_problems=len(problems))
    return depths, reports


def _loaded_positions(
    store: Snapshot, directory: Directory, chart: ChartBuilder, rowids: list[int] | None
) -> list[Position | None]:
    """Every loaded row's position by rowid (``rowids``: each node's; None: node n is
    rowid n + 1), with the managers outside the scope added to the chart."""
    rows = len(chart)
    depths, reports = _build_chart(store, directory, chart)
    shared: dict[tuple[int | None, int], Position] = {}
    # the chart's own nodes (the outside managers come after them)
    places = zip(depths[:rows], reports[:rows], strict=True)
    if rowids is None:  # node n is rowid n + 1
        positions: list[Position | None] = [None]
        for place in places:
            position = shared.get(place)
            if position is None:
                position = shared[place] = Position(*place)
            positions.append(position)
        return positions
    positions = [None] * ((rowids[-1] if rowids else 0) + 1)
    for rowid, place in zip(rowids, places, strict=True):
        position = shared.get(place)
        if position is None:
            position = shared[place] = Position(*place)
        positions[rowid] = position
    return positions


def _read_changes(
    store: Snapshot,
    directory: Directory,
    read: DeltaRead,
    summary: ReadSummary,
    progress: Progress | None,
) -> tuple[set[str], bool, Cursor | None, set[str]]:
    """Apply a delta to the rows: (keys whose attributes changed, whether the org chart
    may have moved, the new cursor, the normalised DNs that stopped naming an employee:
    renamed or removed)."""
    affected: set[str] = set()
    chart_dirty = False
    stale: set[str] = set()
    for batch in _batches(read.entries):
        summary.read += len(batch)
        changed, moved, renamed = _merge(store, [_row(directory, e) for e in batch])
        affected |= changed
        chart_dirty = chart_dirty or moved
        stale |= renamed
        if progress is not None:
            progress(summary.read)
    end = read.finish()
    summary.changed = len(affected)
    # removed never names an entry the read returned; present is the truth at the sweep,
    # taken after the entries, so an entry returned and then not present has left since
    gone: set[str] = set(end.removed) - affected
    if end.present is not None:
        gone |= store.keys() - set(end.present)
    affected -= gone
    if gone:
        stale |= {normalize_dn(row.dn) for row in store.rows(gone)}
        summary.removed = store.remove(gone)
        chart_dirty = chart_dirty or summary.removed > 0
    return affected, chart_dirty, end.cursor, stale


def _merge(store: Snapshot, fresh: list[Row]) -> tuple[set[str], bool, set[str]]:
    """Put the entries read into the rows: (keys that changed, whether a link, DN or
    membership changed, the old DNs of renamed rows)."""
    known = {r.key: r for r in store.rows(r.key for r in fresh)}
    changed: set[str] = set()
    moved: list[Row] = []
    links = False
    renamed: set[str] = set()
    for row in fresh:
        old = known.get(row.key)
        if old is not None and old.attributes == row.attributes and old.dn == row.dn:
            continue  # no change (our own write coming back, or a change we do not read)
        if old is None or old.dn != row.dn or old.id != row.id or _manager(old) != _manager(row):
            links = True
        if old is not None:
            if old.dn != row.dn:
                renamed.add(normalize_dn(old.dn))
            row = Row(row.key, row.id, row.dn, row.attributes, old.depth, old.reports)
        moved.append(row)
        changed.add(row.key)
    store.put(moved)
    return changed, links, renamed


def _reread_links(
    store: Snapshot,
    directory: Directory,
    attributes: list[str],
    stale: set[str],
    affected: set[str],
    summary: ReadSummary,
) -> set[str]:
    """Read again the employees whose manager names a DN that is no longer an employee's
    (renamed or removed), when the directory may have changed their link without the
    delta showing it (AD); returns the keys that changed."""
    if not stale:
        return set()
    holders = [
        dn
        for key, _id, dn, manager, _depth, _reports in store.links()
        if manager and key not in affected and normalize_dn(manager) in stale
    ]
    if not holders:
        return set()
    entries = directory.reread(holders, attributes)
    if entries is None:
        return set()
    summary.read += len(entries)
    changed = _merge(store, [_row(directory, e) for e in entries])[0]
    summary.changed += len(changed)
    return changed


def _refresh_outside(store: Snapshot, directory: Directory) -> tuple[bool, set[str]]:
    """Read the managers outside the scope again (a delta never returns them): whether one
    changed or is gone (the org chart is then rebuilt, and looks up any new ones), and the
    normalised DNs of those gone (their reports' links are read again)."""
    stored = store.outside()
    if not stored:
        return False, set()
    found = directory.lookup_managers([dn for dn, _id, _manager in stored])
    fresh = [(e.dn, e.id, e.get(MANAGER_ATTRIBUTE)) for e in found]
    if sorted(fresh) == sorted(stored):
        return False, set()
    store.replace_outside(fresh)
    still = {normalize_dn(dn) for dn, _id, _manager in fresh}
    return True, {normalize_dn(dn) for dn, _id, _manager in stored} - still


def _org_chart(
    store: Snapshot, directory: Directory, update: bool = True
) -> tuple[set[str], dict[str, Position]]:
    """Recompute every position from the rows: the keys whose position moved (stored when
    ``update``), and every position by key."""
    chart = ChartBuilder()
    stored: list[tuple[str, int | None, int]] = []  # per node: key, depth, reports
    node_of: dict[str, int] = {}  # DN -> node: one DN is one employee
    for key, id_, dn, manager, depth, reports in store.links():
        node = node_of.get(dn)
        if node is None:
            node_of[dn] = chart.add(id_, normalize_new_dn(dn), manager)
            stored.append((key, depth, reports))
        else:
            chart.again(node, id_, normalize_new_dn(dn), manager)
            stored[node] = (key, depth, reports)
    for dn, id_, manager in store.outside():
        if dn not in node_of:
            node_of[dn] = chart.add(id_, normalize_dn(dn), manager)
    depths, reports_of = _build_chart(store, directory, chart)
    moved: list[tuple[int | None, int, str]] = []
    by_key: dict[str, Position] = {}
    for node, (key, depth, reports) in enumerate(stored):
        position = Position(depths[node], reports_of[node])
        by_key[key] = position
        if position.depth != depth or position.direct_reports != reports:
            moved.append((position.depth, position.direct_reports, key))
    if update:
        store.set_positions(moved)
    return {key for _depth, _reports, key in moved}, by_key


def _population(store: Snapshot) -> Iterator[tuple[tuple[str, ...] | None, bool, int]]:
    for population, changed, many in store.population():
        labels = None if population is None else tuple(population.split(SEPARATOR))
        yield labels, bool(changed), int(many)


def _batches(entries: Iterable[Employee]) -> Iterator[list[Employee]]:
    batch: list[Employee] = []
    for employee in entries:
        batch.append(employee)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _row(directory: Directory, employee: Employee) -> Row:
    return Row(directory.key(employee), employee.id, employee.dn, employee.attributes)


def _manager(row: Row) -> str | None:
    link = row.attributes.get(MANAGER_ATTRIBUTE)
    return normalize_dn(link) if link else None


def _cursor_dict(cursor: Cursor | None) -> dict[str, Any] | None:
    if cursor is None:
        return None
    return {"kind": cursor.kind, "state": dict(cursor.state), "taken": cursor.taken}
