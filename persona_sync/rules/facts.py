"""The one fact compiler: each fact's derivation, described once, run by every front end.

:func:`compile_fact` turns a :class:`Fact` into a :class:`CompiledFact`, its sources as
steps in order: :class:`ReadStep` (directory attributes or built-ins), :class:`ConstantStep`
and :class:`OrgChartStep`. A read step carries the one function, ``derive``, that turns a
raw value into the fact's value (flag, capture, map, table, type conversion). The engine's
generated code (:mod:`persona_sync.rules.codegen`) emits the steps as straight-line code
and memoises ``derive`` per raw value; :func:`trace_fact` runs the same steps slowly for
explain, saying which one gave the value.

Semantics: the first step that yields a value wins, else the fact's default, else the
fact is missing (None). A read step takes the first of its attributes that has a value
(:func:`read_raw`: empty and whitespace-only count as missing) and yields ``derive(raw)``;
when that is None the next step runs (the step's later attributes are not tried).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from persona_sync.employee import Employee
from persona_sync.rules.model import Fact, FactType, OrgChartSource, Source, Value
from persona_sync.rules.orgchart import Position
from persona_sync.rules.patterns import RulePattern

Derive = Callable[[Any], Value | None]
MEMO_LIMIT = 100_000  # distinct raw values remembered per memo before it starts afresh
# Built-ins whose value differs for every employee: memoising them would only cost.
UNIQUE_BUILTINS = frozenset({"@dn", "@id"})
_TRUE = frozenset({"true", "yes", "y", "1", "t", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "f", "off"})


@dataclass(frozen=True, slots=True)
class ReadStep:
    """Read ``reads`` in order; the first with a value, through ``derive``, is the value.

    ``repeats``: raw values recur across employees (titles, departments), so the
    generated code memoises ``derive``; False when a built-in that is unique per employee
    (``@dn``, ``@id``) is read.
    """

    source: Source
    reads: tuple[str, ...]
    derive: Derive
    repeats: bool
    inline: Inline | None = None  # ``derive`` as an expression over text, when it is one

    def origin(self, attribute: str, place: str | None = None) -> str:
        return self.source.describe(attribute, place)


@dataclass(frozen=True, slots=True)
class Inline:
    """A derivation as one Python expression over the text ``{x}`` and the operands
    ``{o0}``, ``{o1}``, ... (handed in as constants, never pasted into code)."""

    template: str
    operands: tuple[Any, ...]

    def text(self, x: str, const: Callable[[Any], str]) -> str:
        names = {f"o{i}": const(operand) for i, operand in enumerate(self.operands)}
        return self.template.format(x=x, **names)


@dataclass(frozen=True, slots=True)
class ConstantStep:
    source: Source
    value: Value | None


@dataclass(frozen=True, slots=True)
class OrgChartStep:
    """The value from the employee's place in the manager chain (None without one)."""

    source: Source
    chart: OrgChartSource

    def value(self, position: Position | None) -> float | None:
        chart = self.chart
        if position is None or position.depth is None:
            return None
        value = max(chart.floor, chart.top - chart.per_level * position.depth)
        if position.direct_reports >= chart.manager_min_reports:
            value += chart.manager_bonus
        return min(value, chart.top)  # the bonus never lifts anyone above the top

    @staticmethod
    def origin(position: Position) -> str:
        return f"org chart (depth {position.depth}, {position.direct_reports} direct reports)"


Step = ReadStep | ConstantStep | OrgChartStep


@dataclass(frozen=True, slots=True)
class CompiledFact:
    name: str
    type: FactType
    steps: tuple[Step, ...]
    default: Value | None


def compile_fact(fact: Fact) -> CompiledFact:
    """The fact's sources as steps, each read step with its ``derive`` built once."""
    return CompiledFact(
        fact.name, fact.type, tuple(_step(s, fact.type) for s in fact.sources), fact.default
    )


def _step(source: Source, fact_type: FactType) -> Step:
    if source.org_chart is not None:
        return OrgChartStep(source, source.org_chart)
    if not source.attributes:
        return ConstantStep(source, source.constant)
    inline = _inline(source)
    return ReadStep(
        source,
        source.attributes,
        deriver(source, fact_type) if inline is None else _text_function(inline),
        repeats=not UNIQUE_BUILTINS & set(source.attributes),
        inline=inline,
    )


def read_raw(name: str, employee: Employee, position: Position | None) -> Any:
    """Raw value of an attribute or built-in; None, empty and whitespace-only: missing."""
    if name == "@dn":
        value: Any = employee.dn
    elif name == "@id":
        value = employee.id
    elif name == "@org_depth":
        value = None if position is None else position.depth
    elif name == "@direct_reports":
        value = None if position is None else position.direct_reports
    else:
        value = employee.attributes.get(name)
    if isinstance(value, str) and (not value or value.isspace()):
        return None
    return value


def trace_fact(
    fact: CompiledFact,
    employee: Employee,
    position: Position | None,
    places: Mapping[str, object] | None = None,
) -> FactOrigin:
    """Run the fact's steps slowly, saying which one gave the value (``places``: where
    some attributes' values were read, e.g. a feed's file and line, said instead)."""
    for step in fact.steps:
        if isinstance(step, OrgChartStep):
            value = step.value(position)
            if value is not None:
                assert position is not None  # a value needs a place in the chart
                return FactOrigin(fact.name, value, step.origin(position))
        elif isinstance(step, ConstantStep):
            if step.value is not None:
                return FactOrigin(fact.name, step.value, "constant")
        else:
            for name in step.reads:
                raw = read_raw(name, employee, position)
                if raw is not None:
                    derived = step.derive(raw)
                    if derived is not None:
                        place = places.get(name) if places else None
                        origin = step.origin(name, None if place is None else str(place))
                        return FactOrigin(fact.name, derived, origin, raw, name)
                    break
    if fact.default is not None:
        return FactOrigin(fact.name, fact.default, "default")
    return FactOrigin(fact.name, None, "no source had a value")


@dataclass(frozen=True)
class FactOrigin:
    """A fact's value and where it came from, for explain."""

    name: str
    value: Value | None
    origin: str
    raw: Any = None
    attribute: str | None = None  # the attribute that gave the value, if one did


# --- derive: a raw value to the fact's value -------------------------------------------


def deriver(source: Source, fact_type: FactType) -> Derive:
    """The source's flag, or its capture, then map or table or type conversion, as one
    function of the raw value. Pure: the same raw value always gives the same value."""
    flag = source.flag
    if flag is not None:
        return lambda raw: _flag(raw, flag)
    final = (
        _by_map(source.mapping)
        if source.mapping is not None
        else _by_table(source.table)
        if source.table is not None
        else _converter(fact_type)
    )
    capture = source.capture
    if capture is None:
        return final

    def captured(raw: Any) -> Value | None:
        text = _capture(capture, raw)
        return None if text is None else final(text)

    return captured


def _flag(raw: Any, flag: int) -> bool | None:
    try:
        return (int(str(raw).strip()) & flag) != 0
    except ValueError:
        return None


def _capture(pattern: RulePattern, raw: Any) -> str | None:
    """The named group ``value``, else group 1, else the whole match; None: no match."""
    match = pattern.search(str(raw))
    if match is None:
        return None
    if "value" in pattern.groupindex:
        return match.group("value") or ""
    return match.group(1 if pattern.groups else 0) or ""


def _by_map(mapping: tuple[tuple[str, Value], ...]) -> Derive:
    """Case-insensitive lookup of the trimmed value; the first entry for a key wins."""
    table = dict(reversed(mapping))
    return lambda raw: table.get(str(raw).strip().casefold())


def _inline(source: Source) -> Inline | None:
    """A table on the plain value as one expression; None for other derivations."""
    if source.table is None or source.flag is not None or source.capture is not None:
        return None
    if source.mapping is not None:
        return None
    return _table_expression(source.table)


def _table_expression(rows: tuple[tuple[RulePattern, Value], ...]) -> Inline:
    """The value of the first row whose pattern occurs in the text, else None."""
    template = "".join(
        f"{{o{2 * n + 1}}} if {{o{2 * n}}}({{x}}) is not None else " for n in range(len(rows))
    )
    operands = tuple(item for pattern, value in rows for item in (pattern.search, value))
    return Inline(f"({template}None)", operands)


def _by_table(rows: tuple[tuple[RulePattern, Value], ...]) -> Derive:
    return _text_function(_table_expression(rows))


def _text_function(inline: Inline) -> Derive:
    """The expression compiled into a function of the raw value (as text)."""
    names: dict[str, Any] = {}

    def const(value: Any) -> str:
        name = f"o{len(names)}"
        names[name] = value
        return name

    body = inline.text("text", const)
    keywords = "".join(f", {name}={name}" for name in names)
    source = (
        f"def derive(raw, *{keywords}):\n"
        "    text = raw if raw.__class__ is str else str(raw)\n"
        f"    return {body}\n"
    )
    exec(compile(source, "<persona-sync fact>", "exec"), names)  # noqa: S102
    derive: Derive = names["derive"]
    return derive


def _converter(fact_type: FactType) -> Derive:
    return lambda raw: convert(raw, fact_type)


def convert(raw: Any, fact_type: str) -> Value | None:
    """Turn a raw value into the fact's type; None when it does not convert."""
    if raw is None:
        return None
    if fact_type == "string":
        text = raw if isinstance(raw, str) else str(raw)
        text = text.strip()
        return text or None
    if fact_type == "number":
        if isinstance(raw, bool):
            return None
        try:
            number = (
                float(raw)
                if isinstance(raw, int | float)
                else float(str(raw).strip().replace(",", "."))
            )
        except ValueError:
            return None
        return number if math.isfinite(number) else None  # "nan" and "inf" are not numbers
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().casefold()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return None
