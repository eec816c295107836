"""Delta runs with a feed on the file backend: a changed feed row re-evaluates the employee
it joins and nobody else, and the delta plan stays the plan a full read makes."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from persona_sync.demo.generate import generate_company, ldif_bytes
from persona_sync.refresh import compute_plan
from persona_sync.session import open_session
from persona_sync.snapshot import SNAPSHOT_NAME, Snapshot
from persona_sync.workflow import make_plan
from tests.conftest import DEFAULT_RULES
from tests.feeds.conftest import FeedWorkspace
from tests.sync.test_delta import TARGET, comparable, delta, full, keys

Run = Callable[..., Any]
JSMITH = "CN=Smith\\, John,OU=People,DC=example,DC=com"
JMULLER = "CN=Müller\\, Jörg,OU=People,DC=example,DC=com"
LEGACY = "CN=Legacy,OU=People,DC=example,DC=com"


def test_a_changed_row_re_evaluates_the_employee_it_joins_only(workspace: FeedWorkspace) -> None:
    session = open_session(workspace.config)
    make_plan(session, session.directory())
    workspace.edit_feed("1002,G9,remote", "1002,G3,remote")
    refresh = delta(session)
    assert refresh.summary.mode == "delta"
    assert keys(refresh) == [JSMITH]
    # the directory file is unchanged: no entry read, one employee re-evaluated
    assert (refresh.summary.read, refresh.summary.changed, refresh.summary.re_evaluated) == (
        0,
        0,
        1,
    )
    assert refresh.summary.notes[-1] == (
        "feed hr: 1 row changed, 0 added, 0 removed; 1 employee joined to them"
    )
    assert comparable(refresh.plan) == comparable(full(session))
    jsmith = [c for c in refresh.plan.changes if c.employee == "jsmith"]
    assert [(c.old, c.new) for c in jsmith] == [("engineer", "clinician")]


def test_the_read_lines_say_what_the_feed_did(workspace: FeedWorkspace, run_cli: Run) -> None:
    assert run_cli("plan", "-q").exit_code == 2
    same = run_cli("plan", "--delta", "--format", "json")
    assert same.stderr.splitlines()[:3] == [
        "read: delta since the last read: 0 entries read, 0 changed, 0 removed; "
        "0 employees re-evaluated",
        "read: the file is unchanged",
        "read: feed hr: no row changed",
    ]
    workspace.edit_feed("1003,G4,hybrid\n", "1003,G5,hybrid\n1004,G2,onsite\n")
    workspace.edit_feed("9999,G5,remote\n", "")
    moved = run_cli("plan", "--delta", "--format", "json")
    assert moved.stderr.splitlines()[:3] == [
        "read: delta since the last read: 0 entries read, 0 changed, 0 removed; "
        "1 employees re-evaluated",
        "read: the file is unchanged",
        "read: feed hr: 1 row changed, 1 added, 1 removed; 1 employee joined to them",
    ]


def test_added_and_removed_rows(workspace: FeedWorkspace) -> None:
    session = open_session(workspace.config)
    make_plan(session, session.directory())
    # legacy gets a number and a row; jmuller's row goes
    workspace.edit("sAMAccountName: legacy\n", "sAMAccountName: legacy\nemployeeNumber: 1004\n")
    workspace.edit_feed("1003,G4,hybrid\n", "1004,G2,onsite\n")
    refresh = delta(session)
    assert keys(refresh) == [LEGACY, JMULLER]
    assert refresh.summary.changed == 1  # legacy's entry; jmuller's only through the feed
    assert comparable(refresh.plan) == comparable(full(session))
    assert refresh.plan.summary["feeds"]["hr"]["employees_without_row_examples"] == ["jmuller"]


def test_a_changed_join_attribute_re_evaluates_through_the_directory_delta(
    workspace: FeedWorkspace,
) -> None:
    session = open_session(workspace.config)
    make_plan(session, session.directory())
    workspace.edit("employeeNumber: 1003", "employeeNumber: 9999")  # jmuller, now G5
    refresh = delta(session)
    assert keys(refresh) == [JMULLER]
    assert refresh.summary.notes[-1] == "feed hr: no row changed"
    plan = refresh.plan
    assert comparable(plan) == comparable(full(session))
    assert plan.summary["feeds"]["hr"]["rows_without_employee_examples"] == [
        {"key": "1003", "line": 4}
    ]


def test_a_feed_row_that_only_moved_is_no_change(workspace: FeedWorkspace) -> None:
    session = open_session(workspace.config)
    make_plan(session, session.directory())
    lines = workspace.feed.read_text().splitlines(keepends=True)
    workspace.feed.write_text("".join([lines[0], *reversed(lines[1:])]), encoding="utf-8")
    refresh = delta(session)
    assert keys(refresh) == []
    assert refresh.summary.notes[-1] == "feed hr: no row changed"
    assert comparable(refresh.plan) == comparable(full(session))
    assert refresh.plan.summary["feeds"]["hr"]["rows_without_employee_examples"] == [
        {"key": "9999", "line": 2}
    ]


def test_a_feed_added_or_removed_in_the_config_re_evaluates_everyone(
    workspace: FeedWorkspace,
) -> None:
    with_feed = workspace.config.read_text()
    workspace.config.write_text(with_feed.split("feeds:")[0])
    session = open_session(workspace.config)
    make_plan(session, session.directory())
    workspace.config.write_text(with_feed)
    session = open_session(workspace.config)
    refresh = delta(session)
    # the join attribute is new to the snapshot: read in full
    assert (refresh.summary.mode, refresh.summary.reason) == (
        "full",
        "the rules now read attributes the snapshot does not hold (employeenumber): full read",
    )
    assert comparable(refresh.plan) == comparable(full(session))
    workspace.config.write_text(with_feed.split("feeds:")[0])
    session = open_session(workspace.config)
    refresh = delta(session)
    assert refresh.summary.mode == "delta" and refresh.summary.evaluated is None
    assert comparable(refresh.plan) == comparable(full(session))
    with Snapshot.open(workspace.state)[0] as store:
        assert store.get("feeds") == {}
        assert store.feed_digests("hr") == {}


def test_a_crash_before_the_snapshot_save_reads_the_feed_again(
    workspace: FeedWorkspace, run_cli: Run
) -> None:
    assert run_cli("sync", "-q").exit_code == 0
    before = (workspace.state / SNAPSHOT_NAME).read_bytes()
    workspace.edit_feed("1002,G9,remote", "1002,G3,remote")
    session = open_session(workspace.config)
    store, _fresh = Snapshot.open(session.config.state_dir)
    with session.directory() as directory:
        compute_plan(session.config, session.engine, directory, snapshot=store, delta=True)
    store.close()  # not committed: as if the run died
    assert (workspace.state / SNAPSHOT_NAME).read_bytes() == before
    refresh = delta(session)
    assert keys(refresh) == [JSMITH]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_feed_and_directory_edits_delta_plan_equals_full_plan(
    tmp_path: Path, seed: int
) -> None:
    """The directory delta test's edits, and feed edits beside them (grades changed, rows
    dropped and added, join values moved): one delta after each batch, always the full
    plan."""
    company = generate_company(400, seed=seed)
    path, feed = tmp_path / "company.ldif", tmp_path / "hr.csv"
    config = tmp_path / "persona-sync.yaml"
    config.write_text(
        f"rules: {DEFAULT_RULES}\ndirectory: {{type: file, path: company.ldif, "
        "id_attributes: [sAMAccountName]}\n"
        f"targets: {{persona: {TARGET}}}\nstate_dir: state\n"
        "feeds:\n  hr: {path: hr.csv, key: work_email, matches: mail, max_shrink_percent: 100}\n",
        encoding="utf-8",
    )
    rng = random.Random(seed)
    entries = list(company)
    mails = [m for e in entries if (m := e.value("mail"))]
    grades = {m: f"G{rng.randint(1, 10)}" for m in mails if rng.random() < 0.8}
    grades["nobody@contoso.example"] = "G5"

    def write() -> None:
        path.write_bytes(ldif_bytes(entries))
        feed.write_text(
            "work_email,grade\n" + "".join(f"{m},{g}\n" for m, g in grades.items()),
            encoding="utf-8",
        )

    write()
    session = open_session(config)
    make_plan(session, session.directory())
    titles = [e.value("title") for e in entries if e.value("title")]
    for _round in range(4):
        for _ in range(15):
            kind = rng.choice(["grade", "drop", "add", "mail", "title", "delete"])
            if kind == "grade" and grades:
                grades[rng.choice(sorted(grades))] = f"G{rng.randint(1, 10)}"
            elif kind == "drop" and grades:
                del grades[rng.choice(sorted(grades))]
            elif kind == "add":
                grades[rng.choice(mails).upper()] = f"G{rng.randint(1, 10)}"  # case differs
            else:
                i = rng.randrange(len(entries))
                entry = entries[i]
                name = {"mail": "mail", "title": "title"}.get(kind, "")
                attributes = [(n, v) for n, v in entry.attributes if n.lower() != name]
                if kind == "mail":
                    attributes.append(("mail", rng.choice([*mails, "new@contoso.example"])))
                elif kind == "title":
                    attributes.append(("title", rng.choice(titles) or "Cashier"))
                if kind == "delete":
                    entries.pop(i)
                else:
                    entries[i] = type(entry)(entry.dn, tuple(attributes))
        grades = _unique(grades)
        write()
        refresh = delta(session)
        assert refresh.summary.mode == "delta"
        assert comparable(refresh.plan) == comparable(full(session))


def _unique(grades: dict[str, str]) -> dict[str, str]:
    """One row per address whatever its case (a feed refuses duplicate keys)."""
    seen: dict[str, tuple[str, str]] = {}
    for mail, grade in grades.items():
        seen[mail.casefold()] = (mail, grade)
    return dict(seen.values())
