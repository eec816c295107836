"""Read persona-sync's journals on their own terms and hold them against the server's log.

Deliberately independent of persona_sync.journal: the proof must not share a bug with the
code it checks. A journal is JSON Lines; a change is named by its entry (DN compared as a
name, not as text) and attribute; a later `write` record for a change supersedes an earlier
one (recovery's `settled_by` records replace the `unknown` or missing outcome).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.ldap.conftest import canonical_dn

Key = tuple[str, str]  # (entry, attribute), both case-folded; the DN with escapes resolved


def change_key(dn: str, attribute: str) -> Key:
    return canonical_dn(dn), attribute.casefold()


def value(text: object) -> str | None:
    """Empty is empty: None and "" are one value."""
    return str(text) if text not in (None, "") else None


@dataclass(frozen=True)
class ServerWrite:
    """One write the server itself says it applied, in its own order."""

    key: Key
    old: str | None  # the value it replaced, as the server logged it (None: unknown/empty)
    new: str | None
    excerpt: str  # the server's record, for reports


@dataclass
class JournalRun:
    run_id: str
    path: Path
    header: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def command(self) -> str:
        return str(self.header.get("command"))

    @property
    def ends(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") == "end"]

    @property
    def status(self) -> str:
        ends = self.ends
        return str(ends[-1]["status"]) if ends else "no end record"

    def outcomes(self) -> dict[Key, dict[str, Any]]:
        """The latest `write` record of each change, in first-decided order."""
        latest: dict[Key, dict[str, Any]] = {}
        for record in self.records:
            if record.get("type") == "write":
                latest[change_key(record["dn"], record["attribute"])] = record
        return latest

    def pending_keys(self) -> set[Key]:
        return {
            change_key(r["dn"], r["attribute"]) for r in self.records if r.get("type") == "pending"
        }


def read_journals(folder: Path) -> list[JournalRun]:
    """Every journal in `folder`, oldest first; a line that is not JSON is an error
    (recovery cuts a torn last line, so none may be left once every run is settled)."""
    runs = []
    for path in sorted(folder.glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise AssertionError(f"{path}:{number}: not JSON ({exc}): {line[:200]!r}") from None
        if not records or records[0].get("type") != "run":
            raise AssertionError(f"{path}: does not start with a run record")
        runs.append(JournalRun(str(records[0]["run_id"]), path, records[0], records[1:]))
    return sorted(runs, key=lambda r: (str(r.header.get("time")), r.run_id))


def has_end(path: Path) -> bool:
    """Whether the journal's last complete line is an end record (cheap; for polling)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 65536))
            data = handle.read()
    except OSError:
        return False
    lines = [line for line in data.split(b"\n") if line.strip()]
    return bool(lines) and data.endswith(b"\n") and b'"type": "end"' in lines[-1]


def show(record: dict[str, Any]) -> str:
    shown = {
        k: record.get(k)
        for k in ("type", "dn", "old", "new", "result", "message", "found", "settled_by")
        if k in record
    }
    return json.dumps(shown, ensure_ascii=False)
