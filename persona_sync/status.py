"""Where a deployment stands: the last run, how the last read went, each source's cursor.

Read from the state folder only (the journal and the snapshot): no directory connection,
no rules, so it answers even while the directory is down or a rule commit is broken.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from persona_sync.journal import list_runs
from persona_sync.snapshot import SNAPSHOT_NAME, Snapshot


@dataclass(frozen=True)
class SourceStatus:
    """One source's change tracking: what kind of cursor, when it was taken, how old."""

    name: str
    identity: str
    cursor: str | None  # kind, None when there is none (full reads only)
    taken: str | None
    age_seconds: int | None


@dataclass(frozen=True)
class Status:
    state_dir: str
    last_run: dict[str, Any] | None
    last_read: dict[str, Any] | None
    sources: list[SourceStatus] = field(default_factory=list)
    snapshot: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def status(state_dir: Path, now: datetime | None = None) -> Status:
    """The state folder's status; ``now`` for ages (tests)."""
    moment = now or datetime.now(UTC)
    runs = list_runs(state_dir)  # every run that wrote: sync, apply, rollback, demo
    last_run = None
    if runs:
        run = runs[-1]
        last_run = {
            "run_id": run.run_id,
            "command": run.header.get("command"),
            "started": run.header.get("time"),
            "status": run.status,
            "applied": run.count("applied"),
            "unchanged": run.count("unchanged"),
            "conflicts": run.count("conflict"),
            "failed": run.count("failed"),
            "unconfirmed": len(run.unresolved()),
        }
    store = Snapshot.open_read_only(state_dir)
    if store is None:
        path = state_dir / SNAPSHOT_NAME
        missing = {"path": str(path), "usable": False}
        return Status(str(state_dir), last_run, None, [], missing if path.exists() else None)
    with store:
        cursor = store.get("cursor")
        taken = cursor.get("taken") if isinstance(cursor, dict) else None
        sources = [
            SourceStatus(
                "directory",
                str(store.get("directory")),
                cursor.get("kind") if isinstance(cursor, dict) else None,
                taken,
                _age(taken, moment),
            )
        ]
        last_read = {
            "at": store.get("last_read"),
            "mode": store.get("last_mode"),
            "reason": store.get("last_reason") or "",
            "last_full_read": store.get("last_full"),
        }
        snapshot = {
            "path": str(store.path),
            "usable": True,
            "employees": store.count(),
            "pending": store.pending(),
            "bytes": store.size_bytes(),
        }
    return Status(str(state_dir), last_run, last_read, sources, snapshot)


def _age(taken: str | None, now: datetime) -> int | None:
    if not taken:
        return None
    try:
        return max(0, int((now - datetime.fromisoformat(taken)).total_seconds()))
    except ValueError:
        return None


def render_status(result: Status) -> str:
    """The status for a terminal: one topic per line."""
    lines = []
    run = result.last_run
    if run is None:
        lines.append("last run:  none yet")
    else:
        lines.append(
            f"last run:  {run['command']} {run['run_id']} at {run['started']}: {run['status']}, "
            f"{run['applied']} applied, {run['conflicts']} conflicts, {run['failed']} failed"
            + (f", {run['unconfirmed']} unconfirmed" if run["unconfirmed"] else "")
        )
    read = result.last_read
    if read is None:
        lines.append("last read: none yet (persona-sync plan or sync makes the snapshot)")
    else:
        why = f" ({read['reason']})" if read["reason"] else ""
        lines.append(f"last read: {read['mode']} at {read['at']}{why}")
        lines.append(f"full read: {read['last_full_read']}")
    for source in result.sources:
        if source.cursor is None:
            lines.append(f"cursor:    {source.name} {source.identity}: none (full reads only)")
        else:
            lines.append(
                f"cursor:    {source.name} {source.identity}: {source.cursor}, taken "
                f"{source.taken} ({_duration(source.age_seconds)} ago)"
            )
    snap = result.snapshot
    if snap is None:
        lines.append(f"snapshot:  none in {result.state_dir}")
    elif not snap["usable"]:
        lines.append(f"snapshot:  {snap['path']} cannot be used; the next run rebuilds it")
    else:
        lines.append(
            f"snapshot:  {snap['path']}: {snap['employees']} employees, {snap['pending']} with "
            f"changes pending, {_size(snap['bytes'])}"
        )
    return "\n".join(lines)


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _size(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KiB"
    return f"{size / 1024 / 1024:.1f} MiB"
