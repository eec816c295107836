"""Proof, crash safety (issue 9): 5,000+ changes, `persona-sync sync` SIGKILLed at 20 seeded
points, against a real slapd and against the Graph fake.

After each kill the next unattended run (plain `sync`: no flags, nobody deletes a lock or
edits a journal) proceeds; after the last, one more converges: exit 0, and a plan shows no
change. Then, checked against the server's own write log (slapd's auditlog overlay, the
fake's `writes`):
- the journals list exactly the writes that happened: every server write is one
  `applied` outcome, every `applied` outcome one server write (no missing, no phantom);
- every write set the value the plan proposed, once; every employee ends with its
  planned value, or its original one;
- rolling back every run, newest first, restores every original value, and the rollback
  journals list exactly the rollback writes.

Run with `pytest -m proof tests/proof` (excluded from the default run).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.proof.conftest import SEED, Setup
from tests.proof.crash import Campaign, KillPoint, kill_points
from tests.proof.invariants import (
    journal_findings,
    recovery_findings,
    restored_findings,
    value_findings,
)
from tests.proof.journals import Key, change_key, read_journals, value

pytestmark = pytest.mark.proof

KILLS = 20
MIN_CHANGES = 5000


@pytest.mark.servers
def test_slapd_survives_sigkills(slapd_company: Setup) -> None:
    prove(slapd_company, journal_batch=1000, read_back=False)


def test_graph_survives_sigkills(graph_company: Setup) -> None:
    prove(graph_company, journal_batch=2000, read_back=True)


def prove(setup: Setup, *, journal_batch: int, read_back: bool) -> None:
    target, campaign = setup.target, setup.campaign
    planning = campaign.cli("plan", "-o", "plan.json")
    assert planning.returncode == 2, planning.stderr
    planned = _planned(campaign.workspace / "plan.json")
    assert len(planned) >= MIN_CHANGES, planning.stderr
    original = target.values()

    for point in kill_points(SEED, journal_batch=journal_batch, read_back=read_back, kills=KILLS):
        left = len(planned) - target.write_count()
        assert left >= 2, f"the kills used up the changes: {_summary(campaign, [], Counter())}"
        if point.kind == "write" and point.count >= left:  # keep the run from finishing
            point = KillPoint("write", left // 2)
        campaign.sync_killed_at(point)
    converged = campaign.cli("sync")
    after = campaign.cli("plan", "--format", "json")
    findings = []
    if converged.returncode != 0:
        findings.append(f"{converged.describe()}: {converged.stderr[-2000:]}")
    if after.returncode != 0:  # plan: 0 no changes, 2 changes pending
        findings.append(f"{after.describe()}: a plan after convergence: {after.stderr[-1500:]}")

    server = target.server_writes()
    runs = read_journals(campaign.journal_dir)
    findings += journal_findings(runs, server)
    findings += value_findings(original, planned, target.values(), server)
    findings += recovery_findings(campaign.runs, runs)
    outcomes = Counter(o["result"] for run in runs for o in run.outcomes().values())
    for status in ("conflict", "failed", "unknown"):
        if outcomes[status]:
            findings.append(f"{outcomes[status]} outcomes {status!r}; nobody else edits here")

    # Rollback: every sync run that applied something, newest first.
    writing = [r for r in runs if any(o["result"] == "applied" for o in r.outcomes().values())]
    for run in reversed(writing):
        undone = campaign.cli("rollback", run.run_id)
        if undone.returncode != 0:
            findings.append(f"{undone.describe()}: {undone.stderr[-1500:]}")
    rollbacks = [r for r in read_journals(campaign.journal_dir) if r.command == "rollback"]
    findings += journal_findings(rollbacks, target.server_writes()[len(server) :])
    findings += restored_findings(original, target.values())

    summary = _summary(campaign, server, outcomes)
    print(summary)
    assert not findings, (
        f"{len(findings)} findings (seed {SEED}):\n"
        + "\n".join(findings[:25])
        + ("\n..." if len(findings) > 25 else "")
        + f"\n\n{summary}"
    )


def _planned(path: Path) -> dict[Key, str | None]:
    plan = json.loads(path.read_text(encoding="utf-8"))
    return {change_key(c["dn"], c["attribute"]): value(c["new"]) for c in plan["changes"]}


def _summary(campaign: Campaign, server: Sequence[object], outcomes: Counter[str]) -> str:
    """Each run with the server's writes during it, and what its journal ended with (for a
    killed run: how many outcomes the next run settled by reading back)."""
    runs = {r.run_id: r for r in read_journals(campaign.journal_dir)}
    lines = [f"{len(server)} server writes before the rollbacks; outcomes {dict(outcomes)}"]
    for log in campaign.runs:
        line = log.summary()
        for run_id in log.journals:
            outcomes_of = list(runs[run_id].outcomes().values()) if run_id in runs else []
            counted = Counter(o["result"] for o in outcomes_of)
            settled = Counter(o["result"] for o in outcomes_of if "settled_by" in o)
            line += f"; journal {run_id} {runs[run_id].status if run_id in runs else '?'}"
            line += f" {dict(counted)}" + (
                f", settled on recovery {dict(settled)}" if settled else ""
            )
        lines.append(line)
    return "\n".join(lines)
