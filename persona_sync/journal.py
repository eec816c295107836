"""The journal: one JSON Lines file per run, so every write can be audited and undone.

Write-ahead: before a batch is sent to the directory its changes are journalled as
``pending`` and fsynced; after, each result is journalled as ``write`` with the status the
backend saw (see :data:`persona_sync.directory.base.Status`). Results are written at once
and made durable by the next fsync: the next batch's ``pending`` (so nothing is sent while
an earlier result is only in memory) or the ``end`` record, one fsync per batch instead of
two. A result lost to a power cut before then leaves its change pending without a result,
which the next run reads back, as it does for a crash mid-batch. A run ends with an ``end``
record saying how it ended:

- ``complete``: every change was decided;
- ``aborted``: a directory error stopped it (the changes after it were never sent);
- ``interrupted``: SIGINT/SIGTERM, or the process died and a later run found its journal
  without an end (that run read back the unconfirmed writes and recorded them, marked
  ``settled_by``, before it carried on);
- ``error``: anything else stopped it (a bug, an unexpected error), with the message.

A run without an end record is still running (while it holds the lock) or died; the next
run settles it. Names start pessimistic: nothing is "complete" until it is.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from persona_sync import __version__
from persona_sync.directory.base import Change, ChangeResult
from persona_sync.dn import normalize_dn
from persona_sync.errors import PersonaSyncError

JOURNAL_DIR = "journal"
END_STATUSES = ("complete", "aborted", "interrupted", "error")
_TAIL = 65536  # bytes read from a journal's end to find its end record
_ENCODE = json.JSONEncoder(ensure_ascii=False, sort_keys=True).encode  # made once, not per line


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def change_key(record: dict[str, Any]) -> tuple[str, str]:
    """What one journal entry is about: the entry (DN parsed) and the attribute."""
    return normalize_dn(str(record["dn"])), str(record["attribute"]).lower()


class Journal:
    """Appends one run's records, each append flushed; the header, ``pending`` and ``end``
    fsynced (with whatever came before them)."""

    def __init__(self, path: Path, run_id: str, handle: IO[str]) -> None:
        self.path = path
        self.run_id = run_id
        self._file = handle
        self._unsynced = False  # written and flushed, not yet fsynced

    @classmethod
    def create(cls, state_dir: Path, command: str, directory: str, **header: Any) -> Journal:
        """A new run's journal; the file and its folder entry are on disk when this returns."""
        run_id = new_run_id()
        folder = state_dir / JOURNAL_DIR
        path = folder / f"{run_id}.jsonl"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(path, "x", encoding="utf-8")  # noqa: SIM115 - closed by end()/close()
        except OSError as exc:
            raise PersonaSyncError(f"cannot create journal {path}: {exc.strerror}") from None
        journal = cls(path, run_id, handle)
        journal._append(
            [
                {
                    "type": "run",
                    "run_id": run_id,
                    "time": _now(),
                    "command": command,
                    "directory": directory,
                    "tool_version": __version__,
                    **header,
                }
            ]
        )
        _sync_folder(folder)
        return journal

    @classmethod
    def reopen(cls, state_dir: Path, run_id: str) -> Journal:
        """An existing run's journal, to append what a later run learnt about it.

        A torn last line (the process died mid-write) is cut off first, so the next record
        starts on a line of its own.
        """
        path = state_dir / JOURNAL_DIR / f"{run_id}.jsonl"
        try:
            with open(path, "rb+") as raw:
                data = raw.read()
                if data and not data.endswith(b"\n"):
                    raw.truncate(data.rfind(b"\n") + 1)
                    raw.flush()
                    os.fsync(raw.fileno())
            handle = open(path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise PersonaSyncError(f"cannot append to journal {path}: {exc.strerror}") from None
        return cls(path, run_id, handle)

    def pending(self, changes: Iterable[Change]) -> None:
        now = _now()
        self._append(
            [{"type": "pending", "run_id": self.run_id, "time": now, **_change(c)} for c in changes]
        )

    def results(self, results: Iterable[ChangeResult], **extra: Any) -> None:
        """Journal results; durable with the next ``pending`` or ``end`` (see above)."""
        now = _now()
        self._append(
            [
                {
                    "type": "write",
                    "run_id": self.run_id,
                    "time": now,
                    **_change(r.change),
                    "result": r.status,
                    "message": r.message,
                    "found": r.found,
                    **extra,
                }
                for r in results
            ],
            sync=False,
        )

    def end(self, status: str, counts: dict[str, int], **extra: Any) -> None:
        assert status in END_STATUSES, status
        self._append(
            [
                {
                    "type": "end",
                    "run_id": self.run_id,
                    "time": _now(),
                    "status": status,
                    **counts,
                    **extra,
                }
            ]
        )
        self._file.close()

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            if self._unsynced:  # a run that ends without an end record: keep its results
                os.fsync(self._file.fileno())
        except OSError:
            pass  # the next run reads back what is unresolved
        finally:
            self._file.close()

    def _append(self, records: list[dict[str, Any]], sync: bool = True) -> None:
        if not records:
            return
        text = "".join(_ENCODE(r) + "\n" for r in records)
        try:
            self._file.write(text)
            self._file.flush()
            if sync:
                os.fsync(self._file.fileno())
        except OSError as exc:
            raise PersonaSyncError(f"cannot write journal {self.path}: {exc.strerror}") from None
        self._unsynced = not sync


def _sync_folder(folder: Path) -> None:
    """Make a new file's name durable, not only its content."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _change(change: Change) -> dict[str, Any]:
    return {
        "employee": change.employee,
        "dn": change.dn,
        "attribute": change.attribute,
        "old": change.old,
        "new": change.new,
        "persona": change.persona,
        "rule": change.rule,
        "scenario": change.scenario,
    }


def record_change(record: dict[str, Any]) -> Change:
    """The change a pending or write record is about."""
    return Change(
        str(record["employee"]),
        str(record["dn"]),
        str(record["attribute"]),
        record.get("old"),
        record.get("new"),
        record.get("persona"),
        record.get("rule"),
        record.get("scenario"),
    )


@dataclass
class RunRecord:
    """A run as read back from its journal file.

    ``writes`` holds each change's latest outcome (a result settled by a later run replaces
    the ``unknown`` it had), in the order the changes were first decided.
    """

    run_id: str
    header: dict[str, Any]
    pending: list[dict[str, Any]] = field(default_factory=list)
    writes: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        return str(self.end["status"]) if self.end else "incomplete"

    def count(self, result: str) -> int:
        return sum(1 for w in self.writes if w["result"] == result)

    def unresolved(self) -> list[dict[str, Any]]:
        """Sent changes whose outcome is not known: pending without a result, or unknown."""
        decided = {change_key(w) for w in self.writes if w["result"] != "unknown"}
        seen: set[tuple[str, str]] = set()
        found = []
        for item in self.pending:
            key = change_key(item)
            if key not in decided and key not in seen:
                seen.add(key)
                found.append(item)
        return found


def read_run(state_dir: Path, run_id: str) -> RunRecord:
    path = state_dir / JOURNAL_DIR / f"{run_id}.jsonl"
    if "/" in run_id or run_id.startswith(".") or not path.is_file():
        known = [r.run_id for r in list_runs(state_dir)[-5:]]
        hint = f" (latest: {', '.join(known)})" if known else " (no runs recorded yet)"
        raise PersonaSyncError(f"unknown run id {run_id!r} in {state_dir / JOURNAL_DIR}{hint}")
    return _parse(path)


def _parse(path: Path) -> RunRecord:
    record: RunRecord | None = None
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise PersonaSyncError(f"cannot read journal {path}: {exc.strerror}") from None
    with handle:
        lines = handle.read().split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            if number < len(lines):
                raise PersonaSyncError(f"{path}:{number}: damaged journal line") from None
            break  # a torn last line from a crash: everything before it stands
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "run":
            record = RunRecord(str(item["run_id"]), item)
        elif record is None:
            raise PersonaSyncError(f"{path}:{number}: journal does not start with a run record")
        elif kind == "pending":
            record.pending.append(item)
        elif kind == "write":
            latest[change_key(item)] = item  # dicts keep first-insertion order
        elif kind == "end":
            record.end = item
    if record is None:
        raise PersonaSyncError(f"{path}: empty journal")
    record.writes = list(latest.values())
    return record


def unfinished_runs(state_dir: Path) -> list[RunRecord]:
    """Runs whose journal has no end record, oldest first; cheap for finished runs."""
    folder = state_dir / JOURNAL_DIR
    if not folder.is_dir():
        return []
    found = [_parse(p) for p in sorted(folder.glob("*.jsonl")) if not _has_end(p)]
    return [r for r in found if r.end is None]


def _has_end(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - _TAIL))
            tail = handle.read()
    except OSError:
        return False
    for line in reversed(tail.rstrip(b"\n").split(b"\n")):
        if line.strip():
            return b'"type": "end"' in line
    return False


def list_runs(state_dir: Path) -> list[RunRecord]:
    folder = state_dir / JOURNAL_DIR
    if not folder.is_dir():
        return []
    runs = [_parse(p) for p in folder.glob("*.jsonl")]
    return sorted(runs, key=lambda r: (str(r.header.get("time", "")), r.run_id))
