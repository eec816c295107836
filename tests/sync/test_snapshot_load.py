"""The snapshot's full-read load: rows in the order read, the key's index made after, a
key read twice kept once (the last), and snapshots of the previous layout rebuilt."""

from __future__ import annotations

import errno
import fcntl
import json
import marshal
import os
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from persona_sync import snapshot
from persona_sync.errors import PersonaSyncError
from persona_sync.snapshot import (
    FRESH_SUFFIX,
    SNAPSHOT_FORMAT,
    SNAPSHOT_NAME,
    SNAPSHOT_READERS,
    Row,
    Snapshot,
)
from tests.sync.conftest import Workspace

Run = Callable[..., Any]


def _row(key: str, dn: str, title: str) -> tuple[str, str, str, str | None, bytes]:
    return (key, key, dn, None, marshal.dumps({"title": title}))


def test_a_full_load_keeps_the_order_read_and_indexes_the_keys() -> None:
    with Snapshot.in_memory() as store:
        store.begin()
        store.start_load()
        store.clear_rows()
        store.load([_row("k2", "cn=b", "two"), _row("k1", "cn=a", "one")])
        assert store.end_load() is False
        assert [id_ for _, id_, *_ in next(store.loaded())] == ["k2", "k1"]
        item = (0, "cn=a", "persona", "(empty) -> p", '{"dn":"cn=a"}', b"")
        store.decide_loaded([(1, 0, "p", 0, None, 1), (0, 1, "p", 1, [item], 2)])
        assert [(r.key, r.depth, r.reports) for r in store.rows(["k1", "k2"])] == [
            ("k1", 0, 1),
            ("k2", 1, 0),
        ]
        assert store.pending() == 1
        assert store.plan_items() == [(0, "persona", "(empty) -> p", b'{"dn":"cn=a"}', b"")]
        # the index is back: an upsert by key replaces the row
        row = store.row("k1")
        assert row is not None
        store.put([row])
        assert store.count() == 2


def test_rows_not_numbered_from_one_are_said_so() -> None:
    with Snapshot.in_memory() as store:
        store.begin()
        store.start_load()
        store.clear_rows()
        store.load([_row("k1", "cn=a", "one"), _row("k2", "cn=b", "two")])
        store._db.execute("UPDATE employees SET rowid = rowid + 10")
        assert store.end_load() is True


def test_a_key_read_twice_keeps_its_last_row() -> None:
    with Snapshot.in_memory() as store:
        store.begin()
        store.start_load()
        store.clear_rows()
        store.load([_row("k1", "cn=a", "old"), _row("k2", "cn=b", "b"), _row("k1", "cn=a", "new")])
        assert store.end_load() is True
        assert store.count() == 2
        row = store.row("k1")
        assert row is not None and row.attributes == {"title": "new"}


def test_a_snapshot_of_the_previous_layout_is_rebuilt(workspace: Workspace, run_cli: Run) -> None:
    assert run_cli("plan", "-q").exit_code == 2
    with sqlite3.connect(workspace.state / SNAPSHOT_NAME) as db:
        db.execute("UPDATE meta SET value = '1' WHERE name = 'format'")
    result = run_cli("plan", "--delta", "--format", "json")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"read: the snapshot has format 1, this version reads {SNAPSHOT_FORMAT}: full read; "
        "6 entries"
    )


def test_an_entry_read_twice_is_planned_once_as_last_read(
    workspace: Workspace, run_cli: Run
) -> None:
    # The same DN twice (the file's key is the normalized DN): the org chart and the plan
    # are those of a directory holding the second entry only; the first one's manager
    # link (to Legacy) counts for nobody.
    first_boss = (
        "dn: CN=Boss,OU=People,DC=example,DC=com\nchangetype: add\ncn: Boss\n"
        "sAMAccountName: boss\ntitle: Chief Executive Officer\n"
        "physicalDeliveryOfficeName: Munich HQ\nuserAccountControl: 512\n"
    )
    assert first_boss in workspace.text()
    once = workspace.text().replace(
        "dn: CN=Gone,",
        "dn: CN=Boss,OU=People,DC=example,DC=com\nsAMAccountName: boss\n"
        "title: Chief Executive Officer\n\ndn: CN=Gone,",
    )
    twice = once.replace(
        first_boss, first_boss + "manager: CN=Legacy,OU=People,DC=example,DC=com\n"
    )
    once = once.replace(first_boss + "\n", "")
    workspace.directory.write_text(twice, encoding="utf-8")
    doubled = run_cli("plan", "--format", "json")
    workspace.directory.write_text(once, encoding="utf-8")
    single = run_cli("plan", "--format", "json")
    assert doubled.exit_code == single.exit_code
    first, second = json.loads(doubled.stdout), json.loads(single.stdout)
    for plan in (first, second):
        plan.pop("checksum")
        plan["provenance"].pop("created")
        plan["summary"].pop("read")  # 7 entries read against 6
    assert first == second


# --- a full read in a file builds a new one beside it -------------------------------------


def _saved(state: Path, rows: list[tuple[str, str, str, str | None, bytes]]) -> None:
    """A snapshot in ``state`` holding ``rows``, a header value and a feed row, committed."""
    store, _ = Snapshot.open(state)
    with store:
        store.begin()
        store.put_feed_rows("hr", {"jsmith": b"digest"})
        store.set_meta(note="kept")
        store.start_load()
        store.clear_rows()
        store.load(rows)
        store.end_load()
        store.commit()


def _titles(path: Path) -> list[str]:
    """The titles the committed file holds, read by a connection of its own."""
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        return [marshal.loads(a)["title"] for (a,) in db.execute("SELECT attrs FROM employees")]
    finally:
        db.close()


def _page_size(path: Path) -> int:
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        size: int = db.execute("PRAGMA page_size").fetchone()[0]
        return size
    finally:
        db.close()


def test_a_full_read_builds_a_new_file_and_the_commit_puts_it_in_place(tmp_path: Path) -> None:
    _saved(tmp_path, [_row("k1", "cn=a", "old")])
    path, fresh = tmp_path / SNAPSHOT_NAME, tmp_path / (SNAPSHOT_NAME + FRESH_SUFFIX)
    before = path.stat().st_ino
    assert _page_size(path) == 32_768  # _saved's full load made it so
    store, problem = Snapshot.open(tmp_path)
    with store:
        assert problem is None
        store.begin()
        store.start_load()
        store.clear_rows()
        store.load([_row("k2", "cn=b", "new"), _row("k3", "cn=c", "newer")])
        assert store.end_load() is False
        assert fresh.exists()
        assert _titles(path) == ["old"]  # untouched until the commit
        store.commit()
        assert not fresh.exists()
        assert path.stat().st_ino != before
        assert _titles(path) == ["new", "newer"]
        # in pages of 32 KiB (the first file, made by open, has SQLite's 4 KiB)
        assert _page_size(path) == snapshot.FRESH_PAGE_BYTES == 32_768
        # what a full read keeps of the old snapshot: its header and the feeds' rows
        assert store.get("note") == "kept"
        assert store.feed_digests("hr") == {"jsmith": b"digest"}
        store.begin()  # the file is opened as usual again: a delta's upsert by key
        store.put([Row("k2", "k2", "cn=b", {"title": "again"})])
        store.commit()
    assert _titles(path) == ["again", "newer"]
    reopened, problem = Snapshot.open(tmp_path)
    with reopened:
        assert problem is None
        assert reopened.get("note") == "kept"
        assert reopened.feed_digests("hr") == {"jsmith": b"digest"}


def test_a_full_read_rolled_back_leaves_the_old_snapshot(tmp_path: Path) -> None:
    _saved(tmp_path, [_row("k1", "cn=a", "old")])
    fresh = tmp_path / (SNAPSHOT_NAME + FRESH_SUFFIX)
    store, _ = Snapshot.open(tmp_path)
    with store:
        store.begin()
        store.start_load()
        store.clear_rows()
        store.load([_row("k2", "cn=b", "new")])
        store.rollback()
        assert not fresh.exists()
        assert [r.key for r in store.rows()] == ["k1"]
    assert _titles(tmp_path / SNAPSHOT_NAME) == ["old"]


def test_a_new_file_left_by_a_crash_is_removed_by_the_next_open(tmp_path: Path) -> None:
    _saved(tmp_path, [_row("k1", "cn=a", "old")])
    fresh = tmp_path / (SNAPSHOT_NAME + FRESH_SUFFIX)
    fresh.write_bytes(b"half a build")
    store, problem = Snapshot.open(tmp_path)
    with store:
        assert problem is None
        assert not fresh.exists()
        assert [r.key for r in store.rows()] == ["k1"]


def test_a_key_read_twice_into_a_new_file_keeps_its_last_row(tmp_path: Path) -> None:
    _saved(
        tmp_path, [_row("k1", "cn=a", "old"), _row("k2", "cn=b", "b"), _row("k1", "cn=a", "new")]
    )
    store, _ = Snapshot.open(tmp_path)
    with store:
        assert store.count() == 2
        row = store.row("k1")
        assert row is not None and row.attributes == {"title": "new"}
    assert sorted(_titles(tmp_path / SNAPSHOT_NAME)) == ["b", "new"]


def _full_load(store: Snapshot, title: str) -> None:
    store.begin()
    store.start_load()
    store.clear_rows()
    store.load([_row("k2", "cn=b", title)])
    store.end_load()


def test_a_rename_that_fails_leaves_the_old_snapshot_open_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _saved(tmp_path, [_row("k1", "cn=a", "old")])
    store, _ = Snapshot.open(tmp_path)
    with store:
        _full_load(store, "new")

        def full(source: object, target: object) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(snapshot.os, "replace", full)
        with pytest.raises(PersonaSyncError) as caught:
            store.commit()
        assert str(caught.value) == (
            f"cannot save the snapshot {tmp_path / SNAPSHOT_NAME}: No space left on device"
        )
        monkeypatch.undo()
        assert not (tmp_path / (SNAPSHOT_NAME + FRESH_SUFFIX)).exists()
        assert [r.key for r in store.rows()] == ["k1"]  # the old file, open again
        store.begin()
        store.put([Row("k3", "k3", "cn=c", {"title": "later"})])
        store.commit()
    assert _titles(tmp_path / SNAPSHOT_NAME) == ["old", "later"]


def _free(lock: Path, mode: int) -> bool:
    """Whether ``lock`` may be taken in ``mode`` now (by a descriptor of its own)."""
    descriptor = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)


def test_readers_share_a_lock_that_the_swap_takes_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _saved(tmp_path, [_row("k1", "cn=a", "old")])
    lock = tmp_path / SNAPSHOT_READERS
    reader = Snapshot.open_read_only(tmp_path)
    assert reader is not None
    assert not _free(lock, fcntl.LOCK_EX) and _free(lock, fcntl.LOCK_SH)
    reader.close()
    assert _free(lock, fcntl.LOCK_EX)
    seen: list[bool] = []
    real = os.replace

    def replace(source: str, target: str) -> None:
        seen.append(_free(lock, fcntl.LOCK_SH))
        real(source, target)

    monkeypatch.setattr(snapshot.os, "replace", replace)
    store, _ = Snapshot.open(tmp_path)
    with store:
        _full_load(store, "new")
        store.commit()
    assert seen == [False]  # no reader could open the file during the rename
    assert _free(lock, fcntl.LOCK_EX)


def test_a_reader_that_stays_stops_the_swap_and_the_old_snapshot_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _saved(tmp_path, [_row("k1", "cn=a", "old")])
    monkeypatch.setattr(snapshot, "READERS_WAIT", 0.05)
    reader = Snapshot.open_read_only(tmp_path)
    assert reader is not None
    store, _ = Snapshot.open(tmp_path)
    with store, reader:
        _full_load(store, "new")
        with pytest.raises(PersonaSyncError) as caught:
            store.commit()
        assert str(caught.value) == (
            f"cannot replace the snapshot in {tmp_path}: a reader (explain, status, a plan "
            "on a copy) kept it open for 0.05 s; run again"
        )
        store.rollback()
        assert [r.key for r in store.rows()] == ["k1"]
        assert [r.key for r in reader.rows()] == ["k1"]
    assert not (tmp_path / (SNAPSHOT_NAME + FRESH_SUFFIX)).exists()
    assert _titles(tmp_path / SNAPSHOT_NAME) == ["old"]


def test_the_new_file_keeps_the_old_ones_mode(tmp_path: Path) -> None:
    _saved(tmp_path, [_row("k1", "cn=a", "old")])
    (tmp_path / SNAPSHOT_NAME).chmod(0o640)
    store, _ = Snapshot.open(tmp_path)
    with store:
        _full_load(store, "new")
        store.commit()
    assert stat.S_IMODE((tmp_path / SNAPSHOT_NAME).stat().st_mode) == 0o640
    assert _titles(tmp_path / SNAPSHOT_NAME) == ["new"]
