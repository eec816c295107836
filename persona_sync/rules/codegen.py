"""Compile a rule set into one straight-line Python function: the engine's hot path.

The generated ``decide(employee, position)`` reads each group of attributes once,
memoises everything derived from a raw value (titles and departments repeat thousands of
times), and runs scope and precedence as ``if`` chains returning prebuilt decisions, much
like hand-written code. It has the semantics of the closures in :mod:`facts` and
:mod:`conditions`, which stay the reference (explain, ``Engine.facts``); a test checks the
two agree on random employees.

Safety: nothing from a rule file is pasted into the source text. Attribute names,
operands, regexes and decisions are handed to the generated code as constants named
``k0``, ``k1``, ...; the text holds only names this module makes up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from persona_sync.rules.conditions import reads_folded
from persona_sync.rules.facts import org_chart_value, transform
from persona_sync.rules.model import AllOf, AnyOf, Fact, Node, NotOf, RuleSet, Source, Test

MEMO_LIMIT = 100_000
UNIQUE_ATTRIBUTES = frozenset({"@dn", "@id"})  # never repeat: memoising them only costs


@dataclass
class _Code:
    lines: list[str] = field(default_factory=list)
    constants: dict[str, Any] = field(default_factory=dict)
    _by_id: dict[int, str] = field(default_factory=dict)

    def const(self, value: Any) -> str:
        key = id(value)
        if key not in self._by_id:
            name = f"k{len(self.constants)}"
            self.constants[name] = value
            self._by_id[key] = name
        return self._by_id[key]

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)


@dataclass
class _Group:
    """Sources reading the same attributes: one read and one memo lookup per employee.

    The bundle a raw value maps to holds each member's value, and right after it the
    value case-folded when the member's fact is read case-insensitively.
    """

    attributes: tuple[str, ...]
    members: list[tuple[Source, str, bool]] = field(default_factory=list)  # source, type, fold
    width: int = 0

    @property
    def unique(self) -> bool:
        return bool(set(self.attributes) & UNIQUE_ATTRIBUTES)


Decide = Callable[[Any, Any], tuple[Any, ...]]


def compile_decide(
    rule_set: RuleSet, scenarios: Sequence[tuple[Any, ...]], out_of_scope: tuple[Any, ...]
) -> Decide:
    """Generate ``decide``; ``scenarios`` holds, per scenario in order, the prebuilt
    decisions: ((persona, ((rule, decision), ...)), ...) and the fallback decision."""
    code = _Code()
    names = list(rule_set.facts)
    slot = {name: i for i, name in enumerate(names)}
    types = {name: f.type for name, f in rule_set.facts.items()}
    folded = {t.fact for t in _tests(rule_set) if reads_folded(t, types.get(t.fact, "string"))}
    group_list, position_of = _group_sources(rule_set, folded)

    code.emit(1, "a = employee.attributes")
    read_at_top: set[int] = set()

    def emit_facts(wanted: list[str]) -> None:
        for name in wanted:
            _emit_fact(
                code,
                slot[name],
                rule_set.facts[name],
                name in folded,
                position_of,
                group_list,
                read_at_top,
            )

    def expr(node: Node) -> str:
        return _expression(code, node, slot, types)

    # Scope first, like a person would write it: out-of-scope entries skip the rest.
    scope = rule_set.scope
    scope_roots = ([scope.include] if scope.include is not None else []) + list(scope.exclude)
    scope_facts = list(dict.fromkeys(t.fact for root in scope_roots for t in _walk(root)))
    emit_facts(scope_facts)
    blocked = [f"not ({expr(scope.include)})"] if scope.include is not None else []
    blocked += [f"({expr(node)})" for node in scope.exclude]
    if blocked:
        code.emit(1, f"if {' or '.join(blocked)}:")
        code.emit(2, f"return {code.const(out_of_scope)}")
    emit_facts([name for name in names if name not in scope_facts])
    if len(scenarios) == 1:
        _emit_single_scenario(code, scenarios[0], expr)
    else:
        _emit_scenarios(code, scenarios, expr)
    # Constants become keyword defaults, so the body reads them as fast locals.
    defaults = ", ".join(f"{name}={name}" for name in code.constants)
    code.lines.insert(0, f"def decide(employee, position{_keywords(defaults)}):")
    namespace: dict[str, Any] = dict(code.constants)
    exec(compile("\n".join(code.lines), "<persona-sync rules>", "exec"), namespace)  # noqa: S102
    decide: Decide = namespace["decide"]
    decide.source = "\n".join(code.lines)  # type: ignore[attr-defined]
    return decide


def _keywords(defaults: str) -> str:
    """The keyword-only part of a generated signature; none when there are no constants."""
    return f", *, {defaults}" if defaults else ""


_BLANK = ("<blank>",)  # bundle of a whitespace-only value: try the group's next attribute


def compile_fact_values(rule_set: RuleSet) -> Callable[[Any, Any], list[Any]]:
    """Generate ``fact_values(employee, position)``: every fact's value, in rule-set order."""
    code = _Code()
    names = list(rule_set.facts)
    group_list, position_of = _group_sources(rule_set, set())
    code.emit(1, "a = employee.attributes")
    read_at_top: set[int] = set()
    for i, name in enumerate(names):
        _emit_fact(code, i, rule_set.facts[name], False, position_of, group_list, read_at_top)
    code.emit(1, f"return [{', '.join(f'f{i}' for i in range(len(names)))}]")
    defaults = ", ".join(f"{name}={name}" for name in code.constants)
    code.lines.insert(0, f"def fact_values(employee, position{_keywords(defaults)}):")
    namespace: dict[str, Any] = dict(code.constants)
    exec(compile("\n".join(code.lines), "<persona-sync facts>", "exec"), namespace)  # noqa: S102
    function: Callable[[Any, Any], list[Any]] = namespace["fact_values"]
    return function


def _group_sources(
    rule_set: RuleSet, folded: set[str]
) -> tuple[list[_Group], dict[int, tuple[int, int]]]:
    """Sources grouped by the attributes they read, and where each sits in its group's
    bundle: (group index, position); folded facts take a second slot for the folded copy."""
    groups: dict[tuple[str, ...], _Group] = {}
    position_of: dict[int, tuple[int, int]] = {}
    for fact in rule_set.facts.values():
        for source in fact.sources:
            if source.org_chart is None and source.attributes:
                group = groups.setdefault(source.attributes, _Group(source.attributes))
                position_of[id(source)] = (list(groups).index(source.attributes), group.width)
                fold = fact.name in folded
                group.members.append((source, fact.type, fold))
                group.width += 2 if fold else 1
    return list(groups.values()), position_of


def _emit_group(code: _Code, depth: int, index: int, group: _Group) -> None:
    """Read the group's attributes (first with a value) and look its bundle up.

    Blank values are recognised once per distinct value, in the memo, not per employee.
    """
    b = f"b{index}"
    empty = code.const((None,) * group.width)
    blank = code.const(_BLANK)
    derive = _deriver(tuple(group.members))
    if group.unique:  # values never repeat: derive on the spot, no memo
        lookup = code.const(_blank_aware(derive))
    else:
        memo: dict[Any, tuple[Any, ...]] = {}
        lookup = code.const(_memoised(memo, _blank_aware(derive)))
        table = code.const(memo)
    for number, attribute in enumerate(group.attributes):
        level = depth + number
        if attribute in _BUILTIN_READS:
            code.emit(level, f"r = {_BUILTIN_READS[attribute]}")
            if group.unique:  # @id and @dn are never blank
                code.emit(level, f"{b} = {lookup}(r) if r else {blank}")
            else:
                code.emit(level, f"{b} = {lookup}(r) if r is not None else {blank}")
        elif group.unique:
            code.emit(level, f"r = a.get({code.const(attribute)})")
            code.emit(level, f"{b} = {lookup}(r) if r else {blank}")  # blank-aware lookup
        else:
            code.emit(level, f"r = a.get({code.const(attribute)})")
            code.emit(level, f"{b} = ({table}.get(r) or {lookup}(r)) if r else {blank}")
        code.emit(level, f"if {b} is {blank}:")
    code.emit(depth + len(group.attributes), f"{b} = {empty}")


_BUILTIN_READS = {
    "@id": "employee.id",
    "@dn": "employee.dn",
    "@org_depth": "position.depth if position is not None else None",
    "@direct_reports": "position.direct_reports if position is not None else None",
}


def _blank_aware(derive: Callable[[Any], tuple[Any, ...]]) -> Callable[[Any], tuple[Any, ...]]:
    def bundle(raw: Any) -> tuple[Any, ...]:
        if isinstance(raw, str) and raw.isspace():
            return _BLANK
        return derive(raw)

    return bundle


def _emit_single_scenario(
    code: _Code, scenario: tuple[Any, ...], expr: Callable[[Node], str]
) -> None:
    entries, fallback = scenario
    for persona, rules in entries:
        unless = " or ".join(f"({expr(n)})" for n in persona.unless)
        for position, (rule, decision) in enumerate(rules):
            code.emit(1, f"{'if' if position == 0 else 'elif'} {expr(rule.condition)}:")
            if unless:
                code.emit(2, f"if not ({unless}):")
                code.emit(3, f"return {code.const((decision,))}")
            else:
                code.emit(2, f"return {code.const((decision,))}")
    code.emit(1, f"return {code.const((fallback,))}")


def _emit_scenarios(
    code: _Code, scenarios: Sequence[tuple[Any, ...]], expr: Callable[[Node], str]
) -> None:
    results = []
    for number, (entries, fallback) in enumerate(scenarios):
        variable = f"d{number}"
        results.append(variable)
        code.emit(1, f"for _ in {code.const((None,))}:")
        for persona, rules in entries:
            unless = " or ".join(f"({expr(n)})" for n in persona.unless)
            for position, (rule, decision) in enumerate(rules):
                code.emit(2, f"{'if' if position == 0 else 'elif'} {expr(rule.condition)}:")
                if unless:
                    code.emit(3, f"if not ({unless}):")
                    code.emit(4, f"{variable} = {code.const(decision)}")
                    code.emit(4, "break")
                else:
                    code.emit(3, f"{variable} = {code.const(decision)}")
                    code.emit(3, "break")
        code.emit(2, f"{variable} = {code.const(fallback)}")
    code.emit(1, f"return ({', '.join(results)},)")


def _deriver(members: tuple[tuple[Source, str, bool], ...]) -> Callable[[Any], tuple[Any, ...]]:
    if len(members) == 1 and not members[0][2]:
        fast = _fast_transform(members[0][0], members[0][1])
        if fast is not None:
            return fast

    def derive(raw: Any) -> tuple[Any, ...]:
        bundle: list[Any] = []
        for source, fact_type, fold in members:
            value = transform(source, raw, fact_type)
            bundle.append(value)
            if fold:
                bundle.append(value.casefold() if isinstance(value, str) else value)
        return tuple(bundle)

    return derive


def _fast_transform(source: Source, fact_type: str) -> Callable[[Any], tuple[Any, ...]] | None:
    """A lean 1-tuple deriver for a keyword table or a lookup map on text, else None."""
    plain = source.flag is None and source.capture is None
    if plain and source.table is not None and source.mapping is None:
        table = tuple((pattern.search, (value,)) for pattern, value in source.table)
        miss = (None,)

        def by_table(raw: Any) -> tuple[Any, ...]:
            text = raw if isinstance(raw, str) else str(raw)
            for search, found in table:
                if search(text):
                    return found
            return miss

        return by_table
    if plain and source.mapping is not None and source.table is None:
        mapping = {key: (value,) for key, value in reversed(source.mapping)}

        def by_map(raw: Any) -> tuple[Any, ...]:
            return mapping.get(str(raw).strip().casefold(), (None,))

        return by_map
    return None


def _memoised(
    memo: dict[Any, tuple[Any, ...]], derive: Callable[[Any], tuple[Any, ...]]
) -> Callable[[Any], tuple[Any, ...]]:
    def miss(raw: Any) -> tuple[Any, ...]:
        if len(memo) >= MEMO_LIMIT:
            memo.clear()
        bundle = memo[raw] = derive(raw)
        return bundle

    return miss


def _emit_fact(
    code: _Code,
    i: int,
    fact: Fact,
    fold: bool,
    position_of: dict[int, tuple[int, int]],
    groups: list[_Group],
    read_at_top: set[int],
) -> None:
    """f{i} = the first source's value that is not None, else the default (g{i}: folded).

    A group is read where first needed: once at the top level for good, or inside a
    fallback branch (then again wherever else it is needed).
    """
    depth = 1
    for number, source in enumerate(fact.sources):
        if number:
            code.emit(depth, f"if f{i} is None:")
            depth += 1
        if source.org_chart is not None:
            values = [
                f"{code.const(_org_reader(source))}(position) if position is not None else None"
            ]
            if fold:
                values.append(f"f{i}")
        elif source.attributes:
            index, member = position_of[id(source)]
            if groups[index].unique or index not in read_at_top:
                _emit_group(code, depth, index, groups[index])
                if depth == 1 and not groups[index].unique:
                    read_at_top.add(index)
            values = [f"b{index}[{member}]"] + ([f"b{index}[{member + 1}]"] if fold else [])
        else:
            values = [code.const(source.constant)]
            if fold:
                values.append(code.const(_fold(source.constant)))
        code.emit(depth, f"f{i} = {values[0]}")
        if fold:
            code.emit(depth, f"g{i} = {values[1]}")
    if not fact.sources:
        code.emit(depth, f"f{i} = None")
        if fold:
            code.emit(depth, f"g{i} = None")
    if fact.default is not None:
        code.emit(depth if not fact.sources else 1, f"if f{i} is None:")
        code.emit(2, f"f{i} = {code.const(fact.default)}")
        if fold:
            code.emit(2, f"g{i} = {code.const(_fold(fact.default))}")


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _org_reader(source: Source) -> Callable[[Any], Any]:
    def read(position: Any) -> Any:
        return org_chart_value(source, position)

    return read


def _expression(code: _Code, node: Node, slot: dict[str, int], types: Mapping[str, str]) -> str:
    if isinstance(node, NotOf):
        return f"not ({_expression(code, node.child, slot, types)})"
    if isinstance(node, AllOf | AnyOf):
        joiner = " and " if isinstance(node, AllOf) else " or "
        return "(" + joiner.join(_expression(code, c, slot, types) for c in node.children) + ")"
    test = node
    i = slot[test.fact]
    x = f"g{i}" if reads_folded(test, types[test.fact]) else f"f{i}"
    v = code.const(test.operand)
    op = test.operator
    if op == "equals":
        return f"{x} == {v}"
    if op == "in":
        return f"{x} in {v}"
    if op == "not_in":
        return f"{x} not in {v}"
    if op == "matches":
        assert test.pattern is not None
        found = code.const(_RegexMemo(test.pattern))
        return f"({x} is not None and {found}[{x}])"
    if op in ("starts_with", "ends_with"):
        return (
            f"({x} is not None and {x}.{'startswith' if op == 'starts_with' else 'endswith'}({v}))"
        )
    if op == "contains":
        return f"({x} is not None and {v} in {x})"
    comparisons = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
    if op in comparisons:
        return f"({x} is not None and {x} {comparisons[op]} {v})"
    if op == "between":
        low, high = cast(tuple[float, float], test.operand)
        return f"({x} is not None and {code.const(low)} <= {x} <= {code.const(high)})"
    if op == "is":
        return f"{x} is {v}"
    if op in ("exists", "missing"):
        present = (op == "exists") == bool(test.operand)
        return f"{x} is not None" if present else f"{x} is None"
    raise ValueError(f"unknown operator {op!r}")  # pragma: no cover - the spec forbids it


class _RegexMemo(dict[Any, bool]):
    """value -> does the pattern occur in it; computed once per distinct value."""

    def __init__(self, pattern: Any) -> None:
        super().__init__()
        self.search = pattern.search

    def __missing__(self, value: Any) -> bool:
        if len(self) >= MEMO_LIMIT:
            self.clear()
        found = self[value] = (
            self.search(value if isinstance(value, str) else str(value)) is not None
        )
        return found


def _walk(node: Node) -> list[Test]:
    from persona_sync.rules.engine import walk_tests

    return list(walk_tests(node))


def _tests(rule_set: RuleSet) -> list[Test]:
    from persona_sync.rules.engine import walk_tests

    roots: list[Node] = []
    for persona in rule_set.personas.values():
        roots += [r.condition for r in persona.rules] + list(persona.unless)
    if rule_set.scope.include is not None:
        roots.append(rule_set.scope.include)
    roots += list(rule_set.scope.exclude)
    return [t for root in roots for t in walk_tests(root)]
