"""The file-backed directory: an LDIF or CSV export, written back in place atomically.

Reads every entry from the file; applies a whole run's changes in one pass: re-read the
file (someone may have edited it since the plan), compare-and-swap each change against
what the file holds now, then write the file once, atomically. Entries and attributes the
tool does not touch come back byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import structlog

from persona_sync.directory.atomic import atomic_write
from persona_sync.directory.base import Change, ChangeResult, Directory
from persona_sync.directory.csvfile import CsvDocument, parse_csv
from persona_sync.directory.ldif import LdifDocument, parse_ldif
from persona_sync.employee import Employee
from persona_sync.errors import ConfigError, DirectoryError
from persona_sync.rules.orgchart import normalize_dn

log = structlog.get_logger(__name__)

LDIF_SUFFIXES = (".ldif", ".ldf")
CSV_DN_COLUMNS = ("dn", "distinguishedname")


class FileDirectory(Directory):
    """An LDIF or CSV file as a directory."""

    batch_size = 1_000_000_000  # one read-modify-write of the file per run

    def __init__(self, path: Path, fmt: str = "auto", id_attributes: Sequence[str] = ()) -> None:
        self.path = path.resolve()
        self.format = _detect(self.path, fmt)
        self.id_attributes = [a.lower() for a in id_attributes] or ["cn"]
        self.identity = f"file:{self.path}"

    def _load(self) -> LdifDocument | CsvDocument:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise DirectoryError(f"{self.path}: no such directory file") from None
        except IsADirectoryError:
            raise DirectoryError(
                f"{self.path}: is a folder, expected an LDIF or CSV file"
            ) from None
        except OSError as exc:
            raise DirectoryError(f"cannot read {self.path}: {exc.strerror}") from None
        if self.format == "ldif":
            return parse_ldif(data, str(self.path))
        return parse_csv(data, str(self.path))

    def read(self, attributes: Sequence[str]) -> Iterator[Employee]:
        wanted = [a.lower() for a in attributes]
        document = self._load()
        if isinstance(document, LdifDocument):
            yield from self._read_ldif(document, wanted)
        else:
            yield from self._read_csv(document, wanted)

    def _read_ldif(self, document: LdifDocument, wanted: list[str]) -> Iterator[Employee]:
        names = set(wanted) | set(self.id_attributes)
        for record in document.records:
            values = record.first_values(names)
            employee_id = next((values[a] for a in self.id_attributes if a in values), record.dn)
            attributes = {name: values[name] for name in wanted if name in values}
            yield Employee(employee_id, record.dn, attributes)

    def _read_csv(self, document: CsvDocument, wanted: list[str]) -> Iterator[Employee]:
        dn_column = next((c for c in CSV_DN_COLUMNS if document.has_column(c)), None)
        present = [name for name in wanted if document.has_column(name)]
        for row in document.rows:
            attributes = {name: value for name in present if (value := row.get(name))}

            def values(name: str, row: object = row) -> list[str]:
                value = row.get(name) if document.has_column(name) else ""  # type: ignore[attr-defined]
                return [value] if value else []

            dn = row.get(dn_column) if dn_column else ""
            employee_id = self._id_of(values, dn)
            yield Employee(employee_id, dn or employee_id, attributes)

    def _id_of(self, values: object, dn: str) -> str:
        for name in self.id_attributes:
            found = values(name)  # type: ignore[operator]
            if found:
                return str(found[0])
        return dn

    def apply(self, changes: Sequence[Change]) -> list[ChangeResult]:
        document = self._load()
        index = self._index(document)
        results: list[ChangeResult] = []
        dirty = False
        for change in changes:
            position = index.get(normalize_dn(change.dn))
            if position is None:
                results.append(ChangeResult(change, "conflict", "entry no longer in the file"))
                continue
            current = self._current(document, position, change.attribute)
            if current == change.new:
                results.append(ChangeResult(change, "applied", "already had the value", current))
            elif current != change.old:
                results.append(
                    ChangeResult(
                        change,
                        "conflict",
                        f"value changed since the plan: expected {_show(change.old)}, found {_show(current)}",
                        current,
                    )
                )
            else:
                document.set_value(position, change.attribute, change.new)
                dirty = True
                results.append(ChangeResult(change, "applied"))
        if dirty:
            atomic_write(self.path, document.serialize())
        log.info(
            "file_directory_written",
            path=str(self.path),
            changed=dirty,
            applied=sum(r.status == "applied" for r in results),
        )
        return results

    def _index(self, document: LdifDocument | CsvDocument) -> dict[str, int]:
        if isinstance(document, LdifDocument):
            return {normalize_dn(r.dn): i for i, r in enumerate(document.records)}
        dn_column = next((c for c in CSV_DN_COLUMNS if document.has_column(c)), None)
        index = {}
        for i, row in enumerate(document.rows):
            dn = row.get(dn_column) if dn_column else ""
            if not dn:
                values = [row.get(c) for c in self.id_attributes if document.has_column(c)]
                dn = next((v for v in values if v), "")
            index[normalize_dn(dn)] = i
        return index

    def _current(
        self, document: LdifDocument | CsvDocument, position: int, attribute: str
    ) -> str | None:
        if isinstance(document, LdifDocument):
            values = document.records[position].values(attribute)
            return values[0] if values else None
        if not document.has_column(attribute):
            return None
        return document.rows[position].get(attribute) or None


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
