"""Conditions: each operator's meaning written once, and one walk over a condition tree.

Each operator is a Python expression template over ``{x}`` (the fact's value) and its
operands ``{o0}``, ``{o1}`` (constants handed in by name, never pasted). :func:`expression`
writes a whole tree as one expression; the engine's generated code inlines it, and
:func:`compile_node` compiles it over a facts row. :func:`trace_node` evaluates the same
tree slowly for explain, recording why each part held or failed; each of its leaves runs
the operator's template too, so both ways agree by construction.

Semantics: a missing fact (None) fails every test except ``missing: true``,
``exists: false`` and ``not_in`` (a missing department is not in [Sales]). Case-insensitive
tests of text facts read the value case-folded (operands are folded when the rules load).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from persona_sync.rules.model import AllOf, Node, NotOf, RuleSet, Test, Value

Facts = Sequence[Any]
Check = Callable[[Facts], bool]
Const = Callable[[Any], str]  # registers a constant, returns the name the code uses
T = TypeVar("T")

FOLDED_OPERATORS = frozenset({"equals", "in", "not_in", "starts_with", "ends_with", "contains"})
MATCH_MEMO_LIMIT = 100_000
_COMPARISONS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def reads_folded(test: Test, fact_type: str) -> bool:
    """Whether the test reads the case-folded copy of a text fact."""
    return fact_type == "string" and not test.case_sensitive and test.operator in FOLDED_OPERATORS


# --- the operators ---------------------------------------------------------------------


def leaf(test: Test) -> tuple[str, tuple[Any, ...]]:
    """The test as an expression template over ``{x}``, and the operands ``{o0}``, ..."""
    op = test.operator
    v: Any = test.operand
    if op == "equals":
        return "{x} == {o0}", (v,)
    if op == "in":
        return "{x} in {o0}", (v,)
    if op == "not_in":
        return "{x} not in {o0}", (v,)
    if op == "matches":
        assert test.pattern is not None
        return "({x} is not None and {o0}[{x}])", (MatchMemo(test.pattern.search),)
    if op == "starts_with":
        return "({x} is not None and {x}.startswith({o0}))", (v,)
    if op == "ends_with":
        return "({x} is not None and {x}.endswith({o0}))", (v,)
    if op == "contains":
        return "({x} is not None and {o0} in {x})", (v,)
    if op in _COMPARISONS:
        return f"({{x}} is not None and {{x}} {_COMPARISONS[op]} {{o0}})", (v,)
    if op == "between":
        low, high = cast(tuple[float, float], v)
        return "({x} is not None and {o0} <= {x} <= {o1})", (low, high)
    if op == "is":
        return "{x} is {o0}", (v,)
    if op in ("exists", "missing"):
        present = (op == "exists") == bool(v)
        return ("{x} is not None" if present else "{x} is None"), ()
    raise ValueError(f"unknown operator {op!r}")  # pragma: no cover - the spec forbids it


class MatchMemo(dict[Any, bool]):
    """value -> does the pattern occur in it; searched once per distinct value."""

    def __init__(self, search: Callable[[str], object]) -> None:
        super().__init__()
        self.search = search

    def __missing__(self, value: Any) -> bool:
        if len(self) >= MATCH_MEMO_LIMIT:
            self.clear()
        found = self[value] = (
            self.search(value if isinstance(value, str) else str(value)) is not None
        )
        return found


# --- the walk ----------------------------------------------------------------------------


def fold_tree(
    node: Node,
    test: Callable[[Test], T],
    negate: Callable[[T], T],
    every: Callable[[tuple[T, ...]], T],
    some: Callable[[tuple[T, ...]], T],
) -> T:
    """The one walk over a condition tree: leaves by ``test``, then the combinators."""
    if isinstance(node, Test):
        return test(node)
    if isinstance(node, NotOf):
        return negate(fold_tree(node.child, test, negate, every, some))
    children = tuple(fold_tree(c, test, negate, every, some) for c in node.children)
    return every(children) if isinstance(node, AllOf) else some(children)


def walk_tests(node: Node) -> Iterator[Test]:
    """Every test in the tree, in order."""
    yield from fold_tree(
        node,
        lambda t: (t,),
        lambda inner: inner,
        lambda parts: tuple(t for part in parts for t in part),
        lambda parts: tuple(t for part in parts for t in part),
    )


def rule_set_conditions(rule_set: RuleSet) -> list[Node]:
    """Every condition tree of the rule set: rules and unless, persona by persona, then scope."""
    roots: list[Node] = []
    for persona in rule_set.personas.values():
        roots.extend(r.condition for r in persona.rules)
        roots.extend(persona.unless)
    if rule_set.scope.include is not None:
        roots.append(rule_set.scope.include)
    roots.extend(rule_set.scope.exclude)
    return roots


def expression(node: Node, value_of: Callable[[Test], str], const: Const) -> str:
    """The tree as one Python expression; ``value_of(test)`` names the value it reads."""

    def test(t: Test) -> str:
        template, operands = leaf(t)
        names = {f"o{i}": const(operand) for i, operand in enumerate(operands)}
        return template.format(x=value_of(t), **names)

    def negate(inner: str) -> str:
        return f"not ({inner})"

    def every(parts: tuple[str, ...]) -> str:
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"

    def some(parts: tuple[str, ...]) -> str:
        return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"

    return fold_tree(node, test, negate, every, some)


def compile_node(node: Node, slot_of: Callable[[Test], int]) -> Check:
    """The tree compiled once into a function of a facts row (``row[slot_of(test)]``)."""
    constants: list[Any] = []

    def const(value: Any) -> str:
        constants.append(value)
        return f"c[{len(constants) - 1}]"

    text = expression(node, lambda t: f"f[{slot_of(t)}]", const)
    return functools.partial(_row_function(text), c=tuple(constants))


@functools.lru_cache(maxsize=4096)
def _row_function(text: str) -> Callable[..., bool]:
    # ``text`` holds only names made up here (f, c); the rule's values are in ``c``.
    function: Callable[..., bool] = eval(f"lambda f, c: bool({text})", {})  # noqa: S307
    return function


# --- the trace ---------------------------------------------------------------------------


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
    """Evaluate slowly, recording every step; same answers as :func:`expression`."""

    def test(t: Test) -> Trace:
        value = facts.get(t.fact)
        probe: Any = value
        if isinstance(value, str) and reads_folded(t, types.get(t.fact, "string")):
            probe = value.casefold()
        result = compile_node(t, lambda _t: 0)([probe])
        shown = (
            "missing" if value is None else repr(value) if isinstance(value, str) else _plain(value)
        )
        return Trace(result, f"{t.describe()}  (is {shown})")

    return fold_tree(
        node,
        test,
        lambda inner: Trace(not inner.result, "not", (inner,)),
        lambda parts: Trace(all(p.result for p in parts), "all of", parts),
        lambda parts: Trace(any(p.result for p in parts), "any of", parts),
    )


def _plain(value: Value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
