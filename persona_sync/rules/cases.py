"""Rule tests: YAML cases of employee attributes and the persona each should get.

A case file::

    cases:
      - name: Trauma surgeon is a VIP
        attributes: { title: Trauma Surgeon, department: Emergency Medicine }
        expect: vip

``expect`` is a persona id, or ``out-of-scope``, ``leave`` or ``clear``; with several
scenarios, a mapping of scenario id to one of those. ``org`` gives the employee's place in
the org chart (``depth``, ``direct_reports``) for facts that read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from persona_sync.employee import Employee
from persona_sync.errors import Location, ValidationFailed
from persona_sync.located import model_keys, validate_document
from persona_sync.rules.engine import Decision, Engine
from persona_sync.rules.loader import load_documents, rule_files
from persona_sync.rules.model import RuleSet
from persona_sync.rules.orgchart import Position
from persona_sync.rules.spec import StrictModel

SPECIAL_OUTCOMES = {"out-of-scope": "out_of_scope", "leave": "leave", "clear": "clear"}


class OrgSpec(StrictModel):
    depth: int = Field(ge=0, description="Levels below the top of the manager chain.")
    direct_reports: int = Field(0, ge=0)


class CaseSpec(StrictModel):
    name: str = Field(min_length=1)
    id: str | None = Field(None, description="Account name shown in output (default: the name).")
    dn: str | None = None
    attributes: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="Attribute name -> value, as the directory would hold it; a feed's "
        "columns as <feed>.<column>, e.g. {title: Nurse, hr.grade: 7}.",
    )
    org: OrgSpec | None = None
    expect: str | dict[str, str] = Field(
        description="Persona id, out-of-scope, leave or clear; or scenario id -> one of those."
    )


class CaseFile(StrictModel):
    schema_: str | None = Field(None, alias="$schema")
    cases: list[CaseSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Case:
    name: str
    location: Location
    employee: Employee
    position: Position | None
    expect: dict[str, str]


@dataclass(frozen=True)
class CaseResult:
    case: Case
    decisions: tuple[Decision, ...]
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def load_cases(paths: Sequence[Path], rule_set: RuleSet) -> list[Case]:
    """Load case files, checking every expectation names a known scenario and persona."""
    files, errors = rule_files(paths)
    cases: list[Case] = []
    keys = model_keys(CaseFile)
    scenario_ids = [s.id for s in rule_set.scenarios]
    for _path, doc in load_documents(files, "file is empty: a case file lists cases", errors):
        spec, problems = validate_document(CaseFile, doc, keys)
        errors.extend(problems)
        if spec is None:
            continue
        for index, case in enumerate(spec.cases):
            where = ("cases", index, "expect")
            if isinstance(case.expect, str):
                if len(scenario_ids) > 1:
                    errors.append(
                        doc.error(
                            where,
                            f"the rules have scenarios {', '.join(scenario_ids)}: "
                            "give expect as a mapping of scenario to persona",
                        )
                    )
                    continue
                expect = {scenario_ids[0]: case.expect}
            else:
                expect = dict(case.expect)
                for scenario in expect:
                    if scenario not in scenario_ids:
                        errors.append(
                            doc.error(
                                (*where, scenario),
                                f"unknown scenario '{scenario}' (known: {', '.join(scenario_ids)})",
                                key=True,
                            )
                        )
            for scenario, value in expect.items():
                if value not in rule_set.personas and value not in SPECIAL_OUTCOMES:
                    path_key = where if isinstance(case.expect, str) else (*where, scenario)
                    errors.append(
                        doc.error(
                            path_key,
                            f"unknown persona '{value}' (expect a persona id, "
                            "out-of-scope, leave or clear)",
                        )
                    )
            attributes = {
                k.lower(): (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in case.attributes.items()
            }
            employee = Employee(case.id or case.name, case.dn or f"case:{case.name}", attributes)
            position = Position(case.org.depth, case.org.direct_reports) if case.org else None
            cases.append(Case(case.name, doc.locate(("cases", index)), employee, position, expect))
    ValidationFailed.raise_if_any(errors)
    return cases


def run_case(engine: Engine, case: Case) -> CaseResult:
    decisions = engine.decide(case.employee, case.position)
    failures = []
    for decision in decisions:
        wanted = case.expect.get(decision.scenario)
        if wanted is None:
            continue
        got = _outcome_name(decision)
        if got != wanted:
            rule = f" (rule {decision.rule})" if decision.outcome == "matched" else ""
            prefix = f"{decision.scenario}: " if len(decisions) > 1 else ""
            failures.append(f"{prefix}expected {wanted}, got {got}{rule}")
    return CaseResult(case, decisions, tuple(failures))


def _outcome_name(decision: Decision) -> str:
    if decision.persona is not None:
        return decision.persona
    return {"out_of_scope": "out-of-scope"}.get(decision.outcome, decision.outcome)
