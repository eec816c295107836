"""A workspace with an HR feed: the sync tests' awkward LDIF with employee numbers, the
default rules (whose seniority reads hr.grade first) and an HR export joined on them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_RULES
from tests.sync.conftest import CONFIG, DIRECTORY, Workspace

NUMBERS = {"boss": "1001", "jsmith": "1002", "jmuller": "1003", "gone": "1005"}

# jsmith (a nurse: clinical) is graded G9, which makes her a VIP; 9999 matches nobody; the
# legacy account has no employee number, so no row.
HR_EXPORT = """\
employee_id,grade,work_arrangement
1001,G10,onsite
1002,G9,remote
1003,G4,hybrid
1005,G2,onsite
9999,G5,remote
"""

FEEDS = """\
feeds:
  hr: {path: hr-export.csv, key: employee_id, matches: employeeNumber}
"""


def numbered(directory: str) -> str:
    """The LDIF with an employeeNumber after each numbered account's sAMAccountName."""
    for account, number in NUMBERS.items():
        line = f"sAMAccountName: {account}\n"
        directory = directory.replace(line, f"{line}employeeNumber: {number}\n", 1)
    return directory


class FeedWorkspace(Workspace):
    @property
    def feed(self) -> Path:
        return self.root / "hr-export.csv"

    def edit_feed(self, old: str, new: str) -> None:
        text = self.feed.read_text(encoding="utf-8")
        assert old in text
        self.feed.write_text(text.replace(old, new, 1), encoding="utf-8")

    def edit(self, old: str, new: str) -> None:
        text = self.text()
        assert old in text
        self.directory.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[FeedWorkspace]:
    ws = FeedWorkspace(tmp_path)
    ws.directory.write_text(numbered(DIRECTORY), encoding="utf-8")
    ws.feed.write_text(HR_EXPORT, encoding="utf-8")
    ws.config.write_text(CONFIG.format(rules=DEFAULT_RULES) + FEEDS, encoding="utf-8")
    # not monkeypatch.chdir: tests call monkeypatch.undo() to end their own patches
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield ws
    finally:
        os.chdir(cwd)
