"""The interface every directory backend implements, and the change values it applies.

A backend reads employees (only the attributes asked for, streamed) and applies changes
with compare-and-swap: a change writes ``new`` only if the attribute still holds ``old``;
otherwise the result is a conflict carrying the value found, and nothing is written. An
attribute that already holds ``new`` is ``unchanged`` (nothing written, so a rollback
leaves it alone), so re-running a partly applied plan is harmless.

Every backend decides "the value is already there" and "the value is still the old one"
with :func:`same_value`: equal ignoring case, as the directories' own matching rules do
(caseIgnoreMatch on AD and OpenLDAP string attributes; Graph compares strings without
case). Persona ids differ by more than case, so nothing is lost by it.

An error that would repeat for every change (permission denied, a refused token) stops
the batch at the first: the backend raises :class:`DirectoryAborted` with the results it
has, and the runner journals the rest as not sent. A :class:`Cancel` that is requested (a
signal) makes the backend stop sending, collect the answers in flight and return; what it
never sent comes back as ``skipped``.
Backends translate their own errors into :class:`~persona_sync.errors.DirectoryError`.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Collection, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from persona_sync.dn import normalize_dn
from persona_sync.employee import Employee
from persona_sync.errors import DirectoryError

#: What happened to one change, as far as this run knows:
#:   applied    written by this run (the server confirmed it)
#:   unchanged  the attribute already held the new value; nothing written
#:   conflict   the value is not what the plan saw (or the entry is gone); nothing written
#:   failed     the server refused the write; nothing written
#:   unknown    sent, but no answer came (connection lost): may or may not be written; the
#:              next run reads it back and records the outcome
#:   skipped    never sent (the run stopped first)
Status = Literal["applied", "unchanged", "conflict", "failed", "unknown", "skipped"]
STATUSES: tuple[Status, ...] = ("applied", "unchanged", "conflict", "failed", "unknown", "skipped")


def same_value(a: str | None, b: str | None) -> bool:
    """The one rule for "already there" in every backend: equal ignoring case; empty is
    empty (None and "" are the same)."""
    if not a or not b:
        return not a and not b
    return a == b or a.casefold() == b.casefold()


class Gone:
    """Read back: the entry no longer exists."""

    def __repr__(self) -> str:
        return "GONE"


GONE = Gone()
ReadBack = str | None | Gone


class Cancel:
    """A stop request shared between a signal handler and the backend writing.

    Thread-safe; once requested it stays requested. ``reason`` says why (``SIGTERM``).
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def request(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()


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
    key: str | None = None  # the snapshot's stable id of the employee, when the plan knew it

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


@dataclass(frozen=True)
class Cursor:
    """Where one source's change tracking stood when a read began; saved in the snapshot.

    ``kind`` names the mechanism ("usn", "csn", "graph-delta"); ``state`` is the backend's
    own JSON-ready data (a USN and the DC's invocationId, an entryCSN, a deltaLink);
    ``taken`` is when the read began (ISO 8601, UTC). Only the backend that made a cursor
    interprets it.
    """

    kind: str
    state: Mapping[str, Any]
    taken: str


@dataclass(frozen=True)
class DeltaEnd:
    """What a delta read knows once its entries are consumed.

    ``cursor``: save it (only after the run's writes are journalled) and pass it next time;
    None when the backend tracks no changes. Deleted entries and entries that left the scope
    come as ``removed`` (their keys) or as ``present`` (the key of every entry in scope now,
    from a cheap sweep); one of the two, or neither on a full read.
    """

    cursor: Cursor | None
    removed: Collection[str] = ()
    present: Collection[str] | None = None


@dataclass
class DeltaRead:
    """The entries changed since a cursor (every entry when ``full``), streamed.

    ``full``: the read is a full one (no cursor yet, another DC answered, a restore, an
    expired token, no change tracking); ``reason`` says why, in words for the run's output
    ("no cursor yet: first run"). Call ``finish()`` after consuming ``entries``.
    """

    entries: Iterator[Employee]
    finish: Callable[[], DeltaEnd]
    full: bool
    reason: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    """One check-connection check's result. ``warning``: it passed, but the admin should
    look at it."""

    check: str
    ok: bool
    detail: str
    warning: bool = False


#: A backend's own checks; returns whether the common ones that follow make sense.
Checks = Generator[Finding, None, bool]


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
    def apply(self, changes: Sequence[Change], cancel: Cancel | None = None) -> list[ChangeResult]:
        """Apply a batch with compare-and-swap; one result per change, in order.

        Stops sending when ``cancel`` is requested (answers in flight are still awaited,
        within the backend's timeout); changes never sent come back ``skipped``.
        """

    @abc.abstractmethod
    def read_back(self, changes: Sequence[Change]) -> list[ReadBack]:
        """The current value of each change's attribute (None when empty, GONE when the
        entry no longer exists), in order; used to settle writes whose outcome is unknown."""

    def key(self, employee: Employee) -> str:
        """The entry's stable identity, which survives renames and moves (objectGUID,
        entryUUID, the Graph object id); the snapshot is keyed by it. Backends without one
        use the normalized DN."""
        return normalize_dn(employee.dn)

    def read_delta(self, attributes: Sequence[str], cursor: Cursor | None) -> DeltaRead:
        """Entries changed since ``cursor`` (None: a full read), with the next cursor.

        The default has no change tracking: every read is full and says so. Backends with
        change tracking return only what changed, and fall back to a full read (with the
        reason) when the cursor cannot be used.
        """
        return DeltaRead(
            self.read(attributes),
            lambda: DeltaEnd(None),
            full=True,
            reason="this directory has no change tracking: every read is a full one",
        )

    def check_targets(self, attributes: Sequence[str]) -> None:  # noqa: B027 - optional
        """Refuse target attributes the directory cannot hold safely (raises ConfigError)."""

    def unwritable_reason(self, employee: Employee, attribute: str) -> str | None:
        """Why this employee's attribute cannot be written here (planned as skipped)."""
        return None

    def diagnose(self, targets: Sequence[str]) -> Checks:
        """check-connection's checks of this backend (connection, credentials, schema of the
        target attributes), as findings; returns whether the checks common to every backend
        (reading the employees, the target values) make sense after them."""
        return True
        yield  # a generator with nothing to say

    def probe_write(self, sample: Employee, targets: Sequence[str]) -> Iterator[Finding]:
        """Whether the targets may be written on ``sample``, changing nothing; backends
        that cannot tell say nothing (the first write shows it)."""
        return iter(())

    def lookup_managers(self, dns: Sequence[str]) -> list[Employee]:
        """Entries outside the read scope that appear in manager chains (id and manager)."""
        return []

    def reread(self, dns: Sequence[str], attributes: Sequence[str]) -> list[Employee] | None:
        """The entries at ``dns`` read again as :meth:`read` reads them (those gone or out
        of scope left out), for links a delta read cannot see: a directory that rewrites or
        drops the values naming a renamed or deleted entry without marking the entries that
        hold them changed (AD's linked attributes). None: this directory's delta reports
        such changes itself, nothing to re-read."""
        return None

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections or files."""

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
