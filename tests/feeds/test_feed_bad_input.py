"""A bad feed through the CLI: one located message, exit 1, and nothing written anywhere
(the directory, the snapshot, the plan file)."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from persona_sync.snapshot import SNAPSHOT_NAME
from tests.feeds.conftest import FeedWorkspace

Run = Callable[..., Result]
COMMANDS = [("plan", "-o", "plan.json"), ("sync",), ("sync", "--delta"), ("plan", "--delta")]


def snapshot_state(workspace: FeedWorkspace) -> list[tuple[str, str]]:
    with sqlite3.connect(workspace.state / SNAPSHOT_NAME) as db:
        return sorted(db.execute("SELECT name, value FROM meta"))


def assert_refused(workspace: FeedWorkspace, run_cli: Run, message: str) -> None:
    before = (workspace.directory.read_bytes(), snapshot_state(workspace))
    for command in COMMANDS:
        result = run_cli(*command)
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", message), command
        assert (workspace.directory.read_bytes(), snapshot_state(workspace)) == before
        assert not (workspace.root / "plan.json").exists()


@pytest.fixture
def synced(workspace: FeedWorkspace, run_cli: Run) -> FeedWorkspace:
    """The workspace after a first sync: a snapshot with the feed, nothing pending."""
    assert run_cli("sync", "-q").exit_code == 0
    return workspace


def test_a_missing_feed_file(synced: FeedWorkspace, run_cli: Run) -> None:
    synced.feed.unlink()
    assert_refused(synced, run_cli, f"error: feed hr: {synced.feed}: no such file\n")


def test_a_folder_where_the_feed_should_be(synced: FeedWorkspace, run_cli: Run) -> None:
    synced.feed.unlink()
    synced.feed.mkdir()
    assert_refused(
        synced, run_cli, f"error: feed hr: {synced.feed}: is a folder, expected a file\n"
    )


def test_an_unreadable_feed_file(
    synced: FeedWorkspace, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Path.read_bytes

    def refuse(path: Path) -> bytes:
        if path == synced.feed:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert_refused(
        synced, run_cli, f"error: feed hr: cannot read {synced.feed}: Permission denied\n"
    )


def test_a_feed_without_its_key_column(synced: FeedWorkspace, run_cli: Run) -> None:
    synced.feed.write_text("id,grade\n1001,G10\n", encoding="utf-8")
    assert_refused(
        synced, run_cli, f"{synced.feed}:1:1: no key column 'employee_id' (columns: id, grade)\n"
    )


def test_a_duplicate_key_names_the_second_line(synced: FeedWorkspace, run_cli: Run) -> None:
    synced.edit_feed("1003,G4,hybrid\n", "1003,G4,hybrid\n 1001 ,G2,onsite\n")
    assert_refused(
        synced,
        run_cli,
        f"{synced.feed}:5:1: duplicate key '1001' in column 'employee_id' (first on line 2)\n",
    )


def test_a_malformed_csv_line(synced: FeedWorkspace, run_cli: Run) -> None:
    synced.edit_feed("1003,G4,hybrid\n", '1003,"G4"x,hybrid\n')
    assert_refused(synced, run_cli, f"{synced.feed}:4:1: malformed CSV: ',' expected after '\"'\n")


def test_a_row_with_too_many_fields(synced: FeedWorkspace, run_cli: Run) -> None:
    synced.edit_feed("1003,G4,hybrid\n", "1003,G4,hybrid,extra\n")
    assert_refused(synced, run_cli, f"{synced.feed}:4:1: 4 fields where the header has 3\n")


def test_invalid_utf8(synced: FeedWorkspace, run_cli: Run) -> None:
    data = synced.feed.read_bytes().replace(b"1003,G4,hybrid", b"1003,G\xff4,hybrid")
    synced.feed.write_bytes(data)
    assert_refused(synced, run_cli, f"{synced.feed}:4:7: not valid UTF-8 (byte 0xff)\n")


def test_apply_with_a_broken_feed_writes_nothing(workspace: FeedWorkspace, run_cli: Run) -> None:
    assert run_cli("plan", "-q", "-o", "plan.json").exit_code == 2
    before = workspace.directory.read_bytes()
    workspace.feed.write_text("employee_id,grade\n1001,G1\n1001,G2\n", encoding="utf-8")
    result = run_cli("apply", "plan.json")
    assert (result.exit_code, result.stderr) == (
        1,
        f"{workspace.feed}:3:1: duplicate key '1001' in column 'employee_id' (first on line 2)\n",
    )
    assert workspace.directory.read_bytes() == before
    assert not (workspace.state / "journal").exists() or not list(
        (workspace.state / "journal").iterdir()
    )
