"""OData query options on users: $select, $filter, $top, $expand=manager, and how a user
is rendered as JSON.

$filter covers what persona-sync sends and what Graph answers without "advanced query"
headers: `eq` on string, boolean and extension properties, `startswith(prop,'x')`, joined
with `and` / `or` and parentheses. Everything else (ne, not, endswith, lambda operators,
eq null, onPremisesExtensionAttributes/...) is Graph's "advanced query" territory and is
answered with 400 Request_UnsupportedQuery unless the request carries
`ConsistencyLevel: eventual` and `$count=true`, as on the real service.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .directory import (
    DEFAULT_USER_SELECT,
    EXTENSION_ATTRIBUTES,
    USER_PROPERTIES,
    Directory,
)

Predicate = Callable[[dict[str, Any]], bool]

# eq / startswith without advanced-query headers (Graph's user reference, "Supports $filter")
FILTERABLE = frozenset({
    "id", "accountEnabled", "displayName", "givenName", "surname", "userPrincipalName",
    "mail", "mailNickname", "jobTitle", "department", "companyName", "officeLocation",
    "city", "state", "country", "usageLocation", "preferredLanguage", "employeeId",
    "employeeType", "userType", "onPremisesSyncEnabled", "onPremisesSamAccountName",
    "onPremisesImmutableId", "onPremisesUserPrincipalName", "mobilePhone",
})  # fmt: skip
STARTSWITH = FILTERABLE - {"accountEnabled", "onPremisesSyncEnabled", "id"}


@dataclass(frozen=True)
class Expand:
    """$expand=manager, with the manager's own $select (None: the default set)."""

    select: tuple[str, ...] | None


def parse_select(value: str | None, directory: Directory) -> tuple[str, ...] | None:
    if value is None:
        return None
    names: list[str] = []
    for raw in value.split(","):
        raw = raw.strip()
        if not raw:
            continue
        canonical = directory.canonical_user_property(raw)
        if canonical is None:
            raise errors.unknown_property(raw)
        if canonical not in names:
            names.append(canonical)
    return tuple(names)


def parse_top(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit() or not 1 <= int(value) <= 999:
        raise errors.bad_page_size(value)
    return int(value)


_EXPAND = re.compile(r"^\s*manager\s*(?:\(\s*\$select\s*=\s*([^)]*)\))?\s*$", re.IGNORECASE)


def parse_expand(value: str | None, directory: Directory) -> Expand | None:
    if value is None:
        return None
    match = _EXPAND.match(value)
    if match is None:
        prop = value.split("(")[0].strip()
        raise errors.no_segment(prop) if prop.lower() != "manager" else errors.unsupported_query()
    return Expand(parse_select(match.group(1), directory) if match.group(1) else None)


def render_user(
    user: dict[str, Any],
    select: tuple[str, ...] | None,
    directory: Directory,
    *,
    nulls_for_extensions: bool = False,
) -> dict[str, Any]:
    """A user as Graph returns it: the selected properties (the default set without
    $select) and always `id`. Directory extensions without a value are left out, as Graph
    does, unless `nulls_for_extensions` (delta answers show a cleared value as null)."""
    names = select if select is not None else DEFAULT_USER_SELECT
    out: dict[str, Any] = {}
    for name in names:
        if name == "customSecurityAttributes":
            out[name] = render_security_attributes(user.get(name) or {}, directory)
        elif name not in USER_PROPERTIES:  # a directory extension
            value = user.get(name)
            if value is not None or nulls_for_extensions:
                out[name] = value
        elif name == "onPremisesExtensionAttributes":
            out[name] = dict(user[name])
        elif name == "businessPhones":
            out[name] = list(user[name] or [])
        else:
            out[name] = user.get(name)
    out["id"] = user["id"]
    return out


def render_security_attributes(
    values: dict[str, dict[str, Any]], directory: Directory
) -> dict[str, Any] | None:
    rendered: dict[str, Any] = {}
    for attribute_set, attributes in values.items():
        entry: dict[str, Any] = {"@odata.type": "#microsoft.graph.customSecurityAttributeValue"}
        for name, value in attributes.items():
            if value is None:
                continue
            kind = directory.attribute_definitions.get((attribute_set.lower(), name.lower()))
            if kind == "Integer":
                entry[f"{name}@odata.type"] = "#Int32"
            entry[name] = value
        if len(entry) > 1:
            rendered[attribute_set] = entry
    return rendered or None


# --- $filter ---------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<punct>[(),])|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_/.]*))"
)
_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le", "in", "has"}


class _Literal:
    def __init__(self, value: Any) -> None:
        self.value = value


def _tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise errors.filter_syntax(f"syntax error at position {position} in '{text}'.")
        position = match.end()
        if match.group("string") is not None:
            tokens.append(("literal", _Literal(match.group("string")[1:-1].replace("''", "'"))))
        elif match.group("number") is not None:
            number = match.group("number")
            tokens.append(("literal", _Literal(float(number) if "." in number else int(number))))
        elif match.group("punct") is not None:
            tokens.append((match.group("punct"), None))
        else:
            word = match.group("word")
            literal = {"true": True, "false": False, "null": None}
            if word in literal:
                tokens.append(("literal", _Literal(literal[word])))
            else:
                tokens.append(("word", word))
    return tokens


class FilterParser:
    """Recursive descent over the tokens; builds a predicate on user dicts."""

    def __init__(self, text: str, directory: Directory, advanced: bool) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.position = 0
        self.directory = directory
        self.advanced = advanced

    def parse(self) -> Predicate:
        predicate = self._or()
        if self.position != len(self.tokens):
            raise errors.filter_syntax(
                f"unexpected input after position {self.position} in '{self.text}'."
            )
        return predicate

    def _peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _next(self, kind: str | None = None) -> tuple[str, Any]:
        token = self._peek()
        if token is None or (kind is not None and token[0] != kind):
            raise errors.filter_syntax(f"syntax error in '{self.text}'.")
        self.position += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token[0] == "word" and token[1].lower() == word:
            self.position += 1
            return True
        return False

    def _or(self) -> Predicate:
        parts = [self._and()]
        while self._keyword("or"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else lambda u: any(p(u) for p in parts)

    def _and(self) -> Predicate:
        parts = [self._primary()]
        while self._keyword("and"):
            parts.append(self._primary())
        return parts[0] if len(parts) == 1 else lambda u: all(p(u) for p in parts)

    def _primary(self) -> Predicate:
        token = self._peek()
        if token is not None and token[0] == "(":
            self._next()
            inner = self._or()
            self._next(")")
            return inner
        kind, word = self._next("word")
        following = self._peek()
        if following is not None and following[0] == "(":  # a function call
            return self._function(word)
        if word.lower() == "not":
            raise self._unsupported(word)
        operator: str = self._next("word")[1].lower()
        if operator not in _COMPARISONS:
            raise errors.filter_syntax(f"unknown operator '{operator}' in '{self.text}'.")
        literal = self._next("literal")[1].value
        prop, read = self._property(word)
        if operator != "eq" or literal is None:
            if not self.advanced:
                raise errors.unsupported_filter(prop)
            if operator not in {"eq", "ne"}:
                raise errors.unsupported_option(f"$filter operator {operator}")
        expected = literal.lower() if isinstance(literal, str) else literal

        def compare(user: dict[str, Any]) -> bool:
            value = read(user)
            actual = value.lower() if isinstance(value, str) else value
            return bool(actual == expected) == (operator == "eq")

        return compare

    def _function(self, name: str) -> Predicate:
        self._next("(")
        prop_word = self._next("word")[1]
        self._next(",")
        literal = self._next("literal")[1].value
        self._next(")")
        if name.lower() not in {"startswith", "endswith"} or not isinstance(literal, str):
            raise errors.filter_syntax(f"unsupported function '{name}' in '{self.text}'.")
        prop, read = self._property(prop_word)
        needs_advanced = name.lower() == "endswith" or (
            prop not in STARTSWITH and not prop.startswith("extension_")
        )
        if needs_advanced and not self.advanced:
            raise errors.unsupported_filter(prop)
        wanted = literal.lower()
        if name.lower() == "startswith":
            return lambda u: isinstance(read(u), str) and read(u).lower().startswith(wanted)
        return lambda u: isinstance(read(u), str) and read(u).lower().endswith(wanted)

    def _property(self, path: str) -> tuple[str, Callable[[dict[str, Any]], Any]]:
        head, _, rest = path.partition("/")
        canonical = self.directory.canonical_user_property(head)
        if canonical is None:
            raise errors.unknown_property(head)
        if rest:
            if canonical != "onPremisesExtensionAttributes" or rest not in EXTENSION_ATTRIBUTES:
                raise errors.unknown_property(rest)
            if not self.advanced:
                raise errors.unsupported_filter(f"{canonical}/{rest}")
            return path, lambda u: (u.get(canonical) or {}).get(rest)
        if canonical in {
            "onPremisesExtensionAttributes",
            "customSecurityAttributes",
            "businessPhones",
        } or (canonical in USER_PROPERTIES and canonical not in FILTERABLE and not self.advanced):
            raise errors.unsupported_filter(canonical)
        return canonical, lambda u: u.get(canonical)

    def _unsupported(self, word: str) -> errors.GraphError:
        return (
            errors.unsupported_query()
            if not self.advanced
            else errors.unsupported_option(f"$filter {word}")
        )


def parse_filter(text: str | None, directory: Directory, advanced: bool) -> Predicate | None:
    if text is None:
        return None
    return FilterParser(text, directory, advanced).parse()
