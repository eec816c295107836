"""Conditions compiled to closures for the hot path, and traced for explain.

Facts arrive as a list (one slot per fact, plus case-folded copies of text facts that
case-insensitive tests read). :func:`compile_node` turns a condition tree into nested
closures once; :func:`trace_node` evaluates the same tree slowly, recording why each part
held or failed. Both must agree; the tests check it on random inputs.

Semantics: a missing fact (None) fails every test except ``missing: true``,
``exists: false`` and ``not_in`` (a missing department is not in [Sales]).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from persona_sync.rules.model import AllOf, Node, NotOf, Test, Value

Facts = Sequence[Any]
Check = Callable[[Facts], bool]
SlotOf = Callable[[str, bool], int]

FOLDED_OPERATORS = frozenset({"equals", "in", "not_in", "starts_with", "ends_with", "contains"})


def reads_folded(test: Test, fact_type: str) -> bool:
    """Whether the test reads the case-folded copy of a text fact."""
    return fact_type == "string" and not test.case_sensitive and test.operator in FOLDED_OPERATORS


def compile_node(node: Node, slot_of: Callable[[Test], int]) -> Check:
    """Compile a condition tree into one closure over the facts list."""
    if isinstance(node, Test):
        return _compile_test(node, slot_of(node))
    if isinstance(node, NotOf):
        inner = compile_node(node.child, slot_of)
        return lambda f: not inner(f)
    checks = tuple(compile_node(child, slot_of) for child in node.children)
    if isinstance(node, AllOf):
        return _all(checks)
    return _any(checks)


def _all(checks: tuple[Check, ...]) -> Check:
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda f: a(f) and b(f)
    if len(checks) == 3:
        a, b, c = checks
        return lambda f: a(f) and b(f) and c(f)

    def every(f: Facts) -> bool:  # a loop beats all(genexpr) here
        for check in checks:  # noqa: SIM110
            if not check(f):
                return False
        return True

    return every


def _any(checks: tuple[Check, ...]) -> Check:
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda f: a(f) or b(f)
    if len(checks) == 3:
        a, b, c = checks
        return lambda f: a(f) or b(f) or c(f)

    def some(f: Facts) -> bool:  # a loop beats any(genexpr) here
        for check in checks:  # noqa: SIM110
            if check(f):
                return True
        return False

    return some


def _compile_test(test: Test, i: int) -> Check:  # noqa: C901 - one branch per operator
    op = test.operator
    v: Any = test.operand
    if op == "equals":
        return lambda f: f[i] == v
    if op == "in":
        return lambda f: f[i] in v
    if op == "not_in":
        return lambda f: f[i] not in v
    if op == "matches":
        assert test.pattern is not None
        search = test.pattern.search
        return lambda f: (x := f[i]) is not None and search(str(x)) is not None
    if op == "starts_with":
        return lambda f: (x := f[i]) is not None and x.startswith(v)
    if op == "ends_with":
        return lambda f: (x := f[i]) is not None and x.endswith(v)
    if op == "contains":
        return lambda f: (x := f[i]) is not None and v in x
    if op == "gt":
        return lambda f: (x := f[i]) is not None and x > v
    if op == "gte":
        return lambda f: (x := f[i]) is not None and x >= v
    if op == "lt":
        return lambda f: (x := f[i]) is not None and x < v
    if op == "lte":
        return lambda f: (x := f[i]) is not None and x <= v
    if op == "between":
        low, high = v
        return lambda f: (x := f[i]) is not None and low <= x <= high
    if op == "is":
        return lambda f: f[i] is v
    if op == "exists":
        return (lambda f: f[i] is not None) if v else (lambda f: f[i] is None)
    if op == "missing":
        return (lambda f: f[i] is None) if v else (lambda f: f[i] is not None)
    raise ValueError(f"unknown operator {op!r}")  # pragma: no cover - spec forbids it


@dataclass(frozen=True)
class Trace:
    """Why a condition held or failed: one line per node, children indented."""

    result: bool
    text: str
    children: tuple[Trace, ...] = ()

    def lines(self, indent: int = 0) -> list[str]:
        mark = "yes" if self.result else "no "
        out = [f"{'  ' * indent}[{mark}] {self.text}"]
        for child in self.children:
            out.extend(child.lines(indent + 1))
        return out

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"result": self.result, "condition": self.text}
        if self.children:
            data["children"] = [c.as_dict() for c in self.children]
        return data


def trace_node(node: Node, facts: Mapping[str, Value | None], types: Mapping[str, str]) -> Trace:
    """Evaluate slowly, recording every step; same answers as :func:`compile_node`."""
    if isinstance(node, Test):
        return _trace_test(node, facts.get(node.fact), types.get(node.fact, "string"))
    if isinstance(node, NotOf):
        inner = trace_node(node.child, facts, types)
        return Trace(not inner.result, "not", (inner,))
    children = tuple(trace_node(child, facts, types) for child in node.children)
    if isinstance(node, AllOf):
        return Trace(all(c.result for c in children), "all of", children)
    return Trace(any(c.result for c in children), "any of", children)


def _trace_test(test: Test, value: Value | None, fact_type: str) -> Trace:
    probe: Any = value
    if isinstance(value, str) and reads_folded(test, fact_type):
        probe = value.casefold()
    result = _compile_test(test, 0)([probe])
    shown = "missing" if value is None else repr(value) if isinstance(value, str) else _plain(value)
    return Trace(result, f"{test.describe()}  (is {shown})")


def _plain(value: Value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
