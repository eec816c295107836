"""Derive an employee's facts from raw attributes, compiled once per rule set.

Each fact tries its sources in order; the first that yields a value wins, else the
fact's default, else the fact is missing (None). Transformations of a raw string (flag,
capture, map, table, type conversion) are pure, so each source memoises them: real
directories repeat the same titles and departments thousands of times.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from persona_sync.employee import Employee
from persona_sync.rules.model import Fact, Source, Value
from persona_sync.rules.orgchart import Position
from persona_sync.rules.patterns import PatternMatch, RulePattern

Derive = Callable[[Employee, Position | None], Any]
_CACHE_LIMIT = 100_000
_MISS = object()
_TRUE = frozenset({"true", "yes", "y", "1", "t", "on"})
_FALSE = frozenset({"false", "no", "n", "0", "f", "off"})


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


def transform(source: Source, raw: Any, fact_type: str) -> Value | None:
    """Apply a source's flag/capture/map/table steps and convert to the fact's type."""
    value: Any = raw
    if source.flag is not None:
        try:
            return (int(str(value).strip()) & source.flag) != 0
        except ValueError:
            return None
    if source.capture is not None:
        match = source.capture.search(str(value))
        if match is None:
            return None
        value = _captured(source.capture, match)
    if source.mapping is not None:
        key = str(value).strip().casefold()
        for candidate, mapped in source.mapping:
            if candidate == key:
                return mapped
        return None
    if source.table is not None:
        text = str(value)
        for pattern, mapped in source.table:
            if pattern.search(text):
                return mapped
        return None
    return convert(value, fact_type)


def _captured(pattern: RulePattern, match: PatternMatch) -> str:
    if "value" in pattern.groupindex:
        return match.group("value") or ""
    if pattern.groups:
        return match.group(1) or ""
    return match.group(0) or ""


def org_chart_value(source: Source, position: Position | None) -> float | None:
    chart = source.org_chart
    if chart is None or position is None or position.depth is None:
        return None
    value = max(chart.floor, chart.top - chart.per_level * position.depth)
    if position.direct_reports >= chart.manager_min_reports:
        value += chart.manager_bonus
    return min(value, chart.top)  # the bonus never lifts anyone above the top


def read_attribute(name: str, employee: Employee, position: Position | None) -> Any:
    """Raw value of an attribute or built-in; empty and whitespace-only count as missing."""
    if name == "@dn":
        return employee.dn
    if name == "@id":
        return employee.id
    if name == "@org_depth":
        return None if position is None else position.depth
    if name == "@direct_reports":
        return None if position is None else position.direct_reports
    value = employee.attributes.get(name)
    return value if value and not value.isspace() else None


def compile_fact(fact: Fact) -> Derive:
    """One closure computing the fact for an employee."""
    sources = tuple(_compile_source(s, fact.type) for s in fact.sources)
    default = fact.default
    if len(sources) == 1 and default is None:
        return sources[0]

    def derive(employee: Employee, position: Position | None) -> Any:
        for source in sources:
            value = source(employee, position)
            if value is not None:
                return value
        return default

    return derive


def _compile_source(source: Source, fact_type: str) -> Derive:
    if source.org_chart is not None:
        return lambda employee, position: org_chart_value(source, position)
    if not source.attributes:
        constant = source.constant
        return lambda employee, position: constant
    names = source.attributes
    plain = all(not n.startswith("@") for n in names)
    if {"@dn", "@id"} & set(names):  # unique per employee: a memo would only miss
        return lambda employee, position: _first_transformed(source, fact_type, employee, position)
    cache: dict[Any, Any] = {}

    def derive(employee: Employee, position: Position | None) -> Any:
        raw: Any = None
        if plain:
            attributes = employee.attributes
            for name in names:
                raw = attributes.get(name)
                if raw and not raw.isspace():
                    break
            else:
                return None
        else:
            for name in names:
                raw = read_attribute(name, employee, position)
                if raw is not None:
                    break
            else:
                return None
        value = cache.get(raw, _MISS)
        if value is _MISS:
            value = transform(source, raw, fact_type)
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            cache[raw] = value
        return value

    return derive


def _first_transformed(
    source: Source, fact_type: str, employee: Employee, position: Position | None
) -> Any:
    for name in source.attributes:
        raw = read_attribute(name, employee, position)
        if raw is not None:
            return transform(source, raw, fact_type)
    return None


@dataclass(frozen=True)
class FactOrigin:
    """A fact's value and where it came from, for explain."""

    name: str
    value: Value | None
    origin: str
    raw: Any = None


def trace_fact(fact: Fact, employee: Employee, position: Position | None) -> FactOrigin:
    """Derive one fact slowly, saying which source gave the value."""
    for source in fact.sources:
        if source.org_chart is not None:
            value = org_chart_value(source, position)
            if value is not None:
                depth = position.depth if position else None
                reports = position.direct_reports if position else 0
                return FactOrigin(
                    fact.name, value, f"org chart (depth {depth}, {reports} direct reports)"
                )
            continue
        if not source.attributes:
            if source.constant is not None:
                return FactOrigin(fact.name, source.constant, "constant")
            continue
        for name in source.attributes:
            raw = read_attribute(name, employee, position)
            if raw is None:
                continue
            derived = transform(source, raw, fact.type)
            if derived is not None:
                return FactOrigin(fact.name, derived, source.describe(name), raw)
            break
    if fact.default is not None:
        return FactOrigin(fact.name, fact.default, "default")
    return FactOrigin(fact.name, None, "no source had a value")
