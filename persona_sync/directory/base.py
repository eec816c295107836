"""The interface every directory backend implements, and the change values it applies.

A backend reads employees (only the attributes asked for, streamed) and applies changes
with compare-and-swap: a change writes ``new`` only if the attribute still holds ``old``;
otherwise the result is a conflict carrying the value found, and nothing is written. An
attribute that already holds ``new`` counts as applied (nothing to do), so re-running a
partly applied plan or rolling back a write that never happened is harmless.
Backends translate their own errors into :class:`~persona_sync.errors.DirectoryError`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from persona_sync.employee import Employee
from persona_sync.errors import DirectoryError

Status = Literal["applied", "conflict", "failed", "skipped"]


@dataclass(frozen=True, slots=True)
class Change:
    """Set ``attribute`` of one entry from ``old`` to ``new`` (None means empty)."""

    employee: str
    dn: str
    attribute: str
    old: str | None
    new: str | None
    persona: str | None = None
    rule: str | None = None
    scenario: str | None = None

    def reversed(self) -> Change:
        return Change(
            self.employee,
            self.dn,
            self.attribute,
            self.new,
            self.old,
            None,
            "rollback",
            self.scenario,
        )


@dataclass(frozen=True, slots=True)
class ChangeResult:
    change: Change
    status: Status
    message: str = ""
    found: str | None = None  # the value actually there, for conflicts


class DirectoryAborted(DirectoryError):
    """A batch stopped part way; ``results`` says what happened to each change so far."""

    def __init__(self, message: str, results: Sequence[ChangeResult]) -> None:
        super().__init__(message)
        self.results = list(results)


class Directory(abc.ABC):
    """A place employees live. Use as a context manager; ``close`` is idempotent."""

    #: Changes per apply() call; the runner journals each batch before sending it.
    batch_size: int = 200

    #: Stable identity of the directory ("file:/abs/path.ldif", "ldaps://dc1/DC=x"); a
    #: plan made for one directory is refused by another.
    identity: str

    @abc.abstractmethod
    def read(self, attributes: Sequence[str]) -> Iterator[Employee]:
        """Stream every entry with the given attributes (lower-case names, missing ok)."""

    @abc.abstractmethod
    def apply(self, changes: Sequence[Change]) -> list[ChangeResult]:
        """Apply a batch with compare-and-swap; one result per change, in order."""

    def check_targets(self, attributes: Sequence[str]) -> None:
        """Refuse target attributes the directory cannot hold safely (raises ConfigError)."""

    def unwritable_reason(self, employee: Employee, attribute: str) -> str | None:
        """Why this employee's attribute cannot be written here (planned as skipped)."""
        return None

    def lookup_managers(self, dns: Sequence[str]) -> list[Employee]:
        """Entries outside the read scope that appear in manager chains (id and manager)."""
        return []

    def close(self) -> None:
        """Release connections or files."""

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
