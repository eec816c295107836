"""Load rule files into a checked :class:`RuleSet`, reporting every error at once.

Two passes: each file is parsed and validated on its own (syntax, keys, types), then the
files are merged and cross-checked (unknown facts and personas, duplicate ids, precedence
ties, regexes, operators that do not fit a fact's type). Every problem becomes a
``path:line:col`` error; :class:`~persona_sync.errors.ValidationFailed` carries them all.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_sync.errors import Location, RuleError, ValidationFailed
from persona_sync.located import model_keys, validate_document
from persona_sync.rules import spec
from persona_sync.rules.model import (
    BUILTIN_ATTRIBUTES,
    NUMBER_OPERATORS,
    STRING_OPERATORS,
    AllOf,
    AnyOf,
    Fact,
    Node,
    NotOf,
    OrgChartSource,
    Persona,
    Rule,
    RuleSet,
    Scenario,
    Scope,
    Source,
    Test,
    Value,
)
from persona_sync.rules.patterns import PatternError, RulePattern, compile_pattern
from persona_sync.yamlsource import LocatedDocument, PathKey, load_yaml

RULE_FILE_SUFFIXES = (".yaml", ".yml")
DEFAULT_SCENARIO = "persona"
_RULE_KEYS = model_keys(spec.RuleFile)


@dataclass(frozen=True)
class _Parsed:
    doc: LocatedDocument
    spec: spec.RuleFile
    raw: bytes
    failed: frozenset[str] = frozenset()  # sections with pieces that did not validate


def _salvage(data: dict[str, Any]) -> tuple[spec.RuleFile, frozenset[str]]:
    """The pieces of an invalid rule file that do validate, each on its own.

    Invalid list items become None so the others keep their index (and location).
    """
    failed: set[str] = set()

    def one(model: type[Any], value: Any, section: str) -> Any:
        try:
            return model.model_validate(value)
        except ValueError:
            failed.add(section)
            return None

    def many(model: type[Any], section: str) -> list[Any]:
        items = data.get(section)
        if not isinstance(items, list):
            if items is not None:
                failed.add(section)
            return []
        return [one(model, item, section) for item in items]

    raw_facts = data.get("facts")
    facts: dict[str, Any] = {}
    if isinstance(raw_facts, dict):
        for name, value in raw_facts.items():
            fact = one(spec.FactSpec, value, "facts")
            if fact is not None:
                facts[str(name)] = fact
    elif raw_facts is not None:
        failed.add("facts")
    scope = one(spec.ScopeSpec, data["scope"], "scope") if data.get("scope") is not None else None
    salvaged = spec.RuleFile.model_construct(
        personas=many(spec.PersonaSpec, "personas"),
        facts=facts,
        scope=scope,
        scenarios=many(spec.ScenarioSpec, "scenarios"),
    )
    return salvaged, frozenset(failed)


def rule_files(paths: Sequence[Path]) -> tuple[list[Path], list[RuleError]]:
    """Expand folders into their rule files (``*.yaml``, ``*.yml``, not recursive)."""
    files: list[Path] = []
    errors: list[RuleError] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.suffix in RULE_FILE_SUFFIXES and p.is_file()
            )
            if not found:
                errors.append(
                    RuleError(None, f"{path}: no rule files (*.yaml, *.yml) in this folder")
                )
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            errors.append(RuleError(None, f"{path}: no such file or folder"))
    return files, errors


def load_rules(paths: Sequence[Path]) -> RuleSet:
    """Load, validate and cross-check rule files; raise ValidationFailed listing all errors."""
    files, errors = rule_files(paths)
    parsed: list[_Parsed] = []
    empty = "file is empty: a rule file declares personas, facts, scope or scenarios"
    for path, doc in load_documents(files, empty, errors):
        if not isinstance(doc.data, dict):
            errors.append(
                doc.error(
                    (), "a rule file must be a mapping with keys such as personas, facts, scope"
                )
            )
            continue
        rule_file, problems = validate_document(spec.RuleFile, doc, _RULE_KEYS)
        errors.extend(problems)
        failed: frozenset[str] = frozenset()
        if rule_file is None:
            rule_file, failed = _salvage(doc.data)
        parsed.append(_Parsed(doc, rule_file, path.read_bytes(), failed))
    if errors:
        # Cross-check what did validate, so every error is reported in one pass; a
        # reference into a piece that failed validation is not reported as unknown.
        ValidationFailed.raise_if_any(errors + _Builder(parsed).errors_only())
    builder = _Builder(parsed)
    rule_set = builder.build()
    ValidationFailed.raise_if_any(builder.errors)
    return rule_set


def load_documents(
    files: Sequence[Path], empty: str, errors: list[RuleError]
) -> Iterator[tuple[Path, LocatedDocument]]:
    """Each file parsed; unreadable, invalid and empty ones go to ``errors`` instead."""
    for path in files:
        try:
            doc = load_yaml(path)
        except RuleError as exc:
            errors.append(exc)
            continue
        if doc.data is None:
            errors.append(RuleError(Location(str(path), 1, 1), empty))
            continue
        yield path, doc


def checksum_files(contents: Iterable[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256()
    for name, raw in sorted(contents):
        digest.update(name.encode() + b"\0" + hashlib.sha256(raw).digest())
    return "sha256:" + digest.hexdigest()


class _Builder:
    """Merges parsed files into a RuleSet, collecting every cross-reference error."""

    def __init__(self, parsed: Sequence[_Parsed]) -> None:
        self.parsed = parsed
        failed = {section for item in parsed for section in item.failed}
        self.partial_facts = "facts" in failed
        self.partial_personas = "personas" in failed
        self.partial_scope = "scope" in failed
        self.errors: list[RuleError] = []
        self.facts: dict[str, Fact] = {}
        self.fact_usage: dict[str, list[Location]] = {}
        self.attribute_usage: dict[str, list[Location]] = {}

    def errors_only(self) -> list[RuleError]:
        self.build()
        return self.errors

    def build(self) -> RuleSet:
        for item in self.parsed:
            for name, fact_spec in item.spec.facts.items():
                self._add_fact(item.doc, name, fact_spec)
        personas: dict[str, Persona] = {}
        rule_locations: dict[str, Location] = {}
        for item in self.parsed:
            for index, persona_spec in enumerate(item.spec.personas):
                if persona_spec is None:
                    continue
                persona = self._persona(item.doc, ("personas", index), persona_spec)
                if persona.id in personas:
                    self._error(
                        item.doc,
                        ("personas", index, "id"),
                        f"duplicate persona id '{persona.id}' (first defined at "
                        f"{personas[persona.id].location})",
                    )
                    continue
                for rule_index, rule in enumerate(persona.rules):
                    if rule.id in rule_locations:
                        self._error(
                            item.doc,
                            ("personas", index, "rules", rule_index, "id"),
                            f"duplicate rule id '{rule.id}' (first defined at "
                            f"{rule_locations[rule.id]})",
                        )
                    rule_locations.setdefault(rule.id, rule.location)
                personas[persona.id] = persona
        scope = self._scope()
        self._check_personas(personas, scope)
        scenarios = self._scenarios(personas, scope)
        return RuleSet(
            personas=personas,
            facts=self.facts,
            scope=scope,
            scenarios=scenarios,
            files=tuple(item.doc.path for item in self.parsed),
            checksum=checksum_files((Path(i.doc.path).name, i.raw) for i in self.parsed),
            fact_usage={k: tuple(v) for k, v in self.fact_usage.items()},
            attribute_usage={k: tuple(v) for k, v in self.attribute_usage.items()},
        )

    # --- errors -----------------------------------------------------------------------

    def _error(self, doc: LocatedDocument, path: PathKey, text: str, *, key: bool = False) -> None:
        self.errors.append(doc.error(path, text, key=key))

    # --- facts ------------------------------------------------------------------------

    def _add_fact(self, doc: LocatedDocument, name: str, fact_spec: spec.FactSpec) -> None:
        path: PathKey = ("facts", name)
        if not re.match(spec.FACT_NAME, name) or name.startswith("@"):
            self._error(
                doc,
                path,
                f"invalid fact name '{name}': use lower-case words joined by '.' or '_', "
                "e.g. role.title",
                key=True,
            )
            return
        if name in self.facts:
            self._error(
                doc,
                path,
                f"duplicate fact '{name}' (first defined at {self.facts[name].location})",
                key=True,
            )
            return
        raw = doc.data["facts"][name]
        inline = isinstance(raw, dict) and "sources" not in raw
        sources = []
        for index, source_spec in enumerate(fact_spec.sources):
            source_path = path if inline else (*path, "sources", index)
            source = self._source(doc, source_path, fact_spec.type, source_spec)
            if source is not None:
                sources.append(source)
        default = None
        if fact_spec.default is not None:
            default = self._typed(doc, (*path, "default"), fact_spec.type, fact_spec.default)
        self.facts[name] = Fact(
            name=name,
            type=fact_spec.type,
            description=fact_spec.description,
            sources=tuple(sources),
            default=default,
            location=doc.locate(path, key=True),
        )

    def _source(
        self, doc: LocatedDocument, path: PathKey, fact_type: str, source: spec.FactSource
    ) -> Source | None:
        ok = True
        attributes = tuple(a.lower() for a in source.attributes)
        listed = isinstance(source.from_, list)
        for index, attr in enumerate(attributes):
            where = (*path, "from", index) if listed else (*path, "from")
            self.attribute_usage.setdefault(attr, []).append(doc.locate(where))
        for attr in attributes:
            if attr.startswith("@") and attr not in BUILTIN_ATTRIBUTES:
                self._error(
                    doc,
                    (*path, "from"),
                    f"unknown built-in attribute '{attr}' "
                    f"(known: {', '.join(sorted(BUILTIN_ATTRIBUTES))})",
                )
                ok = False
        org_chart = None
        if source.org_chart is not None:
            if fact_type != "number":
                self._error(
                    doc,
                    (*path, "org_chart"),
                    "org_chart gives a number: use it on a fact of type number",
                )
                ok = False
            oc = source.org_chart
            org_chart = OrgChartSource(
                oc.top, oc.per_level, oc.floor, oc.manager_bonus, oc.manager_min_reports
            )
        if source.flag is not None and fact_type != "boolean":
            self._error(
                doc, (*path, "flag"), "flag gives true or false: use it on a fact of type boolean"
            )
            ok = False
        capture = self._regex(doc, (*path, "capture"), source.capture) if source.capture else None
        mapping = None
        if source.map is not None:
            mapping = tuple(
                (key.casefold(), self._typed(doc, (*path, "map", key), fact_type, value))
                for key, value in source.map.items()
            )
        table = None
        if source.table is not None:
            entries = []
            for index, entry in enumerate(source.table):
                pattern = self._regex(doc, (*path, "table", index, "match"), entry.match)
                value = self._typed(doc, (*path, "table", index, "value"), fact_type, entry.value)
                if pattern is not None:
                    entries.append((pattern, value))
            table = tuple(entries)
        constant = None
        if source.value is not None:
            constant = self._typed(doc, (*path, "value"), fact_type, source.value)
        if not ok:
            return None
        return Source(attributes, constant, org_chart, source.flag, capture, mapping, table)

    def _typed(self, doc: LocatedDocument, path: PathKey, fact_type: str, value: Any) -> Value:
        if fact_type == "boolean":
            if isinstance(value, bool):
                return value
            self._error(doc, path, f"expected true or false for a boolean fact, got {value!r}")
            return False
        if fact_type == "number":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            self._error(doc, path, f"expected a number for a number fact, got {value!r}")
            return 0.0
        if isinstance(value, bool):
            self._error(doc, path, f"expected text for a string fact, got {str(value).lower()}")
            return str(value)
        return str(value)

    def _regex(
        self, doc: LocatedDocument, path: PathKey, pattern: str, *, ignore_case: bool = True
    ) -> RulePattern | None:
        try:
            return compile_pattern(pattern, ignore_case=ignore_case)
        except PatternError as exc:
            self._error(doc, path, str(exc))
            return None

    # --- conditions -------------------------------------------------------------------

    def _condition(self, doc: LocatedDocument, path: PathKey, cond: Any) -> Node:
        location = doc.locate(path)
        if isinstance(cond, spec.AllOf):
            return AllOf(
                tuple(self._condition(doc, (*path, "all", i), c) for i, c in enumerate(cond.all)),
                location,
            )
        if isinstance(cond, spec.AnyOf):
            return AnyOf(
                tuple(self._condition(doc, (*path, "any", i), c) for i, c in enumerate(cond.any)),
                location,
            )
        if isinstance(cond, spec.NotOf):
            return NotOf(self._condition(doc, (*path, "not"), cond.not_), location)
        assert isinstance(cond, spec.FactTest)
        return self._test(doc, path, cond)

    def _test(self, doc: LocatedDocument, path: PathKey, cond: spec.FactTest) -> Test:
        op = cond.operator
        operand: Any = cond.operand
        location = doc.locate(path)
        fact = self.facts.get(cond.fact)
        self.fact_usage.setdefault(cond.fact, []).append(location)
        op_path = (*path, op)
        if fact is None:
            if self.partial_facts:
                return Test(cond.fact, op, operand, cond.case_sensitive, location)
            known = sorted(self.facts)
            hint = difflib.get_close_matches(cond.fact, known, n=1, cutoff=0.6)
            text = f"unknown fact '{cond.fact}'"
            text += (
                f" (did you mean '{hint[0]}'?)"
                if hint
                else f" (known facts: {', '.join(known) or 'none'})"
            )
            self._error(doc, (*path, "fact"), text)
            return Test(cond.fact, op, operand, cond.case_sensitive, location)
        kind = fact.type
        if op in STRING_OPERATORS and kind != "string":
            self._error(doc, op_path, f"'{op}' tests text, but fact '{fact.name}' is a {kind}")
        elif op in NUMBER_OPERATORS and kind != "number":
            self._error(
                doc, op_path, f"'{op}' compares numbers, but fact '{fact.name}' is a {kind}"
            )
        elif op == "is" and kind != "boolean":
            self._error(doc, op_path, f"'is' tests true/false, but fact '{fact.name}' is a {kind}")
        pattern = None
        fold = kind == "string" and not cond.case_sensitive
        if op == "matches":
            pattern = self._regex(doc, op_path, operand, ignore_case=not cond.case_sensitive)
        elif op in ("equals",):
            operand = self._operand(doc, op_path, fact.type, operand, fold)
        elif op in ("in", "not_in"):
            operand = frozenset(
                self._operand(doc, (*op_path, i), fact.type, v, fold) for i, v in enumerate(operand)
            )
        elif op in ("starts_with", "ends_with", "contains"):
            operand = operand if cond.case_sensitive else operand.casefold()
        elif op == "between":
            low, high = operand
            if low > high:
                self._error(
                    doc,
                    op_path,
                    f"between needs [low, high] with low <= high, got [{low:g}, {high:g}]",
                )
        elif op in ("exists", "missing") and operand is not True and operand is not False:
            self._error(doc, op_path, f"'{op}' takes true or false")
        return Test(cond.fact, op, operand, cond.case_sensitive, location, pattern, cond.operand)

    def _operand(
        self, doc: LocatedDocument, path: PathKey, fact_type: str, value: Any, fold: bool
    ) -> Any:
        if fact_type == "string" and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        typed = self._typed(doc, path, fact_type, value)
        return typed.casefold() if fold and isinstance(typed, str) else typed

    # --- personas, scope, scenarios ---------------------------------------------------

    def _persona(self, doc: LocatedDocument, path: PathKey, p: spec.PersonaSpec) -> Persona:
        rules = tuple(
            Rule(
                id=r.id,
                persona=p.id,
                description=r.description,
                condition=self._condition(doc, (*path, "rules", i, "when"), r.when),
                location=doc.locate((*path, "rules", i)),
            )
            for i, r in enumerate(p.rules)
        )
        unless = tuple(
            self._condition(doc, (*path, "unless", i), c) for i, c in enumerate(p.unless)
        )
        return Persona(
            id=p.id,
            name=p.name,
            description=p.description,
            precedence=p.precedence,
            default=p.default,
            service=p.service,
            rules=rules,
            unless=unless,
            location=doc.locate(path),
        )

    def _scope(self) -> Scope:
        found: list[tuple[_Parsed, spec.ScopeSpec]] = [
            (item, item.spec.scope) for item in self.parsed if item.spec.scope is not None
        ]
        if not found:
            return Scope(None, (), "default")
        first_item, scope_spec = found[0]
        for item, _ in found[1:]:
            self._error(
                item.doc,
                ("scope",),
                f"scope is defined twice (first at {first_item.doc.locate(('scope',), key=True)}): "
                "keep one",
                key=True,
            )
        doc = first_item.doc
        include = None
        if scope_spec.include is not None:
            include = self._condition(doc, ("scope", "include"), scope_spec.include)
        exclude = tuple(
            self._condition(doc, ("scope", "exclude", i), c)
            for i, c in enumerate(scope_spec.exclude)
        )
        return Scope(include, exclude, scope_spec.unmatched)

    def _check_personas(self, personas: dict[str, Persona], scope: Scope) -> None:
        if not personas and self.parsed and not self.partial_personas:
            item = self.parsed[0]
            self.errors.append(
                RuleError(
                    Location(item.doc.path, 1, 1),
                    f"no personas defined in {', '.join(i.doc.path for i in self.parsed)}",
                )
            )
            return
        defaults = [p for p in personas.values() if p.default]
        for extra in defaults[1:]:
            self.errors.append(
                RuleError(
                    extra.location,
                    f"more than one default persona: '{extra.id}' and '{defaults[0].id}' "
                    f"({defaults[0].location}); keep one default: true",
                )
            )
        by_precedence: dict[int, Persona] = {}
        for persona in personas.values():
            other = by_precedence.get(persona.precedence)
            if other is not None:
                self.errors.append(
                    RuleError(
                        persona.location,
                        f"persona '{persona.id}' has precedence {persona.precedence}, like "
                        f"'{other.id}' ({other.location}): an employee matching both would be "
                        "a coin toss; give them different precedences",
                    )
                )
            else:
                by_precedence[persona.precedence] = persona

    def _scenarios(self, personas: dict[str, Persona], scope: Scope) -> tuple[Scenario, ...]:
        by_precedence = tuple(p.id for p in sorted(personas.values(), key=lambda p: -p.precedence))
        default = next((p.id for p in personas.values() if p.default), None)
        scenarios: list[Scenario] = []
        seen: dict[str, Location] = {}
        for item in self.parsed:
            for index, s in enumerate(item.spec.scenarios):
                if s is None:
                    continue
                path: PathKey = ("scenarios", index)
                if s.id in seen:
                    self._error(
                        item.doc,
                        (*path, "id"),
                        f"duplicate scenario id '{s.id}' (first defined at {seen[s.id]})",
                    )
                    continue
                seen[s.id] = item.doc.locate(path)
                order = by_precedence
                if s.order is not None:
                    order = tuple(s.order)
                    listed: set[str] = set()
                    for i, pid in enumerate(s.order):
                        if pid not in personas:
                            self._unknown_persona(item.doc, (*path, "order", i), pid, personas)
                        elif pid in listed:
                            self._error(
                                item.doc,
                                (*path, "order", i),
                                f"persona '{pid}' is listed twice in this order",
                            )
                        listed.add(pid)
                scenario_default = s.default or default
                if s.default is not None and s.default not in personas:
                    self._unknown_persona(item.doc, (*path, "default"), s.default, personas)
                unmatched = s.unmatched or scope.unmatched
                if (
                    unmatched == "default"
                    and scenario_default is None
                    and personas
                    and not self.partial_personas
                ):
                    self._error(
                        item.doc,
                        path,
                        f"scenario '{s.id}' gives unmatched employees the default persona, but "
                        "none is set: give it a default, or set unmatched to leave or clear",
                    )
                scenarios.append(Scenario(s.id, s.description, order, scenario_default, unmatched))
        if not scenarios:
            if (
                scope.unmatched == "default"
                and default is None
                and personas
                and not (self.partial_personas or self.partial_scope)
            ):
                first = next(iter(personas.values()))
                self.errors.append(
                    RuleError(
                        first.location,
                        "no persona has default: true, but unmatched employees get the default "
                        "persona: mark one persona default: true, or set scope.unmatched to "
                        "leave or clear",
                    )
                )
            scenarios.append(
                Scenario(DEFAULT_SCENARIO, "", by_precedence, default, scope.unmatched)
            )
        return tuple(scenarios)

    def _unknown_persona(
        self, doc: LocatedDocument, path: PathKey, pid: str, personas: dict[str, Persona]
    ) -> None:
        if self.partial_personas:
            return
        hint = difflib.get_close_matches(pid, sorted(personas), n=1, cutoff=0.6)
        text = f"unknown persona '{pid}'"
        text += (
            f" (did you mean '{hint[0]}'?)" if hint else f" (known: {', '.join(sorted(personas))})"
        )
        self._error(doc, path, text)
