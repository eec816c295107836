"""Delta plans end to end on a real server: one org, one sequence of changes, both servers.

tests/ldap/test_delta_plans_slapd.py and test_delta_plans_samba.py run the same scenario
through the planner (persona_sync.refresh.compute_plan with the state folder's snapshot,
as `plan --delta` does) against slapd and Samba AD: after a full `sync`, each change
(a title, a site, a manager, a manager moved with the subtree below, employees deleted and
added, a rule file touched) is followed by a delta plan that must re-evaluate exactly the
employees the change affects and equal the plan a full read makes. Each server file says
how to make the changes (:class:`Org`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from click.testing import Result

from persona_sync.plan import Plan
from persona_sync.refresh import Refresh, compute_plan
from persona_sync.session import open_session
from persona_sync.snapshot import SNAPSHOT_NAME, Snapshot
from tests.conftest import DEFAULT_RULES
from tests.sync.test_delta import comparable

Run = Callable[..., Result]


@dataclass(frozen=True)
class Person:
    name: str
    title: str
    site: str
    manager: str | None


# Seniority falls back on the depth in the manager chain (rules/facts.yaml: top 10, 1.5 a
# level, +1 for a manager) for titles without a keyword, so the Berlin Plant coordinators'
# personas follow their depth: vip as a manager one level below the CEO, plant-floor from
# three levels down (seniority below 6 at a plant).
ORG = (
    Person("ceo", "Chief Executive Officer", "Munich HQ", None),
    Person("vp", "Vice President Operations", "Munich HQ", "ceo"),
    Person("alice", "Software Engineer", "Munich HQ", "ceo"),
    Person("bob", "Accountant", "Munich HQ", "ceo"),
    Person("carol", "Sales Representative", "Munich HQ", "ceo"),
    Person("lead", "Coordinator", "Berlin Plant", "ceo"),
    Person("r1", "Coordinator", "Berlin Plant", "lead"),
    Person("r2", "Coordinator", "Berlin Plant", "lead"),
    Person("r3", "Coordinator", "Berlin Plant", "r1"),
)
NEWBIE = Person("newbie", "Coordinator", "Berlin Plant", "r3")
EVERYONE = frozenset(p.name for p in ORG)


def person_ldif(dn: Callable[[str], str], person: Person, *extra: str) -> str:
    """``person`` as an inetOrgPerson LDIF record (``dn`` names a person's entry), with
    ``extra`` lines ("employeeNumber: 7") after its attributes."""
    lines = [
        f"dn: {dn(person.name)}",
        "objectClass: inetOrgPerson",
        f"uid: {person.name}",
        f"cn: {person.name.title()}",
        "sn: Person",
        f"title: {person.title}",
        f"physicalDeliveryOfficeName: {person.site}",
        *extra,
    ]
    if person.manager:
        lines.append(f"manager: {dn(person.manager)}")
    return "\n".join(lines) + "\n\n"


class Org(Protocol):
    """The changes the scenario makes, as an administrator, on the server under test."""

    def set(self, name: str, attribute: str, value: str) -> None: ...

    def set_manager(self, name: str, manager: str) -> None: ...

    def delete(self, name: str) -> None: ...

    def add(self, person: Person) -> None: ...


def copy_rules(folder: Path) -> Path:
    """The default rules copied into ``folder``/rules, so a test may touch them."""
    copied = folder / "rules"
    copied.mkdir()
    for path in DEFAULT_RULES.glob("*.yaml"):
        shutil.copyfile(path, copied / path.name)
    return copied


def use_rules(config: Path, rules: Path) -> None:
    text = config.read_text(encoding="utf-8")
    assert f"rules: {DEFAULT_RULES}\n" in text
    config.write_text(text.replace(f"rules: {DEFAULT_RULES}\n", f"rules: {rules}\n"), "utf-8")


def read_lines(result: Result | subprocess.CompletedProcess[str]) -> list[str]:
    """The ``read:`` lines a --delta run printed."""
    return [line for line in result.stderr.splitlines() if line.startswith("read: ")]


@dataclass
class Planner:
    """Delta and full plans for the config in the working directory; ``names`` maps every
    snapshot key seen to the employee's name (the id without the org's prefix)."""

    config: Path
    prefix: str = ""
    names: dict[str, str] = field(default_factory=dict)

    def delta(self) -> Refresh:
        """A delta refresh against the state folder's snapshot, committed (`plan --delta`)."""
        session = open_session(self.config)
        store, fresh = Snapshot.open(session.config.state_dir)
        try:
            with session.directory() as directory:
                refresh = compute_plan(
                    session.config,
                    session.engine,
                    directory,
                    snapshot=store,
                    delta=True,
                    fresh_reason=fresh,
                )
                refresh.commit()
            for row in store.rows():
                assert row.id.startswith(self.prefix), row.id
                self.names[row.key] = row.id[len(self.prefix) :]
        finally:
            store.close()
        return refresh

    def full(self) -> Plan:
        """A full plan in a throw-away snapshot (the state folder's is left alone)."""
        session = open_session(self.config)
        with session.directory() as directory:
            return compute_plan(session.config, session.engine, directory).plan

    def evaluated(self, refresh: Refresh) -> set[str]:
        keys = refresh.summary.evaluated
        assert keys is not None, "a delta re-evaluates a known set"
        return {self.names[key] for key in keys}

    def snapshot_names(self) -> set[str]:
        state = self.config.parent / "state"
        assert (state / SNAPSHOT_NAME).exists()
        with Snapshot.open(state)[0] as store:
            return {row.id[len(self.prefix) :] for row in store.rows()}


def personas(plan: Plan, prefix: str = "") -> dict[str, str | None]:
    """name -> the persona value the plan would write."""
    return {c.employee[len(prefix) :]: c.new for c in plan.changes}


def check(
    planner: Planner,
    step: str,
    evaluated: set[str],
    counts: tuple[int, int, int] | None,
) -> Plan:
    """A delta plan after ``step``: exactly ``evaluated`` re-evaluated, (read, changed,
    removed) as ``counts`` (None: not checked), and the plan a full read makes."""
    refresh = planner.delta()
    summary = refresh.summary
    assert (summary.mode, summary.reason) == ("delta", ""), step
    found = planner.evaluated(refresh)
    assert found == evaluated, f"{step}: re-evaluated {sorted(found)}, not {sorted(evaluated)}"
    assert summary.re_evaluated == len(evaluated), step
    if counts is not None:
        read = (summary.read, summary.changed, summary.removed)
        assert read == counts, f"{step}: (read, changed, removed) {read}, not {counts}"
    assert comparable(refresh.plan) == comparable(planner.full()), step
    return refresh.plan


def delta_equals_full(planner: Planner, step: str, within: set[str]) -> None:
    """A delta plan equals a full plan; if the run stays a delta (a fix may choose a full
    read instead), it re-evaluated only employees in ``within``."""
    refresh = planner.delta()
    assert comparable(refresh.plan) == comparable(planner.full()), step
    if refresh.summary.mode == "delta":
        found = planner.evaluated(refresh)
        assert found <= within, f"{step}: re-evaluated {sorted(found)}, not within {within}"


def scenario(
    org: Org, planner: Planner, rules: Path, target: str, exact_reads: bool = True
) -> None:
    """Every kind of change, one at a time, each followed by a delta plan (after a full
    `sync` wrote everyone's persona in ``target``). ``exact_reads``: the server returns
    exactly the entries changed (else a margin re-reads some, harmlessly, and only what
    changed and what was re-evaluated are checked)."""
    prefix = planner.prefix

    def counts(read: int, changed: int, removed: int) -> tuple[int, int, int] | None:
        return (read, changed, removed) if exact_reads else None

    # The sync's own writes come back: nothing changed, nobody re-evaluated.
    plan = check(planner, "own writes", set(), None)
    assert plan.changes == ()
    assert planner.snapshot_names() == EVERYONE

    org.set("alice", "title", "Cashier")
    plan = check(planner, "a title", {"alice"}, counts(1, 1, 0))
    assert personas(plan, prefix) == {"alice": "frontline"}

    org.set("carol", "physicalDeliveryOfficeName", "Store 7")
    plan = check(planner, "a site", {"carol"}, counts(1, 1, 0))
    assert personas(plan, prefix) == {"alice": "frontline", "carol": "frontline"}

    # someone else writes a persona: not the echo of our own write (the snapshot knows
    # what we wrote), so bob is re-evaluated and the plan puts his back
    org.set("bob", target, "vip")
    plan = check(planner, "a persona overwritten", {"bob"}, counts(1, 1, 0))
    assert personas(plan, prefix)["bob"] == "knowledge-worker"

    # bob one level down; the CEO loses a direct report, the VP gains one
    org.set_manager("bob", "vp")
    check(planner, "a manager", {"bob", "ceo", "vp"}, counts(1, 1, 0))

    # lead moves below the VP and takes r1, r2 and r3 one level down; the CEO loses a
    # report, the VP gains one
    org.set_manager("lead", "vp")
    plan = check(
        planner, "a moved manager", {"lead", "r1", "r2", "r3", "ceo", "vp"}, counts(1, 1, 0)
    )
    moved = personas(plan, prefix)
    assert {name: moved.get(name) for name in ("lead", "r2")} == {
        "lead": "knowledge-worker",
        "r2": "plant-floor",
    }

    # r2 leaves (lead loses a report), newbie joins below r3 (r3 becomes a manager)
    org.delete("r2")
    org.add(NEWBIE)
    check(planner, "deleted and added", {"newbie", "lead", "r3"}, counts(1, 1, 1))
    assert planner.snapshot_names() == (EVERYONE - {"r2"}) | {"newbie"}

    # A comment in a rule file: new checksum, everyone re-evaluated from the snapshot,
    # nothing read.
    personas_file = rules / "personas.yaml"
    personas_file.write_text(personas_file.read_text("utf-8") + "\n# reviewed\n", "utf-8")
    refresh = planner.delta()
    summary = refresh.summary
    assert (summary.mode, summary.evaluated, summary.re_evaluated) == ("delta", None, len(ORG))
    assert (summary.changed, summary.removed) == (0, 0)
    if exact_reads:
        assert summary.read == 0
    assert summary.notes[-1] == (
        "the rules or the config changed since the snapshot was computed: every employee "
        "re-evaluated from the snapshot"
    )
    assert comparable(refresh.plan) == comparable(planner.full())
    # and once recomputed, the next delta is quiet again
    check(planner, "after the rules", set(), counts(0, 0, 0))


# `sync --delta` in a child that SIGKILLs itself right after the run's journal ended (the
# end record is written by then), before the snapshot and its cursor are saved: a crash
# between the writes and the cursor save. The product has no hook for this; the child
# patches the method that records the results in the snapshot.
KILLED_SYNC = textwrap.dedent(
    """\
    import os, sys
    from datetime import timedelta
    from persona_sync.directory import ldap_csn
    from persona_sync.refresh import Refresh

    ldap_csn.CSN_MARGIN = timedelta(0)  # as the slapd tests' no_margin (unused on AD)

    def killed(self, results, run_id):
        os.kill(os.getpid(), 9)

    Refresh.record = killed
    from persona_sync.cli.main import main

    sys.argv = ["persona-sync", "sync", "--delta"]
    main()
    """
)


def killed_sync(folder: Path) -> subprocess.CompletedProcess[str]:
    """Run KILLED_SYNC in ``folder`` (its config, its state folder)."""
    return subprocess.run(
        [sys.executable, "-c", KILLED_SYNC],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
