"""The journal: one JSON Lines file per run, so every write can be audited and undone.

Write-ahead: before a batch is sent to the directory its changes are journalled as
``pending`` and fsynced; after, each result is journalled as ``write``. A run that died
between the two leaves pending records without results; rollback treats them as
possibly written and relies on compare-and-swap to tell.
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
from persona_sync.errors import PersonaSyncError

JOURNAL_DIR = "journal"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


class Journal:
    """Appends one run's records; every append is flushed and fsynced."""

    def __init__(self, state_dir: Path, command: str, directory: str, **header: Any) -> None:
        self.run_id = new_run_id()
        folder = state_dir / JOURNAL_DIR
        self.path = folder / f"{self.run_id}.jsonl"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = open(self.path, "x", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise PersonaSyncError(f"cannot create journal {self.path}: {exc.strerror}") from None
        self._append(
            [
                {
                    "type": "run",
                    "run_id": self.run_id,
                    "time": _now(),
                    "command": command,
                    "directory": directory,
                    "tool_version": __version__,
                    **header,
                }
            ]
        )

    def pending(self, changes: Iterable[Change]) -> None:
        now = _now()
        self._append(
            [{"type": "pending", "run_id": self.run_id, "time": now, **_change(c)} for c in changes]
        )

    def results(self, results: Iterable[ChangeResult]) -> None:
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
                }
                for r in results
            ]
        )

    def end(self, counts: dict[str, int], status: str) -> None:
        self._append(
            [{"type": "end", "run_id": self.run_id, "time": _now(), "status": status, **counts}]
        )
        self._file.close()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def _append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records)
        try:
            self._file.write(text)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise PersonaSyncError(f"cannot write journal {self.path}: {exc.strerror}") from None


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


@dataclass
class RunRecord:
    """A run as read back from its journal file."""

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
        """Pending changes with no recorded result: the run died while writing them."""
        done = {(w["dn"], w["attribute"]) for w in self.writes}
        return [p for p in self.pending if (p["dn"], p["attribute"]) not in done]


def read_run(state_dir: Path, run_id: str) -> RunRecord:
    path = state_dir / JOURNAL_DIR / f"{run_id}.jsonl"
    if not path.is_file() or "/" in run_id or run_id.startswith("."):
        known = [r.run_id for r in list_runs(state_dir)[-5:]]
        hint = f" (latest: {', '.join(known)})" if known else " (no runs recorded yet)"
        raise PersonaSyncError(f"unknown run id {run_id!r} in {state_dir / JOURNAL_DIR}{hint}")
    record: RunRecord | None = None
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                if line.endswith("\n"):
                    raise PersonaSyncError(f"{path}:{number}: damaged journal line") from None
                break  # a torn last line from a crash: everything before it stands
            kind = item.get("type")
            if kind == "run":
                record = RunRecord(item["run_id"], item)
            elif record is None:
                raise PersonaSyncError(f"{path}:{number}: journal does not start with a run record")
            elif kind == "pending":
                record.pending.append(item)
            elif kind == "write":
                record.writes.append(item)
            elif kind == "end":
                record.end = item
    if record is None:
        raise PersonaSyncError(f"{path}: empty journal")
    return record


def list_runs(state_dir: Path) -> list[RunRecord]:
    folder = state_dir / JOURNAL_DIR
    if not folder.is_dir():
        return []
    runs = [read_run(state_dir, p.stem) for p in folder.glob("*.jsonl")]
    return sorted(runs, key=lambda r: (str(r.header.get("time", "")), r.run_id))
