"""The file directory's write contracts: compare-and-swap with the one "same value" rule,
"unchanged" for values already there, cancel, read back, and no lost update when another
program saves the file while a run writes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from persona_sync.directory import files
from persona_sync.directory.base import GONE, Cancel, Change, DirectoryAborted
from persona_sync.directory.files import FileDirectory

LDIF = """\
dn: CN=Smith\\, John,OU=People,DC=example,DC=com
objectClass: user
cn: Smith, John
sAMAccountName: jsmith
personaName: Engineer

dn: CN=Boss,OU=People,DC=example,DC=com
objectClass: user
cn: Boss
sAMAccountName: boss
personaName: VIP

dn: CN=New,OU=People,DC=example,DC=com
objectClass: user
cn: New
sAMAccountName: new
"""

SMITH = "CN=Smith\\, John,OU=People,DC=example,DC=com"
BOSS = "CN=Boss,OU=People,DC=example,DC=com"
NEW = "CN=New,OU=People,DC=example,DC=com"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    file = tmp_path / "people.ldif"
    file.write_text(LDIF, encoding="utf-8")
    return file


def directory(path: Path) -> FileDirectory:
    return FileDirectory(path, id_attributes=["sAMAccountName"])


def change(dn: str, old: str | None, new: str | None) -> Change:
    return Change("someone", dn, "personaName", old, new)


def test_a_value_already_there_in_another_case_is_unchanged_and_nothing_is_written(
    path: Path,
) -> None:
    inode = path.stat().st_ino
    [result] = directory(path).apply([change(BOSS, None, "vip")])
    assert (result.status, result.message, result.found) == (
        "unchanged",
        "already had the value",
        "VIP",
    )
    assert path.read_text(encoding="utf-8") == LDIF
    assert path.stat().st_ino == inode  # not even rewritten


def test_the_old_value_matches_ignoring_case(path: Path) -> None:
    [result] = directory(path).apply([change(SMITH, "engineer", "clinician")])
    assert result.status == "applied"
    assert "personaName: clinician\n" in path.read_text(encoding="utf-8")


def test_an_empty_csv_field_is_the_empty_old_value(tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("DN,sAMAccountName,personaName\ncn=a,a,\n", encoding="utf-8")
    [result] = FileDirectory(csv, id_attributes=["sAMAccountName"]).apply(
        [change("cn=a", None, "staff")]
    )
    assert result.status == "applied"
    assert csv.read_text(encoding="utf-8") == "DN,sAMAccountName,personaName\ncn=a,a,staff\n"


def test_a_value_changed_since_the_plan_is_a_conflict(path: Path) -> None:
    [result] = directory(path).apply([change(SMITH, "knowledge-worker", "vip")])
    assert (result.status, result.message, result.found) == (
        "conflict",
        "value changed since the plan: expected 'knowledge-worker', found 'Engineer'",
        "Engineer",
    )
    assert path.read_text(encoding="utf-8") == LDIF


def test_a_change_is_found_under_another_spelling_of_its_dn(path: Path) -> None:
    # A plan made against slapd's spelling of the DN, applied to the file's.
    [result] = directory(path).apply(
        [change(r"cn=smith\2C john,ou=people,dc=EXAMPLE,dc=com", "Engineer", "vip")]
    )
    assert result.status == "applied"


def test_an_entry_gone_from_the_file_is_a_conflict(path: Path) -> None:
    [result] = directory(path).apply([change("CN=Nobody,DC=example,DC=com", None, "vip")])
    assert (result.status, result.message) == ("conflict", "entry no longer in the file")


def test_cancel_before_the_write_skips_everything(path: Path) -> None:
    cancel = Cancel()
    cancel.request("SIGTERM")
    changes = [change(SMITH, "Engineer", "vip"), change(NEW, None, "staff")]
    results = directory(path).apply(changes, cancel)
    assert [(r.change, r.status, r.message) for r in results] == [
        (c, "skipped", "not sent: run interrupted") for c in changes
    ]
    assert path.read_text(encoding="utf-8") == LDIF


def test_cancel_during_the_write_lets_it_finish(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The whole batch is one rename: a signal arriving while the file is written changes
    # nothing, the write is done and reported as applied.
    cancel = Cancel()
    check = files.unchanged_since_read

    def signal_arrives(file: Path, read: bytes) -> bool:
        cancel.request("SIGTERM")
        return check(file, read)

    monkeypatch.setattr(files, "unchanged_since_read", signal_arrives)
    results = directory(path).apply([change(NEW, None, "staff")], cancel)
    assert [r.status for r in results] == ["applied"]
    assert "sAMAccountName: new\npersonaName: staff\n" in path.read_text(encoding="utf-8")


def test_read_back(path: Path) -> None:
    changes = [
        change(SMITH, None, "x"),
        change(r"cn=boss,ou=people,dc=example,dc=com", None, "x"),
        change(NEW, None, "x"),
        change("CN=Nobody,DC=example,DC=com", None, "x"),
    ]
    assert directory(path).read_back(changes) == ["Engineer", "VIP", None, GONE]


def other_program_saves(monkeypatch: pytest.MonkeyPatch, edits: list[tuple[str, str]]) -> list[int]:
    """Between persona-sync's read and its rename, another program saves the file, once
    per edit (old text -> new text), on the first checks; returns the checks' count."""
    check = files.unchanged_since_read
    calls: list[int] = []

    def saved_meanwhile(file: Path, read: bytes) -> bool:
        calls.append(1)
        if len(calls) <= len(edits):
            old, new = edits[len(calls) - 1]
            text = file.read_text(encoding="utf-8")
            assert old in text
            file.write_text(text.replace(old, new), encoding="utf-8")
        return check(file, read)

    monkeypatch.setattr(files, "unchanged_since_read", saved_meanwhile)
    return calls


def test_an_edit_saved_by_another_program_during_the_write_is_kept(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = other_program_saves(monkeypatch, [("cn: Boss\n", "cn: Boss\ntitle: CEO\n")])
    results = directory(path).apply([change(NEW, None, "staff")])
    assert [r.status for r in results] == ["applied"]
    assert len(calls) == 2  # the first pass saw the edit and started over
    assert path.read_text(encoding="utf-8") == LDIF.replace(
        "cn: Boss\n", "cn: Boss\ntitle: CEO\n"
    ).replace("sAMAccountName: new\n", "sAMAccountName: new\npersonaName: staff\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["people.ldif"]


def test_a_value_set_by_another_program_during_the_write_becomes_a_conflict(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_program_saves(monkeypatch, [("personaName: Engineer\n", "personaName: tech-support\n")])
    results = directory(path).apply([change(SMITH, "Engineer", "vip"), change(NEW, None, "staff")])
    assert [(r.status, r.message) for r in results] == [
        ("conflict", "value changed since the plan: expected 'Engineer', found 'tech-support'"),
        ("applied", ""),
    ]
    text = path.read_text(encoding="utf-8")
    assert "personaName: tech-support\n" in text
    assert "sAMAccountName: new\npersonaName: staff\n" in text


def test_a_file_saved_during_every_attempt_is_left_alone_with_one_clear_error(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edits = [(f"cn: Boss{'!' * i}\n", f"cn: Boss{'!' * (i + 1)}\n") for i in range(10)]
    calls = other_program_saves(monkeypatch, edits)
    with pytest.raises(DirectoryAborted) as raised:
        directory(path).apply([change(NEW, None, "staff")])
    assert str(raised.value) == (
        f"{path}: another program saved the file while persona-sync was writing it, "
        "5 times in a row; nothing was written. Run again when nothing else is editing the file."
    )
    assert raised.value.results == []
    assert len(calls) == files.WRITE_ATTEMPTS == 5
    # The other program's last save stands, without our write.
    assert path.read_text(encoding="utf-8") == LDIF.replace("cn: Boss\n", "cn: Boss!!!!!\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["people.ldif"]


def test_the_check_compares_content_not_timestamps(path: Path) -> None:
    read = path.read_bytes()
    stat = path.stat()
    path.write_bytes(read.replace(b"Engineer", b"Engineex"))
    # Same size, and the modification time set back as a copy tool would.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not files.unchanged_since_read(path, read)
    path.write_bytes(read)
    assert files.unchanged_since_read(path, read)
    path.unlink()
    assert not files.unchanged_since_read(path, read)
