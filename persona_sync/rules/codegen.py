"""Compile a rule set into straight-line Python functions: the engine's hot path.

It emits the compiled facts (:mod:`persona_sync.rules.facts`) and the condition
expressions (:mod:`persona_sync.rules.conditions`) as code: the generated
``decide(employee, position)`` derives each fact where a rule first needs it, reads each
group of attributes once, memoises what it derives from a raw value (titles and
departments repeat thousands of times), and runs scope and precedence as ``if`` chains
returning prebuilt decisions, much like hand-written code. ``fact_values`` runs the same
fact code and returns every value. Explain runs the same fact steps and condition
templates slowly (:func:`facts.trace_fact`, :func:`conditions.trace_node`); tests check
that both ways agree.

Safety: nothing from a rule file is pasted into the source text. Attribute names,
operands, regexes and decisions are handed to the generated code as constants named
``k0``, ``k1``, ...; the text holds only names this module makes up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from persona_sync.rules.conditions import expression, reads_folded, walk_tests
from persona_sync.rules.facts import (
    MEMO_LIMIT,
    CompiledFact,
    ConstantStep,
    OrgChartStep,
    ReadStep,
)
from persona_sync.rules.model import Node, Persona, RuleSet, Test, Value

Decide = Callable[..., tuple[Any, ...]]
Bundle = tuple[Any, ...]
# Per scenario: ((persona, ((rule condition, decision), ...)), ...) and the fallback decision.
ScenarioTable = tuple[tuple[tuple[Persona, tuple[tuple[Node, Any], ...]], ...], Any]

_BLANK: Bundle = ("<blank>",)  # the bundle of a whitespace-only value: try the next attribute
_NUMBER_READS = frozenset({"@org_depth", "@direct_reports"})
_BUILTIN_READS = {
    "@id": "employee.id",
    "@dn": "employee.dn",
    "@org_depth": "position.depth if position is not None else None",
    "@direct_reports": "position.direct_reports if position is not None else None",
}


@dataclass
class _Code:
    lines: list[str] = field(default_factory=list)
    constants: dict[str, Any] = field(default_factory=dict)
    _by_id: dict[int, str] = field(default_factory=dict)

    def const(self, value: Any) -> str:
        key = id(value)  # the value is kept in ``constants``, so its id stays its own
        if key not in self._by_id:
            name = f"k{len(self.constants)}"
            self.constants[name] = value
            self._by_id[key] = name
        return self._by_id[key]

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def function(self, name: str, filename: str) -> Callable[..., Any]:
        """``def name(employee, position=None)`` around the emitted body, compiled; constants
        become keyword defaults, so the body reads them as fast locals."""
        defaults = ", ".join(f"{k}={k}" for k in self.constants)
        keywords = f", *, {defaults}" if defaults else ""
        source = "\n".join([f"def {name}(employee, position=None{keywords}):", *self.lines])
        namespace: dict[str, Any] = dict(self.constants)
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102
        function: Callable[..., Any] = namespace[name]
        function.source = source  # type: ignore[attr-defined]
        return function


@dataclass(frozen=True, slots=True)
class _Member:
    """A read step in its group's bundle; ``default``: the fact's default, taken in when
    the step is the fact's last, so the generated code need not test for it."""

    step: ReadStep
    fold: bool
    default: Value | None

    def values(self, raw: Any) -> tuple[Any, ...]:
        value = self.step.derive(raw) if raw is not None else None
        if value is None:
            value = self.default
        return (value, _fold(value)) if self.fold else (value,)


@dataclass
class _Group:
    """Read steps with the same attributes: one read and one memo lookup per employee.

    The bundle a raw value maps to holds each member's value, and right after it the
    value case-folded when the member's fact is read case-insensitively. ``empty`` is the
    bundle when no attribute has a value. A whitespace-only value maps to ``_BLANK`` (try
    the next attribute), or to ``empty`` when there is no next attribute.
    """

    reads: tuple[str, ...]
    members: list[_Member] = field(default_factory=list)
    width: int = 0
    memo: dict[Any, Bundle] = field(default_factory=dict)  # raw value -> bundle
    lookup: Callable[[Any], Bundle] = field(init=False)  # ``miss``, bound once

    def __post_init__(self) -> None:
        self.lookup = self.miss

    def add(self, member: _Member) -> int:
        """Add a member; where its value sits in the bundle."""
        place = self.width
        self.members.append(member)
        self.width += 2 if member.fold else 1
        return place

    @property
    def empty(self) -> Bundle:
        return self._bundle(None)

    def miss(self, raw: Any) -> Bundle:
        """Derive the bundle of a raw value not in the memo yet, and remember it."""
        if len(self.memo) >= MEMO_LIMIT:
            self.memo.clear()
        if isinstance(raw, str) and raw.isspace():
            bundle = _BLANK if len(self.reads) > 1 else self.empty
        else:
            bundle = self._bundle(raw)
        self.memo[raw] = bundle
        return bundle

    def _bundle(self, raw: Any) -> Bundle:
        return tuple(value for member in self.members for value in member.values(raw))


class _FactCode:
    """Emits each fact's derivation into a function body once, at the top level, where
    first needed; a group of attributes is read once at the top level for good, or inside
    a fallback branch (then again wherever else it is needed)."""

    def __init__(self, code: _Code, facts: Sequence[CompiledFact], folded: set[str]) -> None:
        self.code = code
        self.facts = {fact.name: (i, fact) for i, fact in enumerate(facts)}
        self.folded = folded
        self.groups: list[_Group] = []
        self.member: dict[int, tuple[int, int]] = {}  # id(step) -> (group, place in bundle)
        by_reads: dict[tuple[str, ...], int] = {}
        for fact in facts:
            for number, step in enumerate(fact.steps):
                if isinstance(step, ReadStep) and step.repeats:
                    index = by_reads.setdefault(step.reads, len(self.groups))
                    if index == len(self.groups):
                        self.groups.append(_Group(step.reads))
                    last = number == len(fact.steps) - 1
                    member = _Member(step, fact.name in folded, fact.default if last else None)
                    self.member[id(step)] = (index, self.groups[index].add(member))
        self.read_at_top: set[int] = set()
        self.done: set[str] = set()
        code.emit(1, "a = employee.attributes")

    def value_of(self, test: Test) -> str:
        """The variable a test reads: the value, or its case-folded copy."""
        i, fact = self.facts[test.fact]
        return f"g{i}" if reads_folded(test, fact.type) else f"f{i}"

    def need(self, names: Iterable[str]) -> None:
        """Emit the facts not emitted yet. The groups their first steps read are read
        first, at the top level, so that a fallback step of another finds them there."""
        wanted = [name for name in dict.fromkeys(names) if name not in self.done]
        for name in wanted:
            steps = self.facts[name][1].steps
            if steps and isinstance(steps[0], ReadStep) and steps[0].repeats:
                index = self.member[id(steps[0])][0]
                if index not in self.read_at_top:
                    self._read_group(1, index)
                    self.read_at_top.add(index)
        for name in wanted:
            self.done.add(name)
            self._fact(*self.facts[name])

    def _fact(self, i: int, fact: CompiledFact) -> None:
        """f{i} = the first step's value that is not None, else the default (g{i}: folded)."""
        code, fold = self.code, fact.name in self.folded
        depth = 1
        for number, step in enumerate(fact.steps):
            if number:
                code.emit(depth, f"if f{i} is None:")
                depth += 1
            if isinstance(step, OrgChartStep):
                chart = code.const(step.value)
                code.emit(depth, f"f{i} = {chart}(position) if position is not None else None")
                if fold:
                    code.emit(depth, f"g{i} = f{i}")
            elif isinstance(step, ConstantStep):
                code.emit(depth, f"f{i} = {code.const(step.value)}")
                if fold:
                    code.emit(depth, f"g{i} = {code.const(_fold(step.value))}")
            elif step.repeats:
                index, place = self.member[id(step)]
                if index not in self.read_at_top:
                    self._read_group(depth, index)
                    if depth == 1:
                        self.read_at_top.add(index)
                code.emit(depth, f"f{i} = b{index}[{place}]")
                if fold:
                    code.emit(depth, f"g{i} = b{index}[{place + 1}]")
            else:
                self._read_unique(depth, i, step)
                if fold:
                    code.emit(depth, f"g{i} = {code.const(_fold)}(f{i})")
        if not fact.steps:
            code.emit(1, f"f{i} = None")
            if fold:
                code.emit(1, f"g{i} = None")
        last = fact.steps[-1] if fact.steps else None
        if isinstance(last, ReadStep) and last.repeats:
            return  # the bundle holds the default already
        if fact.default is not None:
            code.emit(1, f"if f{i} is None:")
            code.emit(2, f"f{i} = {code.const(fact.default)}")
            if fold:
                code.emit(2, f"g{i} = {code.const(_fold(fact.default))}")

    def _read_group(self, depth: int, index: int) -> None:
        """b{index} = the bundle of the first of the group's attributes with a value.

        Blank values are recognised once per distinct value, in the memo, not per employee.
        """
        code, group = self.code, self.groups[index]
        b = f"b{index}"
        found = f"({code.const(group.memo)}.get(r) or {code.const(group.lookup)}(r))"
        blank, empty = code.const(_BLANK), code.const(group.empty)
        for number, attribute in enumerate(group.reads):
            level = depth + number
            last = number == len(group.reads) - 1
            otherwise = empty if last else blank
            if attribute in _NUMBER_READS:  # org-chart numbers: 0 is a value
                code.emit(level, f"r = {_BUILTIN_READS[attribute]}")
                code.emit(level, f"{b} = {found} if r is not None else {otherwise}")
            else:
                code.emit(level, f"r = a.get({code.const(attribute)})")
                code.emit(level, f"{b} = {found} if r else {otherwise}")
            if len(group.reads) > 1:
                code.emit(level, f"if {b} is {blank}:")
                if last:
                    code.emit(level + 1, f"{b} = {empty}")

    def _read_unique(self, depth: int, i: int, step: ReadStep) -> None:
        """f{i} = derive(the first attribute with a value): values that never repeat are
        derived on the spot, without a memo."""
        code = self.code
        derive = f"{code.const(step.derive)}(r)"
        for number, attribute in enumerate(step.reads):
            level = depth + number
            if attribute in _BUILTIN_READS:
                code.emit(level, f"r = {_BUILTIN_READS[attribute]}")
            else:
                code.emit(level, f"r = a.get({code.const(attribute)})")
            if attribute in _NUMBER_READS:
                code.emit(level, "if r is not None:")
                code.emit(level + 1, f"f{i} = {derive}")
            else:  # text: the derivation inlined when it is one expression
                code.emit(level, "if r and not r.isspace():")
                inline = step.inline.text("r", code.const) if step.inline else derive
                code.emit(level + 1, f"f{i} = {inline}")
            code.emit(level, "else:")
        code.emit(depth + len(step.reads), f"f{i} = None")


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _folded_facts(rule_set: RuleSet, roots: Iterable[Node]) -> set[str]:
    types = {name: fact.type for name, fact in rule_set.facts.items()}
    return {
        t.fact
        for root in roots
        for t in walk_tests(root)
        if reads_folded(t, types.get(t.fact, "string"))
    }


def _conditions(entries: Iterable[tuple[Persona, tuple[tuple[Node, Any], ...]]]) -> list[Node]:
    """The rule conditions and unless clauses of these personas, in order."""
    return [
        node
        for persona, rules in entries
        for node in [*(condition for condition, _ in rules), *persona.unless]
    ]


def _facts_of(nodes: Iterable[Node]) -> list[str]:
    return list(dict.fromkeys(t.fact for node in nodes for t in walk_tests(node)))


def compile_decide(
    rule_set: RuleSet,
    facts: Sequence[CompiledFact],
    scenarios: Sequence[ScenarioTable],
    out_of_scope: tuple[Any, ...],
) -> Decide:
    """Generate ``decide``: scope first, then each scenario's personas in order, each
    deriving the facts it needs; returns the prebuilt decisions, one per scenario."""
    code = _Code()
    scope = rule_set.scope
    scope_roots = ([scope.include] if scope.include is not None else []) + list(scope.exclude)
    roots = scope_roots + [node for entries, _ in scenarios for node in _conditions(entries)]
    facts_code = _FactCode(code, facts, _folded_facts(rule_set, roots))

    def expr(node: Node) -> str:
        return expression(node, facts_code.value_of, code.const)

    # Scope first, as a person would write it: out-of-scope entries skip the rest.
    facts_code.need(_facts_of(scope_roots))
    blocked = [f"not ({expr(scope.include)})"] if scope.include is not None else []
    blocked += [f"({expr(node)})" for node in scope.exclude]
    if blocked:
        code.emit(1, f"if {' or '.join(blocked)}:")
        code.emit(2, f"return {code.const(out_of_scope)}")
    if len(scenarios) == 1:
        _emit_single_scenario(code, facts_code, scenarios[0], expr)
    else:
        _emit_scenarios(code, facts_code, scenarios, expr)
    decide: Decide = code.function("decide", "<persona-sync rules>")
    return decide


def _emit_single_scenario(
    code: _Code, facts_code: _FactCode, scenario: ScenarioTable, expr: Callable[[Node], str]
) -> None:
    entries, fallback = scenario
    for persona, rules in entries:
        facts_code.need(_facts_of(_conditions([(persona, rules)])))
        unless = " or ".join(f"({expr(n)})" for n in persona.unless)
        for position, (condition, decision) in enumerate(rules):
            code.emit(1, f"{'if' if position == 0 else 'elif'} {expr(condition)}:")
            if unless:
                code.emit(2, f"if not ({unless}):")
                code.emit(3, f"return {code.const((decision,))}")
            else:
                code.emit(2, f"return {code.const((decision,))}")
    code.emit(1, f"return {code.const((fallback,))}")


def _emit_scenarios(
    code: _Code,
    facts_code: _FactCode,
    scenarios: Sequence[ScenarioTable],
    expr: Callable[[Node], str],
) -> None:
    """One ``for`` over a single item per scenario: ``break`` leaves it once decided. The
    facts a scenario needs are derived before its loop, at the top level."""
    results = []
    for number, (entries, fallback) in enumerate(scenarios):
        variable = f"d{number}"
        results.append(variable)
        facts_code.need(_facts_of(_conditions(entries)))
        code.emit(1, f"for _ in {code.const((None,))}:")
        for persona, rules in entries:
            unless = " or ".join(f"({expr(n)})" for n in persona.unless)
            for position, (condition, decision) in enumerate(rules):
                code.emit(2, f"{'if' if position == 0 else 'elif'} {expr(condition)}:")
                if unless:
                    code.emit(3, f"if not ({unless}):")
                    code.emit(4, f"{variable} = {code.const(decision)}")
                    code.emit(4, "break")
                else:
                    code.emit(3, f"{variable} = {code.const(decision)}")
                    code.emit(3, "break")
        code.emit(2, f"{variable} = {code.const(fallback)}")
    code.emit(1, f"return ({', '.join(results)},)")


def compile_fact_values(facts: Sequence[CompiledFact]) -> Callable[[Any, Any], list[Any]]:
    """Generate ``fact_values(employee, position)``: every fact's value, in order."""
    code = _Code()
    facts_code = _FactCode(code, facts, set())
    facts_code.need(fact.name for fact in facts)
    code.emit(1, f"return [{', '.join(f'f{i}' for i in range(len(facts)))}]")
    function: Callable[[Any, Any], list[Any]] = code.function("fact_values", "<persona-sync facts>")
    return function
