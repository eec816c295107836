"""The proof's invariants, each a function that lists what it found wrong (empty: holds).

- journal_findings: the journals list exactly the writes that happened;
- value_findings: no employee ends with, or was ever written, a value nobody planned;
- recovery_findings: every killed run was settled by the next unattended run, which said so.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence

from tests.proof.crash import RunLog
from tests.proof.journals import JournalRun, Key, ServerWrite, change_key, show, value


def journal_findings(runs: list[JournalRun], server: list[ServerWrite]) -> list[str]:
    """Everything that keeps the journals from listing exactly the writes that happened.

    Each journal must end with one end record and leave no change unsettled; across all
    journals, the `applied` outcomes must be the server's writes, one for one: a server
    write without an applied outcome is a missing entry, an applied outcome without a
    server write is a phantom. `unchanged`, `skipped`, `conflict` and `failed` outcomes
    claim that nothing was written, so the count per (change, value) must match exactly.
    """
    findings: list[str] = []
    journalled: Counter[tuple[Key, str | None]] = Counter()
    records_by_item: dict[tuple[Key, str | None], list[str]] = {}
    for run in runs:
        ends = run.ends
        if len(ends) != 1 or run.records[-1].get("type") != "end":
            findings.append(
                f"run {run.run_id}: {len(ends)} end records, last record "
                f"{json.dumps(run.records[-1] if run.records else run.header)[:300]}"
            )
        outcomes = run.outcomes()
        for key in sorted(run.pending_keys() - outcomes.keys()):
            findings.append(f"run {run.run_id}: {key[0]} {key[1]} was pending and never settled")
        applied_records: Counter[Key] = Counter(
            change_key(r["dn"], r["attribute"])
            for r in run.records
            if r.get("type") == "write" and r.get("result") == "applied"
        )
        for key, times in applied_records.items():
            if times > 1:
                findings.append(f"run {run.run_id}: {key[0]} journalled applied {times} times")
        for key, record in outcomes.items():
            if record["result"] == "unknown":
                findings.append(f"run {run.run_id}: {key[0]} left unknown: {show(record)}")
            item = (key, value(record.get("new")))
            records_by_item.setdefault(item, []).append(f"{run.path.name}: {show(record)}")
            if record["result"] == "applied":
                journalled[item] += 1
    written: Counter[tuple[Key, str | None]] = Counter((w.key, w.new) for w in server)
    excerpts: dict[tuple[Key, str | None], str] = {(w.key, w.new): w.excerpt for w in server}
    for item in sorted(written.keys() | journalled.keys(), key=str):
        if written[item] == journalled[item]:
            continue
        kind = "missing" if written[item] > journalled[item] else "phantom"
        # The outcomes that claim something first; runs that never sent it say "skipped".
        journal_lines = sorted(records_by_item.get(item, []), key=lambda ln: '"skipped"' in ln)
        journal_lines = journal_lines or ["(no journal record for this change)"]
        server_lines = excerpts.get(item, "(no server write)").splitlines()
        findings.append(
            "\n".join(
                [
                    f"{kind}: {item[0][0]} {item[0][1]} -> {item[1]!r}: the server logged "
                    f"{written[item]} write(s), the journals {journalled[item]} applied",
                    *(f"  journal: {line}" for line in journal_lines[:4]),
                    *(f"  server:  {line}" for line in server_lines[:12]),
                ]
            )
        )
    return findings


def value_findings(
    original: Mapping[Key, str | None],
    planned: Mapping[Key, str | None],
    final: Mapping[Key, str | None],
    writes: Sequence[ServerWrite],
) -> list[str]:
    """Every server write set the value the plan proposed, once, over the original value;
    every employee ends with the planned value, or its original one if none was planned."""
    found: list[str] = []
    times = Counter(w.key for w in writes)
    for write in writes:
        if write.key not in planned:
            found.append(f"{write.key[0]}: written, but no plan changes it: {write.excerpt}")
        elif write.new != planned[write.key]:
            found.append(
                f"{write.key[0]}: written {write.new!r}, planned {planned[write.key]!r}: "
                f"{write.excerpt}"
            )
        if times[write.key] > 1:
            found.append(f"{write.key[0]}: written {times[write.key]} times: {write.excerpt}")
    for key, held in sorted(final.items()):
        expected = planned.get(key, original[key])
        if held != expected:
            found.append(
                f"{key[0]}: holds {held!r}, expected {expected!r} "
                f"(originally {original[key]!r}, planned {planned.get(key, '(no change)')!r})"
            )
    return found


def restored_findings(
    original: Mapping[Key, str | None], final: Mapping[Key, str | None]
) -> list[str]:
    """After rolling back every run, every employee holds its original value."""
    return [
        f"{key[0]}: holds {held!r} after the rollbacks, originally {original[key]!r}"
        for key, held in sorted(final.items())
        if held != original[key]
    ]


def recovery_findings(logs: Sequence[RunLog], runs: Sequence[JournalRun]) -> list[str]:
    """Each killed run's journal ends `interrupted`, settled by a later run whose output
    says so (once); no run printed a traceback or stopped on a lock."""
    found: list[str] = []
    by_id = {r.run_id: r for r in runs}
    for index, log in enumerate(logs):
        for line in log.stderr.splitlines():
            if "Traceback" in line or "unexpected error" in line or "lock" in line.lower():
                found.append(f"{log.describe()} printed: {line}")
        if log.point is None:
            continue
        for run_id in log.journals:
            run = by_id[run_id]
            end = run.ends[-1] if run.ends else {}
            if end.get("status") != "interrupted" or "settled_by" not in end:
                found.append(f"{log.describe()}: journal {run_id} ends {json.dumps(end)}")
            told = [
                later.number
                for later in logs[index + 1 :]
                if f"recovered: run {run_id} was interrupted" in later.stderr
            ]
            # The run that settles it says so after it wrote the journal: killed in
            # between (an after-settle kill point), it may not have said it yet.
            settler_killed = index + 1 < len(logs) and logs[index + 1].point is not None
            if len(told) > 1 or (not told and not settler_killed):
                found.append(
                    f"{log.describe()}: {len(told)} later runs said they recovered {run_id}"
                )
    return found
