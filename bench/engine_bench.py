"""Throughput of the persona engine on the default catalog, against a hand-written yardstick.

Run from the repository root::

    python bench/engine_bench.py                      # 1,000,000 employees
    python bench/engine_bench.py --employees 200000 --seed 7 --json

What it does, in one process on one core:

1. Builds N employees from the demo company (``persona_sync.demo.generate``, not timed):
   one company of up to 20,000 people (titles, departments, sites, employee types,
   disabled and service accounts, HR grades and flags, managers, quirks), repeated as
   subsidiaries (``DC=copyK`` in every DN, ``.K`` after every account name, managers
   within the copy) until there are N. Attribute values are shared between copies, as a
   directory's repeat; ids, DNs and manager links are each employee's own. Each employee
   holds the attributes the catalog reads and ``manager``, as the directory readers hand
   them over. The org chart is built once over everyone (not timed).
2. Times, chunk by chunk (50,000 employees): ``Engine.decide(employee, position)`` (fact
   derivation included), the hand-written yardstick (bench/yardstick.py) on the same
   employees and positions, and ``Engine.facts`` alone. Each measurement of a chunk is
   ``timeit`` with ``time.process_time``, best of ``--repeat`` (timeit turns garbage
   collection off while it runs); the chunk's figures are added up.
3. Prints both rates and their ratio, and checks that the engine and the yardstick give
   every employee the same persona and rule. Any mismatch is printed and the exit status
   is 1.

Rates are per CPU second of this process, so a busy neighbour on a shared machine does not
count against either side; the measurements take turns per chunk, so a slowdown hits them
alike. Targets (shared/notes/rule-engine-peers.md, issue 10): engine >= 0.5x hand-written;
floor 200,000/s.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
import timeit
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from yardstick import Assignment, hand_written_decider  # bench/yardstick.py, beside this file

from persona_sync.demo.generate import BASE_DN, generate_company
from persona_sync.employee import Employee
from persona_sync.rules.engine import Decision, Engine
from persona_sync.rules.loader import load_rules
from persona_sync.rules.orgchart import MANAGER_ATTRIBUTE, Position, build_org_chart

DEFAULT_EMPLOYEES = 1_000_000
DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules"
COMPANY = 20_000  # people in one generated company; larger directories repeat it
CHUNK = 50_000  # the measurements take turns per chunk
FLOOR = 200_000  # employees/s, the floor
AIM = 0.5  # engine / hand-written, from the peers note

Case = tuple[Employee, Position | None]


def directory(count: int, seed: int, attributes: Sequence[str]) -> list[Employee]:
    """``count`` employees: the demo company, repeated as subsidiaries (see the module doc)."""
    wanted = {*attributes, MANAGER_ATTRIBUTE}
    company = []
    for entry in generate_company(max(min(count, COMPANY), 300), seed):
        values: dict[str, str] = {}
        for name, value in entry.attributes:
            key = name.lower()
            if key in wanted and key not in values:
                values[key] = value
        company.append((entry.value("sAMAccountName") or entry.dn, entry.dn, values))
    employees = [Employee(uid, dn, values) for uid, dn, values in company[:count]]
    copy = 0
    while len(employees) < count:
        copy += 1
        where = f"DC=copy{copy},{BASE_DN}"
        for uid, dn, values in company[: count - len(employees)]:
            moved = dict(values)
            if MANAGER_ATTRIBUTE in moved:
                moved[MANAGER_ATTRIBUTE] = moved[MANAGER_ATTRIBUTE].replace(BASE_DN, where)
            employees.append(Employee(f"{uid}.{copy}", dn.replace(BASE_DN, where), moved))
    return employees


def _best(run: Callable[[], Any], repeat: int) -> float:
    """Best CPU seconds of ``repeat`` runs (timeit: garbage collection off while timed)."""
    return min(timeit.Timer(run, timer=time.process_time).repeat(repeat=repeat, number=1))


def measure(
    cases: list[Case], rules: Path, repeat: int
) -> tuple[dict[str, float], list[tuple[Decision, ...]], list[Assignment]]:
    """CPU seconds per measurement, and every employee's decision from both sides.

    The facts measurement has an engine of its own, so the memo it fills cannot speed up
    ``decide``.
    """
    rule_set = load_rules([rules])
    decide = Engine(rule_set).decide
    facts = Engine(rule_set).facts
    by_hand = hand_written_decider()
    seconds = dict.fromkeys(("decide", "hand_written", "facts"), 0.0)
    engine_results: list[tuple[Decision, ...]] = []
    hand_results: list[Assignment] = []
    for start in range(0, len(cases), CHUNK):
        chunk = cases[start : start + CHUNK]
        decided: list[list[tuple[Decision, ...]]] = [[]]
        assigned: list[list[Assignment]] = [[]]

        def run_engine(chunk: list[Case] = chunk, out: list[Any] = decided) -> None:
            out[0] = [decide(e, p) for e, p in chunk]

        def run_hand(chunk: list[Case] = chunk, out: list[Any] = assigned) -> None:
            out[0] = [by_hand(e, p) for e, p in chunk]

        def run_facts(chunk: list[Case] = chunk) -> None:
            [facts(e, p) for e, p in chunk]

        seconds["decide"] += _best(run_engine, repeat)
        seconds["hand_written"] += _best(run_hand, repeat)
        seconds["facts"] += _best(run_facts, repeat)
        engine_results.extend(decided[0])
        hand_results.extend(assigned[0])
    return seconds, engine_results, hand_results


def run(count: int, seed: int, rules: Path, repeat: int) -> dict[str, Any]:
    started = time.perf_counter()
    rule_set = load_rules([rules])
    if len(rule_set.scenarios) != 1:
        raise SystemExit(f"{rules}: this bench expects one scenario, got {len(rule_set.scenarios)}")
    generating = time.perf_counter()
    employees = directory(count, seed, rule_set.attributes)
    generate_seconds = time.perf_counter() - generating
    charting = time.perf_counter()
    chart = build_org_chart(employees)
    chart_seconds = time.perf_counter() - charting
    cases = [(e, chart.position(e)) for e in employees]
    gc.collect()
    gc.freeze()  # the directory lives for the whole run: keep it out of collections
    prepared_mb = _peak_mb()

    seconds, engine_results, hand_results = measure(cases, rules, repeat)

    mismatches = 0
    examples: list[dict[str, Any]] = []
    distribution: Counter[str] = Counter()
    for (employee, position), decisions, expected in zip(
        cases, engine_results, hand_results, strict=True
    ):
        got = (decisions[0].persona, decisions[0].rule)
        distribution[got[0] or "(out of scope)"] += 1
        if got != expected:
            mismatches += 1
            if len(examples) < 5:
                examples.append(
                    {
                        "id": employee.id,
                        "dn": employee.dn,
                        "attributes": dict(employee.attributes),
                        "position": None
                        if position is None
                        else [position.depth, position.direct_reports],
                        "engine": list(got),
                        "hand_written": list(expected),
                    }
                )
    engine_rate = count / seconds["decide"]
    hand_rate = count / seconds["hand_written"]
    ratio = engine_rate / hand_rate
    return {
        "employees": count,
        "seed": seed,
        "repeat": repeat,
        "rules": str(rules),
        "distinct_titles": len({e.attributes.get("title") for e in employees}),
        "generate_seconds": round(generate_seconds, 2),
        "org_chart_seconds": round(chart_seconds, 2),
        "org_chart_problems": len(chart.problems),
        "engine_decide_per_s": round(engine_rate),
        "engine_decide_seconds": round(seconds["decide"], 3),
        "hand_written_per_s": round(hand_rate),
        "hand_written_seconds": round(seconds["hand_written"], 3),
        "engine_vs_hand_written": round(ratio, 3),
        "engine_facts_per_s": round(count / seconds["facts"]),
        "engine_facts_seconds": round(seconds["facts"], 3),
        "aim_vs_hand_written": AIM,
        "floor_per_s": FLOOR,
        "meets_aim": ratio >= AIM,
        "meets_floor": engine_rate >= FLOOR,
        "mismatches": mismatches,
        "mismatch_examples": examples,
        "peak_rss_mb_before_timing": round(prepared_mb, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
        "persona_distribution": dict(distribution.most_common()),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "python": sys.version.split()[0],
    }


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _rate_line(label: str, summary: dict[str, Any], key: str) -> str:
    return (
        f"{label:<22} {summary[key + '_per_s']:>10,} employees/s  "
        f"({summary[key + '_seconds']:.2f} s CPU)"
    )


def render(summary: dict[str, Any]) -> str:
    n = summary["employees"]
    ratio = summary["engine_vs_hand_written"]
    lines = [
        f"employees              {n:,} (demo company, seed {summary['seed']}, "
        f"{summary['distinct_titles']} distinct titles), built in "
        f"{summary['generate_seconds']:.1f} s; org chart {summary['org_chart_seconds']:.1f} s "
        f"({summary['org_chart_problems']:,} broken chains) (neither timed)",
        f"rules                  {summary['rules']}",
        f"employees/s per CPU second of this process, best of {summary['repeat']} per chunk",
        _rate_line("engine.decide", summary, "engine_decide"),
        _rate_line("hand-written yardstick", summary, "hand_written"),
        f"engine / hand-written  {ratio:.3f}x  (aim >= {AIM}x: "
        f"{'met' if summary['meets_aim'] else 'NOT met'}; floor {FLOOR:,}/s: "
        f"{'met' if summary['meets_floor'] else 'NOT met'})",
        _rate_line("engine.facts alone", summary, "engine_facts"),
        f"mismatches             {summary['mismatches']:,}",
    ]
    for example in summary["mismatch_examples"]:
        lines.append(
            f"  {example['id']}: engine {tuple(example['engine'])}, hand-written "
            f"{tuple(example['hand_written'])}, attributes {example['attributes']}"
        )
    lines.append(
        f"peak memory            {summary['peak_rss_mb']:,.0f} MB (ru_maxrss; "
        f"{summary['peak_rss_mb_before_timing']:,.0f} MB before timing)"
    )
    lines.append("personas")
    for persona, count in summary["persona_distribution"].items():
        lines.append(f"  {persona:<18} {count:>10,}  {100 * count / n:5.1f}%")
    lines.append(
        f"wall time              {summary['wall_seconds']:.1f} s (Python {summary['python']})"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--employees",
        type=int,
        default=DEFAULT_EMPLOYEES,
        metavar="N",
        help=f"employees to build (default {DEFAULT_EMPLOYEES:,})",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per chunk and measurement, best kept"
    )
    parser.add_argument(
        "--rules",
        type=Path,
        default=DEFAULT_RULES,
        help="rule folder (default rules/, the default catalog)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead")
    args = parser.parse_args(argv)
    if args.employees < 1:
        parser.error("--employees must be at least 1")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    summary = run(args.employees, args.seed, args.rules, args.repeat)
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 1 if summary["mismatches"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
