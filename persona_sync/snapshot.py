"""The local snapshot: what the last read saw and what each employee was decided, in SQLite.

persona-sync's equivalent of Entra Connect's connector space. One file in the state folder
holds, per employee (keyed by the directory's stable id: objectGUID, entryUUID, the Graph
object id), the DN, the attributes the facts and targets read, the org-chart position, the
decision per scenario and the plan items that decision implies; plus the source's change
cursor and what the rows were computed with (rules and config checksums, attributes read).

A delta run reads only what changed since the cursor, updates those rows, re-evaluates the
employees whose facts moved, and builds the plan from every row, so a delta plan is the plan
a full read would make. Every update is one transaction, committed only after the run's
writes are journalled: a crash rolls the snapshot back to the last cursor, and the next run
reads those changes again (harmlessly). A snapshot that is missing, damaged or made by
another version is rebuilt by a full read, and the run says why.

The standard library's sqlite3: transactional, one file, no server, and fast enough that
a 100,000-row delta touches only the rows it changes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import marshal
import os
import sqlite3
import stat
import sys
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_sync import __version__
from persona_sync.directory.atomic import sync_folder
from persona_sync.directory.base import same_value
from persona_sync.errors import PersonaSyncError
from persona_sync.logs import get_logger

log = get_logger(__name__)

SNAPSHOT_NAME = "snapshot.sqlite"
FRESH_SUFFIX = ".new"  # a full read's new snapshot, beside the old until it commits
SNAPSHOT_READERS = "snapshot.readers"  # shared by readers, taken whole to replace the file
READERS_WAIT = 30.0  # seconds a full read's commit waits for readers to close the file
SNAPSHOT_LOCK = "snapshot.lock"  # held while a run updates the snapshot (a RunLock)
SNAPSHOT_FORMAT = 3  # 2: employees is a rowid table; 3: plan items in a table of their own
MANAGER = "manager"
PYTHON = "{}.{}".format(*sys.version_info[:2])
CACHE_KIB = 32_768  # the page cache (see _connect)
#: a new file's page size (SQLite's default is 4 KiB): a full read appends 100,000 rows of
#: about 700 bytes, and with pages of 32 KiB it writes and indexes them in 0.30 s instead
#: of 0.39 s. A delta run's updates write 32 KiB pages into the WAL, which SQLite's
#: checkpoint (every 1,000 pages) keeps under about 32 MB
FRESH_PAGE_BYTES = 32_768
SEPARATOR = "\x1f"  # between a population's labels (persona ids never hold it)

#: attrs is a marshal blob (the fastest stdlib codec for dicts of strings, about 5x json);
#: a snapshot is rebuilt when the tool or Python version changes, so the format never
#: crosses versions. A rowid table with the key's index made after a full read's
#: load: entries come in the directory's order, and inserting them by key (a WITHOUT ROWID
#: table) scattered the writes over the whole tree, 1.5-3.7 s at 100,000 rows.
_EMPLOYEES = """
CREATE TABLE IF NOT EXISTS employees (
    key TEXT NOT NULL,
    id TEXT NOT NULL,
    dn TEXT NOT NULL,
    manager TEXT,
    attrs BLOB NOT NULL,
    depth INTEGER,
    reports INTEGER NOT NULL DEFAULT 0,
    population TEXT,
    changed INTEGER NOT NULL DEFAULT 0,
    written TEXT
)
"""
#: Each row's plan items (changes, foreign values, skipped changes), a row each, apart
#: from the employees: a plan reads the 10,000 items of a 100,000-row snapshot without
#: scanning the rows, in the plan's order (``sort`` is the DN case-folded, then the
#: scenario; an index, so that no sort copies the texts: 0.05 s -> 0.03 s), as the
#: canonical JSON the plan file and its checksum hold: a delta plan neither decodes nor
#: encodes them (0.35 s at 10,000 changes). ``fields``: a change marshalled, decoded when
#: the values are needed (an apply), its facts in the order the rule reads them.
_PLAN_ITEMS = """
CREATE TABLE IF NOT EXISTS plan_items (
    row INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    sort TEXT NOT NULL,
    scenario TEXT NOT NULL,
    move TEXT,
    text TEXT NOT NULL,
    fields BLOB
);
CREATE INDEX IF NOT EXISTS plan_items_row ON plan_items (row);
CREATE INDEX IF NOT EXISTS plan_items_order ON plan_items (kind, sort, scenario, row)
"""
_KEY_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS employees_key ON employees (key)"
_SCHEMA = (
    _EMPLOYEES
    + ";\n"
    + _KEY_INDEX
    + """;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outside (
    dn TEXT PRIMARY KEY, id TEXT NOT NULL, manager TEXT
) WITHOUT ROWID;
"""
    + _PLAN_ITEMS
)
#: A plan item as :meth:`Snapshot.keyed_items` returns it: its place in the plan's order
#: (kind, DN case-folded, scenario, row, its own rowid), then (move, text in UTF-8, fields).
KeyedItem = tuple[int, str, str, int, int, str | None, bytes, bytes | None]
#: One plan item as stored: (kind, DN case-folded, scenario, "old -> new" of a change or
#: None, canonical JSON, a change's fields or None); see :func:`persona_sync.plan.plan_items`.
PlanItem = tuple[int, str, str, str | None, str, bytes | None]

#: Feeds (persona_sync.feed_join): each row's join key and a digest of what it gives the
#: engine, to diff the next export against; and each employee's join value per feed (the
#: ``matches`` attribute, trimmed and case-folded), to find whom a changed row joins.
_FEEDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS feed_rows (
    feed TEXT NOT NULL, key TEXT NOT NULL, digest BLOB NOT NULL, PRIMARY KEY (feed, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS feed_links (
    feed TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (feed, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feed_links_value ON feed_links (feed, value);
"""


@dataclass(frozen=True, slots=True)
class Row:
    """One employee as the snapshot holds it."""

    key: str
    id: str
    dn: str
    attributes: Mapping[str, str]
    depth: int | None = None
    reports: int = 0


class Snapshot:
    """An open snapshot. Use as a context manager; ``close`` rolls back what was not
    committed."""

    def __init__(
        self, connection: sqlite3.Connection, path: Path | None, read_only: bool = False
    ) -> None:
        self._db = connection
        self.path = path
        self._old: sqlite3.Connection | None = None  # while a full read builds anew
        self._reading: int | None = None  # a read-only snapshot's share of the readers' lock
        # the rows whose plan items this transaction changed (None: any), by rowid or key,
        # and the token that names the items as they are now (see items_token)
        self._touched: set[int] | None = set()
        self._touched_keys: set[str] = set()
        self._named: set[str] = set()  # the tokens items_token made in this transaction
        self._token: str | None = None
        if not read_only:
            self._db.executescript(_SCHEMA)
            self._db.executescript(_FEEDS_SCHEMA)
        self._meta: dict[str, Any] = {
            name: json.loads(value) for name, value in self._db.execute("SELECT * FROM meta")
        }

    # --- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, state_dir: Path) -> tuple[Snapshot, str | None]:
        """The state folder's snapshot, and why it starts empty (None when it was usable)."""
        path = state_dir / SNAPSHOT_NAME
        state_dir.mkdir(parents=True, exist_ok=True)
        _remove(_fresh_path(path))  # a full read that never committed (the caller's lock)
        if not path.exists():
            return cls(_connect(path), path), "no snapshot yet"
        try:
            snapshot = cls(_connect(path), path)
            problem = snapshot._problem()
        except sqlite3.DatabaseError as exc:
            snapshot, problem = None, f"the snapshot was unreadable ({exc})"
        if problem is None and snapshot is not None:
            return snapshot, None
        if snapshot is not None:
            snapshot.close()
        log.info("snapshot_rebuilt", path=str(path), reason=problem)
        _remove(path)
        return cls(_connect(path), path), problem

    def rebuild(self) -> None:
        """Start again empty, for a full read: the file (found damaged) is deleted and
        made anew; what was not committed is dropped."""
        self._drop_fresh()
        self._touch(None)
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        if self.path is None:
            self._db = sqlite3.connect(":memory:", isolation_level=None)
        else:
            _remove(self.path)
            self._db = _connect(self.path)
        self._db.executescript(_SCHEMA)
        self._db.executescript(_FEEDS_SCHEMA)
        self._meta = {}

    @classmethod
    def in_memory(cls) -> Snapshot:
        """A throw-away snapshot (a plan that may not touch the state folder)."""
        return cls(sqlite3.connect(":memory:", isolation_level=None), None)

    @classmethod
    def open_read_only(cls, state_dir: Path) -> Snapshot | None:
        """The state folder's snapshot for reading (explain, status); None when there is
        none or it cannot be used (the next plan rebuilds it)."""
        path = state_dir / SNAPSHOT_NAME
        if not path.exists():
            return None
        reading = _readers_lock(state_dir, exclusive=False)
        try:
            connection = _connect_read_only(path)
            snapshot = cls(connection, path, read_only=True)
            snapshot._reading, reading = reading, None  # released by close()
            # no run follows that would meet the damage and rebuild (see _problem)
            if snapshot._problem(check=True) is None:
                return snapshot
            snapshot.close()
        except sqlite3.Error:
            pass
        finally:
            _unlock(reading)
        return None

    @classmethod
    def read_only_copy(cls, state_dir: Path) -> tuple[Snapshot, str | None]:
        """A private in-memory copy of the state folder's snapshot, to plan against while
        another run updates it (or when the folder cannot be written); never saved."""
        path = state_dir / SNAPSHOT_NAME
        if not path.exists():
            return cls.in_memory(), "no snapshot yet"
        reading = _readers_lock(state_dir, exclusive=False)
        try:
            source = _connect_read_only(path)
            try:
                target = sqlite3.connect(":memory:", isolation_level=None)
                source.backup(target)
            finally:
                source.close()
        finally:
            _unlock(reading)
        snapshot = cls(target, None)
        problem = snapshot._problem()
        if problem is not None:
            snapshot.close()
            return cls.in_memory(), problem
        return snapshot, None

    def _problem(self, check: bool = False) -> str | None:
        """Why the snapshot cannot be used as it is (None: it can).

        The header, format and versions only, unless ``check``: ``PRAGMA quick_check``
        reads every page (0.07-0.15 s at 100,000 rows, a quarter of a delta plan), and
        SQLite reports damage in the pages a run does read as SQLITE_CORRUPT on the spot,
        which :func:`damaged` recognises and the planner answers with a rebuild and a full
        read (see :func:`persona_sync.refresh.compute_plan`). Damage where no run reads
        changes no plan; a full read replaces the rows anyway.
        """
        if check and self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            return "the snapshot was damaged (SQLite quick_check failed)"
        if not self._meta:
            return "no snapshot yet" if self.count() == 0 else "the snapshot had no header"
        if self._meta.get("format") != SNAPSHOT_FORMAT:
            return (
                f"the snapshot has format {self._meta.get('format')!r}, this version reads "
                f"{SNAPSHOT_FORMAT}"
            )
        if self._meta.get("python") != PYTHON:
            return (
                f"the snapshot was made under Python {self._meta.get('python')}, this is {PYTHON}"
            )
        if self._meta.get("tool_version") != __version__:
            return (
                f"the snapshot was made by persona-sync {self._meta.get('tool_version')}, "
                f"this is {__version__}"
            )
        return None

    # --- header ---------------------------------------------------------------------------

    def get(self, name: str, default: Any = None) -> Any:
        return self._meta.get(name, default)

    def set_meta(self, **values: Any) -> None:
        self._meta.update(values)
        self._db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [(name, json.dumps(value, sort_keys=True)) for name, value in values.items()],
        )

    # --- transactions ---------------------------------------------------------------------

    def begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.set_meta(format=SNAPSHOT_FORMAT, tool_version=__version__, python=PYTHON)
        if self._items_changed():
            self.set_meta(items_token=self.items_token())
        self._untouch()
        if self._old is not None:
            self._swap_in()
        elif self._db.in_transaction:
            self._db.execute("COMMIT")

    def rollback(self) -> None:
        self._drop_fresh()
        self._untouch()
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._meta = {
            name: json.loads(value) for name, value in self._db.execute("SELECT * FROM meta")
        }

    def close(self) -> None:
        try:
            self.rollback()
        finally:
            self._db.close()
            _unlock(self._reading)
            self._reading = None

    def pending(self) -> int:
        """Employees with changes planned and not yet written."""
        return int(self._db.execute("SELECT count(*) FROM employees WHERE changed").fetchone()[0])

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- employees -----------------------------------------------------------------------

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM employees").fetchone()[0])

    def size_bytes(self) -> int:
        if self.path is None or not self.path.exists():
            return 0
        return sum(
            p.stat().st_size
            for p in (self.path, self.path.with_name(self.path.name + "-wal"))
            if p.exists()
        )

    def clear_rows(self) -> None:
        """Empty the employees and their plan items, and drop the indexes a full read's
        load maintains neither of: the key's is made again by :meth:`end_load`, the
        population's by the next count (:meth:`population`)."""
        self._db.execute("DROP INDEX IF EXISTS employees_key")
        self._db.execute("DROP INDEX IF EXISTS employees_population")
        self._db.execute("DELETE FROM employees")
        self._db.execute("DELETE FROM plan_items")
        self._touch(None)

    def put(self, rows: Iterable[Row]) -> None:
        """Insert or replace rows (attributes and position; decisions are recomputed)."""
        self._db.executemany(
            "INSERT INTO employees (key, id, dn, manager, attrs, depth, reports) "
            "VALUES (?,?,?,?,?,?,?) ON CONFLICT(key) DO UPDATE SET id=excluded.id, "
            "dn=excluded.dn, manager=excluded.manager, attrs=excluded.attrs, "
            "depth=excluded.depth, reports=excluded.reports",
            (
                (
                    r.key,
                    r.id,
                    r.dn,
                    r.attributes.get(MANAGER),
                    _pack(r.attributes),
                    r.depth,
                    r.reports,
                )
                for r in rows
            ),
        )

    # --- a full read: load in the directory's order, then index, then decide ---------------

    def start_load(self) -> None:
        """Start a full read: the managers outside the scope emptied; the rows are emptied
        by :meth:`clear_rows` before the first is written (reading an old snapshot's pages
        to free them fills the page cache, which a full read's evaluation worker shares).

        A snapshot in a file is built anew beside it instead (:meth:`_build_fresh`), in
        the transaction begun, and replaces it when that commits.
        """
        if self.path is not None and self._old is None and self._db.in_transaction:
            self._build_fresh()
        else:
            self._db.execute("DELETE FROM outside")

    def _build_fresh(self) -> None:
        """Go on in a new file (``snapshot.sqlite.new``) holding what a full read keeps of
        the old (the header and the feeds' rows; never the rows it replaces), written
        without a journal on disk or a sync until :meth:`commit`, which renames it over
        the old. The old file's transaction stays open meanwhile (no one else writes it).

        A full read rewrites every row: in the old file that meant deleting them (0.07 s
        at 100,000 rows), writing every page twice (the WAL, then the checkpoint at
        commit: 0.15 s) and syncing both. The rename is the commit; a crash before it
        leaves the old snapshot as it was, and the next open deletes the new file. Its
        rollback journal is in memory: a failing statement (a key read twice meets the
        unique index) still rolls back.
        """
        assert self.path is not None
        fresh = _fresh_path(self.path)
        _remove(fresh)
        db = sqlite3.connect(fresh, isolation_level=None)
        try:
            db.execute(f"PRAGMA page_size={FRESH_PAGE_BYTES}")
            db.execute("PRAGMA journal_mode=MEMORY")
            db.execute("PRAGMA synchronous=OFF")
            db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            db.executescript(_SCHEMA)
            db.executescript(_FEEDS_SCHEMA)
            db.execute("BEGIN IMMEDIATE")
            for table, columns in (("meta", 2), ("feed_rows", 3), ("feed_links", 3)):
                db.executemany(
                    f"INSERT INTO {table} VALUES ({','.join('?' * columns)})",
                    self._db.execute(f"SELECT * FROM {table}"),  # noqa: S608 - our names
                )
        except BaseException:
            db.close()
            _remove(fresh)
            raise
        self._old, self._db = self._db, db
        self._touch(None)  # every row is written anew

    def _swap_in(self) -> None:
        """Commit a new file: synced, then renamed over the old one, whose WAL and shared
        memory go first (they would be read as the new file's); then opened as usual.

        Readers (:meth:`open_read_only`, :meth:`read_only_copy`) hold a share of the
        readers' lock while their connection is open, and the swap takes it whole: a
        reader opening the old file between the sidecars' removal and the rename would
        make new ones that the new file then took for its own, and a reader's open
        connection keeps the old file's last one from checkpointing its WAL. When the
        rename fails, the old file stays in place and is opened again."""
        assert self.path is not None and self._old is not None
        path, fresh = self.path, _fresh_path(self.path)
        readers = _readers_lock(path.parent, exclusive=True, wait=READERS_WAIT)
        try:
            self._db.execute("COMMIT")
            self._db.close()
            descriptor = os.open(fresh, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            old, self._old = self._old, None
            self._db = old
            if old.in_transaction:
                old.execute("ROLLBACK")
            old.close()  # the last connection: SQLite checkpoints and deletes the WAL
            try:
                for sidecar in ("-wal", "-shm"):  # left if it could not (an error)
                    path.with_name(path.name + sidecar).unlink(missing_ok=True)
                sync_folder(path.parent)  # no power cut brings them back beside the new file
                with contextlib.suppress(OSError):
                    os.chmod(fresh, stat.S_IMODE(os.stat(path).st_mode))
                os.replace(fresh, path)
                sync_folder(path.parent)
            except OSError as exc:
                _remove(fresh)
                raise PersonaSyncError(
                    f"cannot save the snapshot {path}: {exc.strerror or exc}"
                ) from None
            finally:
                self._db = _connect(path)  # the new file, or the old one still in place
        finally:
            _unlock(readers)
    def _drop_fresh(self) -> None:
        """Give up a new file being built (what was not committed is dropped)."""
        if self._old is None:
            return
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._db, self._old = self._old, None
        if self.path is not None:
            _remove(_fresh_path(self.path))

    def load(self, rows: Iterable[tuple[str, str, str, str | None, bytes]]) -> None:
        """Append (key, id, dn, manager, packed attributes) rows, in the order read."""
        self._db.executemany(
            "INSERT INTO employees (key, id, dn, manager, attrs) VALUES (?,?,?,?,?)", rows
        )

    def end_load(self) -> bool:
        """Index the loaded rows by key; when a key came twice, the last row read wins (as
        in :meth:`put`). Returns whether the rows are not numbered 1, 2, ... in the order
        read (a row was dropped so), which callers that number them must know."""
        try:
            self._db.execute(_KEY_INDEX)
        except sqlite3.IntegrityError:
            self._db.execute(
                "DELETE FROM employees WHERE rowid NOT IN "
                "(SELECT max(rowid) FROM employees GROUP BY key)"
            )
            self._db.execute(_KEY_INDEX)
            return True
        low, high, count = self._db.execute(
            "SELECT min(rowid), max(rowid), count(*) FROM employees"
        ).fetchone()
        return count > 0 and (low, high) != (1, count)

    def loaded(self, size: int = 2000) -> Iterator[list[tuple[int, str, str, bytes]]]:
        """The loaded rows as (rowid, id, dn, packed attributes), in lists of up to
        ``size`` in the order read; each list is fetched whole (write between lists)."""
        last = 0
        while True:
            found = self._db.execute(
                "SELECT rowid, id, dn, attrs FROM employees WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (last, size),
            ).fetchall()
            if not found:
                return
            yield found
            last = found[-1][0]

    def decide_loaded(
        self,
        decided: Iterable[tuple[int | None, int, str | None, int, Sequence[PlanItem] | None, int]],
    ) -> None:
        """(depth, reports, population, changed, plan items or None, rowid) per row of a
        full read's load (which holds no plan items yet)."""
        decided = list(decided)
        self._touch(None)
        self._db.executemany(
            "UPDATE employees SET depth = ?, reports = ?, population = ?, changed = ? "
            "WHERE rowid = ?",
            ((d, r, p, c, rowid) for d, r, p, c, _, rowid in decided),
        )
        self._db.executemany(
            "INSERT INTO plan_items VALUES (?,?,?,?,?,?,?)",
            ((rowid, *item) for *_, items, rowid in decided if items for item in items),
        )

    def load_decided(
        self,
        rows: Iterable[
            tuple[int, str, str, str, str | None, bytes, int | None, int, str | None, int]
        ],
        items: Iterable[tuple[int, int, str, str, str | None, str, bytes | None]],
    ) -> None:
        """A full read's rows written once with their decisions, instead of :meth:`load`
        and :meth:`decide_loaded`: (rowid, key, id, dn, manager, packed attributes,
        depth, reports, population, changed) each, and the rows' plan items as (rowid,
        *item). Then :meth:`end_load`."""
        self._touch(None)
        self._db.executemany(
            "INSERT INTO employees (rowid, key, id, dn, manager, attrs, depth, reports, "
            "population, changed) VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        self._db.executemany("INSERT INTO plan_items VALUES (?,?,?,?,?,?,?)", items)

    @contextlib.contextmanager
    def small_cache(self, kib: int = 2048) -> Iterator[None]:
        """A page cache of ``kib`` while inside, its memory given back on the way in:
        appending rows needs next to none, and a forked process shares the pages this
        one does not write (a full read's evaluation worker)."""
        self._db.execute(f"PRAGMA cache_size=-{kib}")
        self._db.execute("PRAGMA shrink_memory")
        try:
            yield
        finally:
            self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")

    def links_loaded(self) -> Iterator[tuple[int, str, str, str | None]]:
        """(rowid, id, dn, manager link) of every row, in rowid order."""
        yield from self._db.execute("SELECT rowid, id, dn, manager FROM employees ORDER BY rowid")

    def remove(self, keys: Iterable[str]) -> int:
        wanted = [(k,) for k in keys]
        self._touch(self._rowids([k for (k,) in wanted]))
        self._db.executemany(
            "DELETE FROM plan_items WHERE row = (SELECT rowid FROM employees WHERE key = ?)",
            wanted,
        )
        cursor = self._db.executemany("DELETE FROM employees WHERE key = ?", wanted)
        return cursor.rowcount

    def keys(self) -> set[str]:
        return {key for (key,) in self._db.execute("SELECT key FROM employees")}

    def chunks(self, keys: Iterable[str] | None = None, size: int = 2000) -> Iterator[list[Row]]:
        """Rows in lists of up to ``size``: every row (in the order stored) when ``keys`` is
        None, else those keys'. Each list is fetched whole, so the caller may write between
        lists."""
        columns = "key, id, dn, attrs, depth, reports"
        query = f"SELECT {columns} FROM employees"
        unpack = marshal.loads
        if keys is None:
            last = 0
            while True:
                found = self._db.execute(
                    f"SELECT rowid, {columns} FROM employees WHERE rowid > ? "
                    "ORDER BY rowid LIMIT ?",
                    (last, size),
                ).fetchall()
                if not found:
                    return
                yield [Row(k, i, d, unpack(a), dp, r) for _, k, i, d, a, dp, r in found]
                last = found[-1][0]
        for part, marks in _parts(keys, min(size, 500)):
            found = self._db.execute(f"{query} WHERE key IN ({marks})", part).fetchall()
            yield [Row(k, i, d, unpack(a), dp, r) for k, i, d, a, dp, r in found]

    def rows(self, keys: Iterable[str] | None = None) -> Iterator[Row]:
        for chunk in self.chunks(keys):
            yield from chunk

    def row(self, key: str) -> Row | None:
        return next(self.rows([key]), None)

    def links(self) -> Iterator[tuple[str, str, str, str | None, int | None, int]]:
        """(key, id, dn, manager link, depth, reports) of every row: the org chart's input."""
        yield from self._db.execute("SELECT key, id, dn, manager, depth, reports FROM employees")

    def set_positions(self, positions: Iterable[tuple[int | None, int, str]]) -> None:
        self._db.executemany("UPDATE employees SET depth = ?, reports = ? WHERE key = ?", positions)

    def set_decisions(
        self, decided: Iterable[tuple[str | None, int, Sequence[PlanItem] | None, str]]
    ) -> None:
        """(population or None, changed 0/1, plan items or None, key) per employee: the
        items replace the row's."""
        decided = list(decided)
        self._touch((), [k for *_, k in decided])
        self._db.executemany(
            "UPDATE employees SET population = ?, changed = ? WHERE key = ?",
            ((p, c, k) for p, c, _, k in decided),
        )
        self._db.executemany(
            "DELETE FROM plan_items WHERE row = (SELECT rowid FROM employees WHERE key = ?)",
            ((k,) for *_, k in decided),
        )
        self._db.executemany(
            "INSERT INTO plan_items SELECT rowid, ?, ?, ?, ?, ?, ? FROM employees WHERE key = ?",
            ((*item, k) for _, _, items, k in decided if items for item in items),
        )

    def record_written(
        self,
        writes: Iterable[tuple[str, str, str | None, str]],
        settled: Iterable[tuple[str, str, str | None]] = (),
    ) -> set[str]:
        """What this tool wrote, as (key, attribute, value, run id): the rows now hold it,
        so its echo in the next delta is no change.

        ``settled``: (key, attribute, value) of changes now done, whose decision the caller
        knows did not move: the row's planned change of that attribute to that value leaves
        its plan items, which otherwise stand. Returns the keys of those that found no such
        planned change (the row was planned since, differently): evaluate them again. Rows
        are read and updated in batches of 500.
        """
        by_key: dict[str, list[tuple[str, str | None, str]]] = {}
        for key, attribute, value, run_id in writes:
            by_key.setdefault(key, []).append((attribute, value, run_id))
        done: dict[str, list[tuple[str, str | None]]] = {}
        for key, attribute, value in settled:
            done.setdefault(key, []).append((attribute, value))
        unsettled: set[str] = set()
        for part, marks in _parts(by_key):
            found = self._db.execute(
                f"SELECT rowid, key, attrs, written, changed FROM employees WHERE key IN ({marks})",
                part,
            ).fetchall()
            planned = self._planned_changes([rowid for rowid, key, *_ in found if key in done])
            updates = []
            gone: list[tuple[int]] = []
            for rowid, key, blob, stored, changed in found:
                attrs = marshal.loads(blob)
                written = json.loads(stored) if stored else {}
                for attribute, value, run_id in by_key[key]:
                    if value:
                        attrs[attribute] = value
                    else:
                        attrs.pop(attribute, None)
                    written[attribute] = {"value": value, "run": run_id}
                if key in done:
                    changes = planned.get(rowid, [])
                    cleared = _settle(changes, done[key])
                    if cleared is None:
                        unsettled.add(key)
                    else:
                        gone.extend((item,) for item in cleared)
                        changed = int(len(cleared) < len(changes))
                updates.append((_pack(attrs), _dump(written), changed, key))
            self._db.executemany(
                "UPDATE employees SET attrs = ?, written = ?, changed = ? WHERE key = ?", updates
            )
            self._db.executemany("DELETE FROM plan_items WHERE rowid = ?", gone)
            if gone:
                self._touch(rowid for rowid, key, *_ in found if key in done)
        return unsettled

    def _planned_changes(self, rows: list[int]) -> dict[int, list[tuple[int, dict[str, Any]]]]:
        """The planned changes of these rows: row -> [(item's rowid, change)]."""
        planned: dict[int, list[tuple[int, dict[str, Any]]]] = {}
        if not rows:
            return planned
        marks = ",".join("?" * len(rows))
        for item, row, fields in self._db.execute(
            f"SELECT rowid, row, fields FROM plan_items WHERE kind = 0 AND row IN ({marks}) "
            "ORDER BY rowid",
            rows,
        ):
            planned.setdefault(row, []).append((item, marshal.loads(fields)))
        return planned

    def written(self, key: str) -> dict[str, Any]:
        row = self._db.execute("SELECT written FROM employees WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def keys_of_dns(self, dns: Iterable[str]) -> dict[str, str]:
        """DN -> key for the given DNs (one scan; DNs are not indexed)."""
        wanted = set(dns)
        if not wanted:
            return {}
        return {
            dn: key for key, dn in self._db.execute("SELECT key, dn FROM employees") if dn in wanted
        }

    def find(self, wanted: str, attributes: Iterable[str]) -> list[Row]:
        """Rows whose id, DN or one of ``attributes`` equals ``wanted`` (ignoring case)."""
        folded = wanted.casefold()
        names = list(attributes)
        found = []
        for chunk in self.chunks():
            for row in chunk:
                if folded in (row.id.casefold(), row.dn.casefold()) or any(
                    (row.attributes.get(a) or "").casefold() == folded for a in names
                ):
                    found.append(row)
        return found

    def population(self) -> Iterator[tuple[str | None, int, int]]:
        """(population or None, changed, how many) grouped.

        Over an index of its own, made by the first call after a full read (whose load
        drops it): a delta plan then counts 100,000 rows in about 15 ms, not 130 ms of
        table scan, and the full read does not pay for the index.
        """
        self._db.execute(
            "CREATE INDEX IF NOT EXISTS employees_population ON employees (population, changed)"
        )
        yield from self._db.execute(
            "SELECT population, changed, count(*) FROM employees GROUP BY population, changed"
        )

    def keyed_items(self, rows: Collection[int] | None = None) -> list[KeyedItem]:
        """The plan items (every row's, or those of the rows with these rowids) with their
        place in the plan's order (see :data:`KeyedItem`), in that order."""
        columns = "kind, sort, scenario, row, rowid, move, CAST(text AS BLOB), fields"
        if rows is None:
            return self._db.execute(
                f"SELECT {columns} FROM plan_items ORDER BY kind, sort, scenario, row, rowid"
            ).fetchall()
        found: list[KeyedItem] = []
        for part, marks in _parts(rows):
            found += self._db.execute(
                f"SELECT {columns} FROM plan_items WHERE row IN ({marks})", part
            ).fetchall()
        found.sort(key=lambda item: item[:5])
        return found

    def items_token(self) -> str | None:
        """A name for the plan items as this connection sees them now: the one the last
        commit saved while this transaction has changed none of them, else a new one that
        the commit saves (a later change makes yet another). A copy of the items taken
        under a token (:class:`~persona_sync.item_cache.ItemCache`) is still the snapshot's
        while the saved token is that one; None: unnamed (a snapshot older than tokens)."""
        if not self._items_changed():
            saved = self._meta.get("items_token")
            return saved if isinstance(saved, str) else None
        if self._token is None:
            self._token = uuid.uuid4().hex
            self._named.add(self._token)
        return self._token

    def named_here(self, token: str | None) -> bool:
        """Whether :meth:`items_token` made ``token`` in this transaction: the items have
        changed since only in the rows :meth:`touched_rows` names."""
        return token is not None and token in self._named

    def touched_rows(self) -> set[int] | None:
        """The rowids of the rows whose plan items this transaction changed (an employee
        removed included); None: it may have changed any."""
        if self._touched is None:
            return None
        return self._touched | self._rowids(self._touched_keys)

    def _touch(self, rows: Iterable[int] | None, keys: Iterable[str] = ()) -> None:
        if rows is None:
            self._touched = None
        elif self._touched is not None:
            self._touched.update(rows)
            self._touched_keys.update(keys)
        self._token = None  # the items are others now

    def _untouch(self) -> None:
        self._touched, self._touched_keys, self._token = set(), set(), None
        self._named = set()

    def _items_changed(self) -> bool:
        return self._touched is None or bool(self._touched) or bool(self._touched_keys)

    def _rowids(self, keys: Collection[str]) -> set[int]:
        found: set[int] = set()
        for part, marks in _parts(keys):
            found.update(
                rowid
                for (rowid,) in self._db.execute(
                    f"SELECT rowid FROM employees WHERE key IN ({marks})", part
                )
            )
        return found

    def plan_items(self) -> list[tuple[int, str, str | None, bytes, bytes | None]]:
        """Every row's plan items as (kind, scenario, move, text in UTF-8, fields), by kind,
        then in the plan's order (the DN case-folded, the scenario; ties in the order
        stored). The texts as bytes: the plan file is written from them as they are."""
        return self._db.execute(
            "SELECT kind, scenario, move, CAST(text AS BLOB), fields FROM plan_items "
            "ORDER BY kind, sort, scenario, row, rowid"
        ).fetchall()

    # --- managers outside the scope ---------------------------------------------------------

    def put_outside(self, people: Iterable[tuple[str, str, str | None]]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO outside VALUES (?, ?, ?)", people)

    def replace_outside(self, people: Iterable[tuple[str, str, str | None]]) -> None:
        self._db.execute("DELETE FROM outside")
        self.put_outside(people)

    def outside(self) -> list[tuple[str, str, str | None]]:
        return list(self._db.execute("SELECT dn, id, manager FROM outside"))

    # --- feeds (persona_sync.feed_join) ------------------------------------------------------

    def feed_digests(self, feed: str) -> dict[str, bytes]:
        """The feed's rows as stored: join key -> digest."""
        return dict(self._db.execute("SELECT key, digest FROM feed_rows WHERE feed = ?", (feed,)))

    def put_feed_rows(
        self, feed: str, rows: Mapping[str, bytes], removed: Iterable[str] = ()
    ) -> None:
        """Insert or replace rows (join key -> digest) and delete ``removed`` keys."""
        self._db.executemany(
            "DELETE FROM feed_rows WHERE feed = ? AND key = ?", ((feed, k) for k in removed)
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO feed_rows VALUES (?, ?, ?)",
            ((feed, key, digest) for key, digest in rows.items()),
        )

    def drop_feed(self, feed: str) -> None:
        self._db.execute("DELETE FROM feed_rows WHERE feed = ?", (feed,))
        self._db.execute("DELETE FROM feed_links WHERE feed = ?", (feed,))

    def link_feed(
        self,
        feed: str,
        attribute: str,
        join: Callable[[str | None], str],
        keys: Iterable[str] | None = None,
    ) -> None:
        """Record each employee's join value for ``feed`` (``join`` of its ``attribute``):
        every row's (``keys`` None, after a full read) or those keys'. Rows are read in
        lists of 2,000 (bounded memory), each written before the next is read."""
        unpack = marshal.loads
        for found in self._key_attrs(feed, keys):
            self._db.executemany(
                "INSERT INTO feed_links VALUES (?, ?, ?)",
                [
                    (feed, key, value)
                    for key, blob in found
                    if (value := join(unpack(blob).get(attribute)))
                ],
            )

    def _key_attrs(
        self, feed: str, keys: Iterable[str] | None
    ) -> Iterator[list[tuple[str, bytes]]]:
        """(key, packed attributes) in lists, their links for ``feed`` deleted first."""
        if keys is None:
            self._db.execute("DELETE FROM feed_links WHERE feed = ?", (feed,))
            last = 0
            while True:
                found = self._db.execute(
                    "SELECT rowid, key, attrs FROM employees WHERE rowid > ? "
                    "ORDER BY rowid LIMIT 2000",
                    (last,),
                ).fetchall()
                if not found:
                    return
                last = found[-1][0]
                yield [(key, blob) for _rowid, key, blob in found]
        wanted = sorted(set(keys or ()))
        self._db.executemany(
            "DELETE FROM feed_links WHERE feed = ? AND key = ?", ((feed, k) for k in wanted)
        )
        for part, marks in _parts(wanted):
            yield self._db.execute(
                f"SELECT key, attrs FROM employees WHERE key IN ({marks})", part
            ).fetchall()

    def joined_to(self, feed: str, values: Iterable[str]) -> set[str]:
        """Keys of the employees in the snapshot whose join value for ``feed`` is one of
        ``values`` (the links of employees removed since are left for the next full read
        to drop)."""
        keys: set[str] = set()
        for part, marks in _parts(values):
            keys.update(
                key
                for (key,) in self._db.execute(
                    "SELECT l.key FROM feed_links l JOIN employees e ON e.key = l.key "
                    f"WHERE l.feed = ? AND l.value IN ({marks})",
                    [feed, *part],
                )
            )
        return keys

    def joined_values(self, feed: str) -> set[str]:
        """The join values of ``feed`` that some employee in the snapshot holds."""
        return {
            value
            for (value,) in self._db.execute(
                "SELECT DISTINCT l.value FROM feed_links l JOIN employees e ON e.key = l.key "
                "WHERE l.feed = ?",
                (feed,),
            )
        }

    def unjoined(self, feed: str, examples: int) -> tuple[int, list[str]]:
        """In-scope employees that no row of ``feed`` joins: how many, and the first ids."""
        query = (
            "FROM employees e WHERE e.population IS NOT NULL AND NOT EXISTS ("
            "SELECT 1 FROM feed_links l JOIN feed_rows r ON r.feed = l.feed AND r.key = l.value "
            "WHERE l.feed = ? AND l.key = e.key)"
        )
        count = int(self._db.execute(f"SELECT count(*) {query}", (feed,)).fetchone()[0])
        first = [
            id_
            for (id_,) in self._db.execute(
                f"SELECT e.id {query} ORDER BY e.id LIMIT ?", (feed, examples)
            )
        ]
        return count, first


def labels_text(population: tuple[str, ...] | None) -> str | None:
    """A population's labels (one per scenario; None: out of scope) as the population
    column holds them."""
    return None if population is None else SEPARATOR.join(population)


def damaged(exc: sqlite3.Error) -> bool:
    """Whether an error says the snapshot file is damaged (SQLITE_CORRUPT, SQLITE_NOTADB),
    not e.g. busy or out of disk space: only damage is answered with a rebuild."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


def _remove(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


def _parts(values: Iterable[Any], size: int = 500) -> Iterator[tuple[list[Any], str]]:
    """The distinct ``values`` sorted, in lists of up to ``size`` (far below SQLite's bound
    on a statement's variables), each with the ``?,?,...`` of its ``IN (...)``."""
    wanted = sorted(set(values))
    for start in range(0, len(wanted), size):
        part = wanted[start : start + size]
        yield part, ",".join("?" * len(part))


def _readers_lock(state_dir: Path, exclusive: bool, wait: float | None = None) -> int | None:
    """A descriptor holding the readers' lock (:data:`SNAPSHOT_READERS`), shared or whole;
    None when its file cannot be opened (a reader without the right to make it: it then
    reads unlocked). ``wait``: give up after so many seconds (a process holding a reader
    of its own would wait for itself) with an error that says so."""
    lock = state_dir / SNAPSHOT_READERS
    try:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        try:
            descriptor = os.open(lock, os.O_RDONLY)
        except OSError:
            return None
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    try:
        if wait is None:
            fcntl.flock(descriptor, mode)
            return descriptor
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
                return descriptor
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise PersonaSyncError(
                        f"cannot replace the snapshot in {state_dir}: a reader (explain, "
                        f"status, a plan on a copy) kept it open for {wait:g} s; run again"
                    ) from None
                time.sleep(0.01)
    except BaseException:
        os.close(descriptor)
        raise


def _unlock(descriptor: int | None) -> None:
    if descriptor is not None:
        os.close(descriptor)  # closing the descriptor releases its flock


def _fresh_path(path: Path) -> Path:
    return path.with_name(path.name + FRESH_SUFFIX)


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    # a delta's writes go by key, scattered over the table; a full read builds the key's
    # index: a 32 MB page cache halves what either costs at 100,000 rows
    connection.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    return connection


def _connect_read_only(path: Path) -> sqlite3.Connection:
    uri = f"{path.resolve().as_uri()}?mode=ro"
    return sqlite3.connect(uri, uri=True, isolation_level=None)


def _settle(
    changes: list[tuple[int, dict[str, Any]]], done: list[tuple[str, str | None]]
) -> list[int] | None:
    """The plan items (by rowid) of a row's planned ``changes`` that the changes ``done``
    (attribute in lower case, value written) settle; None when one of those is not
    planned (the row was planned since, differently)."""
    left = list(changes)
    settled = []
    for attribute, value in done:
        match = next(
            (
                planned
                for planned in left
                if planned[1]["attribute"].lower() == attribute
                and same_value(planned[1]["new"], value)
            ),
            None,
        )
        if match is None:
            return None
        left.remove(match)
        settled.append(match[0])
    return settled


def _pack(value: Any) -> bytes:
    if isinstance(value, Mapping) and type(value) is not dict:
        value = dict(value)
    return marshal.dumps(value)


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
