"""The file-backed directory: an LDIF or CSV export, written back in place atomically.

Only person entries are employees: an ``ldapsearch`` export also holds the base, OU and
group entries, which are neither read nor written (see :class:`PersonClasses`).

Applies a whole run's changes in one pass: read the file (someone may have edited it since
the plan), compare-and-swap each change against what the file holds now, write the new
content to a temporary file and, just before renaming it over the original, check that the
original still holds the bytes that were read. If another program saved the file in
between, its edit is not lost: the pass starts over from the new content, a few times, then
gives up writing nothing. Entries and attributes the tool does not touch come back byte
for byte.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from persona_sync.directory.atomic import atomic_write
from persona_sync.directory.base import (
    GONE,
    Cancel,
    Change,
    ChangeResult,
    Checks,
    Cursor,
    DeltaEnd,
    DeltaRead,
    Directory,
    DirectoryAborted,
    Finding,
    ReadBack,
    same_value,
)
from persona_sync.directory.csvfile import CsvDocument, parse_csv
from persona_sync.directory.ldif import LdifDocument, parse_ldif
from persona_sync.dn import normalize_dn
from persona_sync.employee import Employee
from persona_sync.errors import ConfigError, DirectoryError
from persona_sync.logs import get_logger

log = get_logger(__name__)

LDIF_SUFFIXES = (".ldif", ".ldf")
CSV_DN_COLUMNS = ("dn", "distinguishedname")
OBJECT_CLASS = "objectclass"
DEFAULT_OBJECT_CLASSES = ("person", "organizationalPerson", "inetOrgPerson", "user")
DEFAULT_EXCLUDED_CLASSES = ("computer", "contact")
#: Passes over a file that another program keeps saving before giving up.
WRITE_ATTEMPTS = 5
NOT_SENT = "not sent: run interrupted"

Document = LdifDocument | CsvDocument


class PersonClasses:
    """Which entries are employees, by objectClass, as the LDAP presets' filters pick them.

    An entry is a person when one of its classes is included and none is excluded (AD
    computers are also class ``user``, AD contacts also class ``person``). A file that
    names no classes at all (an LDIF without objectClass lines, a CSV without the column)
    holds only people.
    """

    def __init__(self, include: Collection[str], exclude: Collection[str]) -> None:
        self.include = frozenset(c.casefold() for c in include)
        self.exclude = frozenset(c.casefold() for c in exclude)

    def is_person(self, classes: Collection[str]) -> bool:
        folded = {c.strip().casefold() for c in classes}
        return not folded.isdisjoint(self.include) and folded.isdisjoint(self.exclude)

    def picker(self, document: Document) -> Callable[[int], bool]:
        """Whether the entry at a position (record or row) is an employee."""
        if isinstance(document, LdifDocument):
            records = document.records
            if not any(r.values(OBJECT_CLASS) for r in records):
                return _everyone
            return lambda i: self.is_person(records[i].values(OBJECT_CLASS))
        if not document.has_column(OBJECT_CLASS):
            return _everyone
        rows = document.rows
        return lambda i: self.is_person(rows[i].get(OBJECT_CLASS).split(";"))


def _everyone(position: int) -> bool:
    return True


class FileDirectory(Directory):
    """An LDIF or CSV file as a directory."""

    batch_size = 1_000_000_000  # one read-modify-write of the file per run

    def __init__(
        self,
        path: Path,
        fmt: str = "auto",
        id_attributes: Sequence[str] = (),
        object_classes: Collection[str] = DEFAULT_OBJECT_CLASSES,
        exclude_object_classes: Collection[str] = DEFAULT_EXCLUDED_CLASSES,
    ) -> None:
        self.path = path.resolve()
        self.format = _detect(self.path, fmt)
        self.id_attributes = [a.lower() for a in id_attributes] or ["cn"]
        self.classes = PersonClasses(object_classes, exclude_object_classes)
        self.identity = f"file:{self.path}"

    def _read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            raise DirectoryError(f"{self.path}: no such directory file") from None
        except IsADirectoryError:
            raise DirectoryError(
                f"{self.path}: is a folder, expected an LDIF or CSV file"
            ) from None
        except OSError as exc:
            raise DirectoryError(f"cannot read {self.path}: {exc.strerror}") from None

    def _parse(self, data: bytes) -> Document:
        if self.format == "ldif":
            return parse_ldif(data, str(self.path))
        return parse_csv(data, str(self.path))

    def diagnose(self, targets: Sequence[str]) -> Checks:
        if not self.path.is_file():
            yield Finding("file", False, f"{self.path}: no such directory file")
            return False
        writable = os.access(self.path, os.W_OK) and os.access(self.path.parent, os.W_OK)
        shown = f"{self.path}: not writable (the file and its folder must be writable)"
        yield Finding("file", writable, f"{self.path}" if writable else shown)
        return True  # an unwritable file can still be read: the common checks still tell

    def read(self, attributes: Sequence[str]) -> Iterator[Employee]:
        return self._employees(self._read_bytes(), attributes)

    def key(self, employee: Employee) -> str:
        """The DN as the file spells it: a file has no stable id, and a DN respelled in the
        file reads as one entry gone and one new, which the plan handles alike."""
        return employee.dn

    def read_delta(self, attributes: Sequence[str], cursor: Cursor | None) -> DeltaRead:
        """A file has no change log: its digest is the cursor. An unchanged file reads as
        no change at all; a changed one is read whole and every entry compared with the
        snapshot (entries not in it any more are gone)."""
        data = self._read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        now = Cursor("file", {"sha256": digest}, datetime.now(UTC).isoformat(timespec="seconds"))
        if cursor is None or cursor.kind != "file" or not cursor.state.get("sha256"):
            reason = "" if cursor is None else "the saved cursor is not a file's: full read"
            return DeltaRead(self._employees(data, attributes), lambda: DeltaEnd(now), True, reason)
        if cursor.state["sha256"] == digest:
            return DeltaRead(
                iter(()), lambda: DeltaEnd(now), False, notes=["the file is unchanged"]
            )
        present: list[str] = []

        def entries() -> Iterator[Employee]:
            for employee in self._employees(data, attributes):
                present.append(self.key(employee))
                yield employee

        return DeltaRead(
            entries(),
            lambda: DeltaEnd(now, present=present),
            False,
            notes=["the file changed since the last read: every entry compared with the snapshot"],
        )

    def _employees(self, data: bytes, attributes: Sequence[str]) -> Iterator[Employee]:
        wanted = [a.lower() for a in attributes]
        document = self._parse(data)
        is_person = self.classes.picker(document)
        if isinstance(document, LdifDocument):
            read = self._read_ldif(document, wanted, is_person)
            total = len(document.records)
        else:
            read = self._read_csv(document, wanted, is_person)
            total = len(document.rows)
        employees = 0
        for employee in read:
            employees += 1
            yield employee
        log.info(
            "file_directory_read",
            path=str(self.path),
            employees=employees,
            other_entries=total - employees,
        )

    def _read_ldif(
        self, document: LdifDocument, wanted: list[str], is_person: Callable[[int], bool]
    ) -> Iterator[Employee]:
        names = set(wanted) | set(self.id_attributes)
        for position, record in enumerate(document.records):
            if not is_person(position):
                continue
            values = record.first_values(names)
            employee_id = next((values[a] for a in self.id_attributes if a in values), record.dn)
            attributes = {name: values[name] for name in wanted if name in values}
            yield Employee(employee_id, record.dn, attributes)

    def _read_csv(
        self, document: CsvDocument, wanted: list[str], is_person: Callable[[int], bool]
    ) -> Iterator[Employee]:
        dn_column = next((c for c in CSV_DN_COLUMNS if document.has_column(c)), None)
        present = [name for name in wanted if document.has_column(name)]
        id_columns = [name for name in self.id_attributes if document.has_column(name)]
        for position, row in enumerate(document.rows):
            if not is_person(position):
                continue
            attributes = {name: value for name in present if (value := row.get(name))}
            dn = row.get(dn_column) if dn_column else ""
            employee_id = next((v for c in id_columns if (v := row.get(c))), dn)
            yield Employee(employee_id, dn or employee_id, attributes)

    def apply(self, changes: Sequence[Change], cancel: Cancel | None = None) -> list[ChangeResult]:
        """Compare-and-swap every change against the file as it is now, then write it once.

        The whole batch is one write, so a cancel before it leaves every change skipped
        and a cancel after it changes nothing: the write is done.
        """
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            if cancel is not None and cancel.requested:
                return [ChangeResult(change, "skipped", NOT_SENT) for change in changes]
            data = self._read_bytes()
            document = self._parse(data)
            results, dirty = self._compare_and_swap(document, changes)
            if dirty:
                try:
                    check = functools.partial(self._unchanged, data)
                    atomic_write(self.path, document.serialize(), check)
                except _ChangedMeanwhile:
                    log.info(
                        "file_directory_changed_meanwhile", path=str(self.path), attempt=attempt
                    )
                    continue
            log.info(
                "file_directory_written",
                path=str(self.path),
                changed=dirty,
                applied=sum(r.status == "applied" for r in results),
            )
            return results
        raise DirectoryAborted(
            f"{self.path}: another program saved the file while persona-sync was writing it, "
            f"{WRITE_ATTEMPTS} times in a row; nothing was written. "
            "Run again when nothing else is editing the file.",
            [],
        )

    def _compare_and_swap(
        self, document: Document, changes: Sequence[Change]
    ) -> tuple[list[ChangeResult], bool]:
        """Each change's result against ``document``, which gets the applied ones."""
        index = self._index(document)
        is_person = self.classes.picker(document)
        results: list[ChangeResult] = []
        dirty = False
        for change in changes:
            position = index.get(normalize_dn(change.dn))
            if position is None:
                results.append(ChangeResult(change, "conflict", "entry no longer in the file"))
                continue
            if not is_person(position):
                results.append(
                    ChangeResult(change, "conflict", "entry is no longer a person (objectClass)")
                )
                continue
            current = self._current(document, position, change.attribute)
            if same_value(current, change.new):
                results.append(ChangeResult(change, "unchanged", "already had the value", current))
            elif not same_value(current, change.old):
                results.append(
                    ChangeResult(
                        change,
                        "conflict",
                        f"value changed since the plan: expected {_show(change.old)}, "
                        f"found {_show(current)}",
                        current,
                    )
                )
            else:
                document.set_value(position, change.attribute, change.new)
                dirty = True
                results.append(ChangeResult(change, "applied"))
        return results, dirty

    def _unchanged(self, read: bytes) -> None:
        """Raise _ChangedMeanwhile unless the file still holds the bytes ``read``."""
        if not unchanged_since_read(self.path, read):
            raise _ChangedMeanwhile

    def read_back(self, changes: Sequence[Change]) -> list[ReadBack]:
        document = self._parse(self._read_bytes())
        index = self._index(document)
        found: list[ReadBack] = []
        for change in changes:
            position = index.get(normalize_dn(change.dn))
            found.append(
                GONE if position is None else self._current(document, position, change.attribute)
            )
        return found

    def _index(self, document: Document) -> dict[str, int]:
        """Entry position by normalized DN (or id, for a CSV without a DN column)."""
        if isinstance(document, LdifDocument):
            return {normalize_dn(r.dn): i for i, r in enumerate(document.records)}
        dn_column = next((c for c in CSV_DN_COLUMNS if document.has_column(c)), None)
        id_columns = [c for c in self.id_attributes if document.has_column(c)]
        index = {}
        for i, row in enumerate(document.rows):
            dn = row.get(dn_column) if dn_column else ""
            if not dn:
                dn = next((v for c in id_columns if (v := row.get(c))), "")
            index[normalize_dn(dn)] = i
        return index

    def _current(self, document: Document, position: int, attribute: str) -> str | None:
        if isinstance(document, LdifDocument):
            values = document.records[position].values(attribute)
            return values[0] if values else None
        if not document.has_column(attribute):
            return None
        return document.rows[position].get(attribute) or None


class _ChangedMeanwhile(Exception):
    """The file is not what this pass read: another program saved it."""


def unchanged_since_read(path: Path, read: bytes) -> bool:
    """Whether ``path`` still holds exactly ``read``. Compared byte for byte, not by
    modification time, which editors and copies may keep or set to the past."""
    try:
        return path.read_bytes() == read
    except OSError:
        return False


def _show(value: str | None) -> str:
    return "(empty)" if value is None else repr(value)


def _detect(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in LDIF_SUFFIXES:
        return "ldif"
    if suffix == ".csv":
        return "csv"
    raise ConfigError(
        f"{path}: cannot tell the file format from the extension {suffix or '(none)'}; "
        "set directory.format to ldif or csv"
    )
