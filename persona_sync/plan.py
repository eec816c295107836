"""Plans: what a run would change, as immutable values with a deterministic checksum.

:class:`Evaluator` decides one employee and diffs its target attributes;
:func:`assemble_plan` builds the plan from every employee's result (the read and the
snapshot that feed them are :mod:`persona_sync.refresh`). A plan is evidence for auditors
and the contract for ``apply``: it records its provenance (tool version, rules and config
checksums, directory) and a checksum over the whole of it (changes, summary, provenance,
foreign values and skipped changes), so a plan that was edited or damaged after it was made
is refused, and one made for other rules, another config or another directory is refused
too. The checksum is a digest, not a signature: it proves the file is what ``plan`` wrote,
not who wrote it; keep plan files where only the people who may apply them can write.
"""

from __future__ import annotations

import functools
import hashlib
import json
import marshal
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, overload

from persona_sync import __version__
from persona_sync.config import LoadedConfig
from persona_sync.directory.base import Change, Directory, same_value
from persona_sync.employee import Employee
from persona_sync.errors import ConfigError, PlanError
from persona_sync.feed_join import feed_of
from persona_sync.logs import get_logger
from persona_sync.rules.engine import Decision, Engine, walk_tests
from persona_sync.rules.model import RuleSet
from persona_sync.rules.orgchart import (
    MANAGER_ATTRIBUTE,
    ChartBuilder,
    OrgChart,
    Position,
    build_org_chart,
    normalize_dn,
)
from persona_sync.snapshot import PlanItem

log = get_logger(__name__)

PLAN_FORMAT = "persona-sync-plan"
PLAN_VERSION = 1
EMPTY = "(empty)"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class PlannedChange:
    employee: str
    dn: str
    scenario: str
    attribute: str
    old: str | None
    new: str | None
    persona: str | None
    rule: str | None
    facts: Mapping[str, Any] = field(default_factory=dict)
    # The employee's stable id in the snapshot (objectGUID, entryUUID, Graph object id):
    # an apply records its results by it. None in plans made before it was written.
    key: str | None = None

    def to_change(self) -> Change:
        return Change(
            self.employee,
            self.dn,
            self.attribute,
            self.old,
            self.new,
            self.persona,
            self.rule,
            self.scenario,
            self.key,
        )


@dataclass(frozen=True)
class ForeignValue:
    """A target attribute holding something that is not a persona: left alone."""

    employee: str
    dn: str
    scenario: str
    attribute: str
    value: str
    wanted: str | None


@dataclass(frozen=True)
class SkippedChange:
    """A change the directory cannot make here, e.g. a synced user's on-premises attribute."""

    employee: str
    dn: str
    scenario: str
    attribute: str
    old: str | None
    new: str | None
    reason: str


@dataclass(frozen=True)
class Provenance:
    tool_version: str
    rules_checksum: str
    config_checksum: str
    directory: str
    created: str
    # Feed name -> path, checksum, rows, modified (None without feeds: the plan keeps the
    # shape and checksum it had before feeds existed).
    feeds: Mapping[str, Any] | None = None


def _provenance_dict(provenance: Provenance) -> dict[str, Any]:
    data = asdict(provenance)
    if data["feeds"] is None:
        del data["feeds"]
    return data


class StoredChanges(Sequence[PlannedChange]):
    """A plan's changes as the snapshot keeps them, in the plan's order: each change's
    canonical JSON text in UTF-8 (see :func:`canonical_json`; the bytes the plan file and
    its checksum hold, never decoded), its scenario and "old -> new", and
    its fields marshalled (the facts in the order the rule reads them, which the sorted
    text loses and the Markdown report shows).

    The plan file and its checksum are made from the texts as they are; the
    :class:`PlannedChange` values are decoded on first use (an apply, the table). A delta
    plan of 10,000 changes is written without decoding or encoding one.
    """

    __slots__ = ("texts", "moves", "_packed", "_values")

    def __init__(
        self, texts: list[bytes], moves: list[tuple[str, str]], packed: list[bytes]
    ) -> None:
        self.texts = texts
        self.moves = moves
        self._packed = packed
        self._values: tuple[PlannedChange, ...] | None = None

    def _decoded(self) -> tuple[PlannedChange, ...]:
        if self._values is None:
            unpack = marshal.loads
            self._values = tuple(PlannedChange(**unpack(fields)) for fields in self._packed)
            self._packed = []
        return self._values

    def __len__(self) -> int:
        return len(self.texts)

    @overload
    def __getitem__(self, index: int) -> PlannedChange: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[PlannedChange]: ...
    def __getitem__(self, index: int | slice) -> PlannedChange | Sequence[PlannedChange]:
        return self._decoded()[index]

    def __iter__(self) -> Iterator[PlannedChange]:
        return iter(self._decoded())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StoredChanges):
            return self.texts == other.texts
        return isinstance(other, tuple) and self._decoded() == other

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Plan:
    changes: Sequence[PlannedChange]  # a tuple, or StoredChanges
    foreign: tuple[ForeignValue, ...]
    summary: Mapping[str, Any]
    provenance: Provenance
    skipped: tuple[SkippedChange, ...] = ()

    @functools.cached_property
    def change_dicts(self) -> list[dict[str, Any]]:
        """The changes as JSON-ready dicts (built once: large plans have 100,000)."""
        return [_change_dict(c) for c in self.changes]

    @functools.cached_property
    def change_texts(self) -> list[str]:
        """Each change as canonical JSON (see :func:`canonical_json`)."""
        if isinstance(self.changes, StoredChanges):
            return [text.decode("utf-8") for text in self.changes.texts]
        return [canonical_json(d) for d in self.change_dicts]

    @functools.cached_property
    def change_bytes(self) -> list[bytes]:
        """Each change's canonical JSON in UTF-8, encoded once for both the checksum and
        the plan file's lines (at 10,000 changes each encoding of them costs about 0.12
        s); the stored texts as they are. Bytes, not text: 10,000 texts of 4 MB with one
        character past Latin-1 among them join into a text twice as wide, and then
        encode again (0.014 s against 0.001 s to join their bytes)."""
        if isinstance(self.changes, StoredChanges):
            return self.changes.texts
        return [text.encode("utf-8") for text in self.change_texts]

    @functools.cached_property
    def checksum(self) -> str:
        """``plan_checksum(self._body())``, with the changes' canonical texts reused."""
        header = self.header()
        # the same text either way; one encoder call over the list when the changes' own
        # texts are not needed (a plan loaded to be applied): 5-6x less time
        if "change_bytes" in self.__dict__ or isinstance(self.changes, StoredChanges):
            changes = b"[" + b",".join(self.change_bytes) + b"]"
        elif "change_texts" in self.__dict__:
            changes = ("[" + ",".join(self.change_texts) + "]").encode("utf-8")
        else:
            changes = canonical_json(self.change_dicts).encode("utf-8")
        # hashed part by part: the megabytes of changes are not copied into one text
        digest = hashlib.sha256(b"{")
        for position, key in enumerate(sorted([*header, "changes"])):
            digest.update(f"{',' if position else ''}{canonical_json(key)}:".encode())
            digest.update(
                changes if key == "changes" else canonical_json(header[key]).encode("utf-8")
            )
        digest.update(b"}")
        return "sha256:" + digest.hexdigest()

    @property
    def in_scope(self) -> int:
        return int(self.summary["in_scope"])

    def header(self) -> dict[str, Any]:
        """Everything in the plan file except its checksum and its changes."""
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "provenance": _provenance_dict(self.provenance),
            "summary": self.summary,
            "foreign": [asdict(f) for f in self.foreign],
            "skipped": [asdict(k) for k in self.skipped],
        }

    def _body(self) -> dict[str, Any]:
        """Everything in the plan file except its checksum."""
        return {**self.header(), "changes": self.change_dicts}

    def to_dict(self) -> dict[str, Any]:
        return {"checksum": self.checksum, **self._body()}


def _change_dict(change: PlannedChange) -> dict[str, Any]:
    return {
        "employee": change.employee,
        "dn": change.dn,
        "scenario": change.scenario,
        "attribute": change.attribute,
        "old": change.old,
        "new": change.new,
        "persona": change.persona,
        "rule": change.rule,
        "facts": dict(change.facts),
        # only when known, so that a plan written without it keeps its checksum
        **({"key": change.key} if change.key is not None else {}),
    }


def canonical_json(value: Any) -> str:
    """The canonical JSON of a plan's parts: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def plan_checksum(body: Mapping[str, Any]) -> str:
    """SHA-256 of the plan's canonical JSON (sorted keys, no spaces)."""
    return "sha256:" + hashlib.sha256(canonical_json(body).encode()).hexdigest()


def read_attributes(engine: Engine, config: LoadedConfig) -> list[str]:
    """Everything a plan must read: the facts' attributes, targets, the feeds' join
    attributes, and the manager link; never a feed's columns (``hr.grade``)."""
    wanted = dict.fromkeys(a for a in engine.attributes if feed_of(a) is None)
    for feed in config.spec.feeds.values():
        wanted.setdefault(feed.matches.lower(), None)
    for attribute in config.spec.targets.values():
        wanted.setdefault(attribute.lower(), None)
    if engine.rule_set.uses_org_chart:
        wanted.setdefault(MANAGER_ATTRIBUTE, None)
    return list(wanted)


def check_targets(rule_set: RuleSet, config: LoadedConfig) -> None:
    scenarios = [s.id for s in rule_set.scenarios]
    missing = [s for s in scenarios if s not in config.spec.targets]
    unknown = [t for t in config.spec.targets if t not in scenarios]
    if unknown:
        raise ConfigError(
            f"{config.path}: targets names scenario(s) {', '.join(unknown)} that the rules do "
            f"not define (scenarios: {', '.join(scenarios)})"
        )
    if missing:
        raise ConfigError(
            f"{config.path}: targets has no attribute for scenario(s) {', '.join(missing)}"
        )
    personas = {p.casefold() for p in rule_set.personas}
    strangers = [p for p in config.spec.safety.persona_limits if p.casefold() not in personas]
    if strangers:
        raise ConfigError(
            f"{config.path}: safety.persona_limits names persona(s) {', '.join(strangers)} that "
            f"the rules do not define (personas: {', '.join(rule_set.personas)})"
        )


@dataclass(frozen=True, slots=True)
class Evaluated:
    """What the rules make of one employee: the population labels per scenario (None when
    out of scope) and the plan items."""

    population: tuple[str, ...] | None
    changes: tuple[PlannedChange, ...] = ()
    foreign: tuple[ForeignValue, ...] = ()
    skipped: tuple[SkippedChange, ...] = ()


OUT_OF_SCOPE = Evaluated(None)
LEFT = "(unmatched, left as is)"
CLEARED = "(cleared)"


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one tuple of decisions means before looking at the employee's targets: the
    result when every target in ``expected`` already holds its persona (OUT_OF_SCOPE,
    with nothing expected, for out of scope)."""

    decisions: tuple[Decision, ...]
    settled: Evaluated
    expected: tuple[tuple[str, str | None], ...]


class Evaluator:
    """Decides one employee and diffs the targets: the per-employee half of a plan."""

    def __init__(
        self,
        config: LoadedConfig,
        engine: Engine,
        directory: Directory,
        join: Callable[[Employee], Employee] | None = None,
    ) -> None:
        rule_set = engine.rule_set
        # the feeds' rows as attributes (persona_sync.feed_join.FeedSet.join), or None
        self._join = join
        self.engine = engine
        self.directory = directory
        self.targets = {s: a.lower() for s, a in config.spec.targets.items()}
        self.shown = dict(config.spec.targets)
        self.persona_ids = {p.casefold() for p in rule_set.personas}
        self.rule_facts = _facts_read(rule_set)
        self.owns = config.spec.owns_attribute
        # The engine returns one of a few constant tuples of decisions: what each implies
        # (the labels, which targets must hold what) is worked out once per tuple. Keyed
        # by id, with the tuple kept in the entry so that the id stays its own.
        self._outcomes: dict[int, _Outcome] = {}

    def __call__(self, employee: Employee, position: Position | None) -> Evaluated:
        if self._join is not None:
            employee = self._join(employee)
        decisions = self.engine.decide(employee, position)
        outcome = self._outcomes.get(id(decisions))
        if outcome is None or outcome.decisions is not decisions:
            outcome = self._outcome(decisions)
        attributes = employee.attributes
        for attribute, wanted in outcome.expected:
            current = attributes.get(attribute)
            if current != wanted and not same_value(current, wanted):
                break
        else:
            return outcome.settled  # every target already holds its persona
        return self._evaluate(employee, position, decisions)

    def _outcome(self, decisions: tuple[Decision, ...]) -> _Outcome:
        if decisions and decisions[0].outcome == "out_of_scope":
            outcome = _Outcome(decisions, OUT_OF_SCOPE, ())
        else:
            labels = tuple(
                LEFT if d.outcome == "leave" else (d.persona or CLEARED) for d in decisions
            )
            expected = tuple(
                (self.targets[d.scenario], d.persona) for d in decisions if d.outcome != "leave"
            )
            outcome = _Outcome(decisions, Evaluated(labels), expected)
        if len(self._outcomes) < 4096:
            self._outcomes[id(decisions)] = outcome
        return outcome

    def _evaluate(
        self, employee: Employee, position: Position | None, decisions: tuple[Decision, ...]
    ) -> Evaluated:
        if decisions and decisions[0].outcome == "out_of_scope":
            return OUT_OF_SCOPE
        labels: list[str] = []
        changes: list[PlannedChange] = []
        foreign: list[ForeignValue] = []
        skipped: list[SkippedChange] = []
        facts: dict[str, Any] | None = None
        for decision in decisions:
            scenario = decision.scenario
            current = employee.attributes.get(self.targets[scenario]) or None
            if decision.outcome == "leave":
                labels.append(LEFT)
                continue
            wanted = decision.persona
            labels.append(wanted or CLEARED)
            if same_value(current, wanted):
                continue
            shown = self.shown[scenario]
            if current is not None and current.casefold() not in self.persona_ids and not self.owns:
                foreign.append(
                    ForeignValue(employee.id, employee.dn, scenario, shown, current, wanted)
                )
                continue
            reason = self.directory.unwritable_reason(employee, shown)
            if reason is not None:
                skipped.append(
                    SkippedChange(
                        employee.id, employee.dn, scenario, shown, current, wanted, reason
                    )
                )
                continue
            if facts is None:
                facts = self.engine.fact_values(employee, position)
            changes.append(
                PlannedChange(
                    employee.id,
                    employee.dn,
                    scenario,
                    shown,
                    current,
                    wanted,
                    decision.persona,
                    decision.rule,
                    _read_by(decision, self.rule_facts, facts),
                    self.directory.key(employee),
                )
            )
        return Evaluated(tuple(labels), tuple(changes), tuple(foreign), tuple(skipped))


CHANGE, FOREIGN, SKIPPED = 0, 1, 2  # the kinds of plan items


def plan_items(evaluated: Evaluated) -> list[PlanItem] | None:
    """One employee's plan items as the snapshot keeps them (None when there are none).
    The text is the plan file's, so a plan from the snapshot is written as it is stored."""
    if not (evaluated.changes or evaluated.foreign or evaluated.skipped):
        return None
    items: list[PlanItem] = []
    for c in evaluated.changes:
        fields = _change_dict(c)
        items.append(
            (
                CHANGE,
                c.dn.casefold(),
                c.scenario,
                _move(c.old, c.new),
                canonical_json(fields),
                marshal.dumps(fields),
            )
        )
    items += [
        (FOREIGN, f.dn.casefold(), f.scenario, None, canonical_json(asdict(f)), None)
        for f in evaluated.foreign
    ]
    items += [
        (SKIPPED, k.dn.casefold(), k.scenario, None, canonical_json(asdict(k)), None)
        for k in evaluated.skipped
    ]
    return items


def stored_items(
    rows: Iterable[tuple[int, str, str | None, bytes, bytes | None]],
) -> tuple[StoredChanges, list[ForeignValue], list[SkippedChange]]:
    """The plan items the snapshot returns (kind, scenario, move, text in UTF-8, fields; in
    the plan's order): the changes as stored, the foreign values and skipped changes
    decoded."""
    texts: list[bytes] = []
    moves: list[tuple[str, str]] = []
    packed: list[bytes] = []
    foreign: list[ForeignValue] = []
    skipped: list[SkippedChange] = []
    for kind, scenario, move, text, fields in rows:
        if kind == CHANGE:
            texts.append(text)
            moves.append((scenario, move or ""))
            packed.append(fields or b"")
        elif kind == FOREIGN:
            foreign.append(ForeignValue(**json.loads(text)))
        else:
            skipped.append(SkippedChange(**json.loads(text)))
    return StoredChanges(texts, moves, packed), foreign, skipped


def _move(old: str | None, new: str | None) -> str:
    """A change as the summary's transitions count it."""
    return f"{old or EMPTY} -> {new or EMPTY}"


def assemble_plan(
    rule_set: RuleSet,
    config: LoadedConfig,
    directory: Directory,
    population: Iterable[tuple[tuple[str, ...] | None, bool, int]],
    changes: list[PlannedChange] | StoredChanges,
    foreign: list[ForeignValue],
    skipped: list[SkippedChange],
    org_chart_problems: int,
    read: Mapping[str, Any] | None = None,
    *,
    feeds: Mapping[str, Any] | None = None,
    feed_provenance: Mapping[str, Any] | None = None,
) -> Plan:
    """The plan from every employee's population labels and items, however they were
    computed (a full read, or a delta over the snapshot): the same inputs give the same plan.

    ``population`` holds (labels or None when out of scope, changed, how many employees);
    the lists are sorted in place (stored changes come in the plan's order).
    """
    scenario_ids = [s.id for s in rule_set.scenarios]
    personas: dict[str, Counter[str]] = {s: Counter() for s in scenario_ids}
    transitions: dict[str, Counter[str]] = {s: Counter() for s in scenario_ids}
    counts: Counter[str] = Counter()
    for labels, changed, many in population:
        counts["employees"] += many
        if changed:  # one row (one DN) per employee: no need to count distinct DNs
            counts["employees_changed"] += many
        if labels is None:
            counts["out_of_scope"] += many
            continue
        counts["in_scope"] += many
        if not changed:
            counts["unchanged"] += many
        for scenario, label in zip(scenario_ids, labels, strict=True):
            personas[scenario][label] += many
    planned: Sequence[PlannedChange]
    if isinstance(changes, StoredChanges):
        moves: Iterable[tuple[str, str]] = changes.moves
        planned = changes
    else:
        moves = ((c.scenario, _move(c.old, c.new)) for c in changes)
        changes.sort(key=lambda c: (c.dn.casefold(), c.scenario))
        planned = tuple(changes)
    for scenario, move in moves:
        transitions[scenario][move] += 1
    foreign.sort(key=lambda f: (f.dn.casefold(), f.scenario))
    skipped.sort(key=lambda k: (k.dn.casefold(), k.scenario))
    summary: dict[str, Any] = {
        "employees": counts["employees"],
        "in_scope": counts["in_scope"],
        "out_of_scope": counts["out_of_scope"],
        "unchanged": counts["unchanged"],
        "changes": len(changes),
        "employees_changed": counts["employees_changed"],
        "foreign_values": len(foreign),
        "skipped": len(skipped),
        "org_chart_problems": org_chart_problems,
        "scenarios": {
            s: {
                "personas": dict(sorted(personas[s].items())),
                "transitions": dict(sorted(transitions[s].items())),
            }
            for s in scenario_ids
        },
    }
    if read is not None:
        summary["read"] = dict(read)
    if feeds:
        summary["feeds"] = dict(feeds)
    provenance = Provenance(
        tool_version=__version__,
        rules_checksum=rule_set.checksum,
        config_checksum=config.checksum,
        directory=directory.identity,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        feeds=dict(feed_provenance) if feed_provenance else None,
    )
    plan = Plan(planned, tuple(foreign), summary, provenance, tuple(skipped))
    log.info(
        "plan_computed", changes=len(changes), in_scope=counts["in_scope"], foreign=len(foreign)
    )
    return plan


PROBLEMS_LOGGED = 20


def log_problems(problems: Sequence[str]) -> None:
    """Log the first org-chart problems one by one, then how many more there are."""
    for problem in problems[:PROBLEMS_LOGGED]:
        log.warning("org_chart_problem", problem=problem)
    if len(problems) > PROBLEMS_LOGGED:
        log.warning(
            "org_chart_problems_not_shown",
            more=len(problems) - PROBLEMS_LOGGED,
            total=len(problems),
            hint="persona-sync explain EMPLOYEE shows one employee's chain",
        )


def org_chart(directory: Directory, employees: list[Employee]) -> OrgChart:
    """The org chart over the employees plus managers the directory has outside the scope."""
    return build_org_chart([*employees, *_outside_managers(directory, employees)])


def _outside_managers(directory: Directory, employees: list[Employee]) -> list[Employee]:
    """Managers that head employees' chains but were not read (outside the search base)."""
    known = {normalize_dn(e.dn) for e in employees} | {e.id.casefold() for e in employees}
    extra: list[Employee] = []
    frontier: list[Employee] = employees
    for _ in range(64):  # chains are short; the bound stops a pathological loop
        wanted = sorted(
            {
                link
                for e in frontier
                if (link := e.get(MANAGER_ATTRIBUTE))
                and normalize_dn(link) not in known
                and link.casefold() not in known
            }
        )
        if not wanted:
            break
        known.update(normalize_dn(link) for link in wanted)
        frontier = directory.lookup_managers(wanted)
        if not frontier:
            break
        extra.extend(frontier)
    return extra


def outside_managers(directory: Directory, chart: ChartBuilder) -> list[Employee]:
    """Managers that head the chart's chains but were not read (outside the search base),
    looked up and added to ``chart`` (with their own links) until every link names
    someone or was asked for."""
    asked: set[str] = set()
    extra: list[Employee] = []
    for _ in range(64):  # chains are short; the bound stops a pathological loop
        wanted = [
            link
            for link in chart.unresolved()
            if normalize_dn(link) not in asked and link.casefold() not in asked
        ]
        if not wanted:
            break
        asked.update(normalize_dn(link) for link in wanted)
        found = directory.lookup_managers(wanted)
        if not found:
            break
        for manager in found:
            chart.add(manager.id, normalize_dn(manager.dn), manager.get(MANAGER_ATTRIBUTE))
        extra.extend(found)
    return extra


def _facts_read(rule_set: RuleSet) -> dict[str, tuple[str, ...]]:
    """Rule id -> facts its condition, its persona's exclusions and the scope read."""
    scope_facts = [
        t.fact
        for n in ([rule_set.scope.include] if rule_set.scope.include else [])
        for t in walk_tests(n)
    ]
    scope_facts += [t.fact for n in rule_set.scope.exclude for t in walk_tests(n)]
    result: dict[str, tuple[str, ...]] = {}
    for persona in rule_set.personas.values():
        excl = [t.fact for n in persona.unless for t in walk_tests(n)]
        for rule in persona.rules:
            used = [t.fact for t in walk_tests(rule.condition)] + excl + scope_facts
            result[rule.id] = tuple(dict.fromkeys(used))
    return result


def _read_by(
    decision: Decision, rule_facts: dict[str, tuple[str, ...]], facts: dict[str, Any]
) -> dict[str, Any]:
    if decision.rule in rule_facts:
        return {name: facts.get(name) for name in rule_facts[decision.rule]}
    return facts  # default/clear: every rule was read and none matched


def load_plan(text: str, source: str) -> Plan:
    """Parse a saved JSON plan, refusing foreign or tampered files."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(
            f"{source}: not a persona-sync plan (invalid JSON at line {exc.lineno})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise PlanError(
            f"{source}: not a persona-sync plan (save one with "
            "`persona-sync plan --format json -o FILE`)"
        )
    if data.get("version") != PLAN_VERSION:
        raise PlanError(
            f"{source}: plan format version {data.get('version')!r} is not supported "
            f"(expected {PLAN_VERSION})"
        )
    try:
        prov = Provenance(**data["provenance"])
        changes = tuple(PlannedChange(**c) for c in data["changes"])
        foreign = tuple(ForeignValue(**f) for f in data.get("foreign", []))
        skipped = tuple(SkippedChange(**k) for k in data.get("skipped", []))
        summary = data["summary"]
        stated = data["checksum"]
    except (KeyError, TypeError) as exc:
        raise PlanError(f"{source}: plan is incomplete or damaged ({exc})") from None
    plan = Plan(changes, foreign, summary, prov, skipped)
    # The checksum is checked over the changes as the file holds them (a field missing,
    # added or spelt otherwise is an edit), not over dicts rebuilt from them.
    plan.__dict__["change_dicts"] = data["changes"]
    if plan.checksum != stated:
        raise PlanError(
            f"{source}: plan checksum does not match its contents: the file was "
            "edited or damaged; make a new plan"
        )
    return plan
