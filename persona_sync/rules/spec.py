"""What a rule file may say: the pydantic models behind validation and the JSON Schema.

These models describe input only. The engine never touches them per employee: they are
compiled once into plain frozen objects (see :mod:`persona_sync.rules.compiler`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    model_validator,
)

Scalar = str | int | float | bool
IDENTIFIER = r"^[a-z0-9][a-z0-9_-]*$"
FACT_NAME = r"^@?[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"

Identifier = Annotated[
    str,
    Field(
        pattern=IDENTIFIER,
        description="Lower-case letters, digits, '-' and '_'; starts with a letter or digit.",
    ),
]


class StrictModel(BaseModel):
    """Base for every spec: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- conditions -----------------------------------------------------------------------

OPERATORS = (
    "equals",
    "in",
    "not_in",
    "matches",
    "starts_with",
    "ends_with",
    "contains",
    "gt",
    "gte",
    "lt",
    "lte",
    "between",
    "exists",
    "missing",
    "is",
)


class FactTest(StrictModel):
    """One test of one fact, e.g. ``{fact: role.department, in: [Sales, Marketing]}``."""

    fact: str = Field(pattern=FACT_NAME, description="The fact to test, e.g. role.title.")
    equals: Scalar | None = Field(None, description="Equal to this value.")
    in_: list[Scalar] | None = Field(None, alias="in", description="Equal to one of these.")
    not_in: list[Scalar] | None = Field(
        None, description="Equal to none of these (also true when the fact is missing)."
    )
    matches: str | None = Field(
        None,
        description=(
            "Regular expression (Python syntax) found ANYWHERE in the value, like grep: "
            "'president' matches 'Vice President, Sales'. Anchor with ^ and $ to match "
            "the whole value. Searched in linear time, so backreferences and lookaround "
            "are refused."
        ),
    )
    starts_with: str | None = None
    ends_with: str | None = None
    contains: str | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    between: tuple[float, float] | None = Field(None, description="[low, high], both included.")
    exists: bool | None = Field(None, description="true: the fact has a value.")
    missing: bool | None = Field(None, description="true: the fact has no value.")
    is_: bool | None = Field(None, alias="is", description="For yes/no facts: true or false.")
    case_sensitive: bool = Field(
        False, description="Compare text case-sensitively (default: case-insensitive)."
    )

    @model_validator(mode="after")
    def _one_operator(self) -> FactTest:
        used = self.operators_used()
        if len(used) != 1:
            found = ", ".join(used) if used else "none"
            raise ValueError(
                f"a test of fact '{self.fact}' needs exactly one operator "
                f"({', '.join(OPERATORS)}); found: {found}"
            )
        return self

    def operators_used(self) -> list[str]:
        return [op for op in OPERATORS if _field_for(op) in self.model_fields_set]

    @property
    def operator(self) -> str:
        return self.operators_used()[0]

    @property
    def operand(self) -> Any:
        return getattr(self, _field_for(self.operator))


def _field_for(operator: str) -> str:
    return {"in": "in_", "is": "is_"}.get(operator, operator)


class AllOf(StrictModel):
    all: list[Condition] = Field(min_length=1, description="Every condition holds.")


class AnyOf(StrictModel):
    any: list[Condition] = Field(min_length=1, description="At least one condition holds.")


class NotOf(StrictModel):
    not_: Condition = Field(alias="not", description="The condition does not hold.")


def _condition_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for kind in ("fact", "all", "any", "not"):
            if kind in value:
                return kind
        return None
    if isinstance(value, BaseModel):
        return {FactTest: "fact", AllOf: "all", AnyOf: "any", NotOf: "not"}.get(type(value))
    return None


Condition = Annotated[
    Annotated[FactTest, Tag("fact")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NotOf, Tag("not")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message="a condition is a mapping with one of the keys: fact, all, any, not",
    ),
]

AllOf.model_rebuild()
AnyOf.model_rebuild()
NotOf.model_rebuild()


# --- personas ---------------------------------------------------------------------------


class WorkProfile(StrictModel):
    """How demanding the work is in five dimensions, each scored 1 (low) to 4 (high)."""

    technology: int = Field(ge=1, le=4)
    network: int = Field(ge=1, le=4)
    interaction: int = Field(ge=1, le=4)
    communication: int = Field(ge=1, le=4)
    mobility: int = Field(ge=1, le=4)


class ServiceHints(StrictModel):
    """What downstream tools key on: help-desk routing and device management."""

    queue: str | None = Field(None, description="Support queue that takes this persona's tickets.")
    tier: int | None = Field(None, ge=0, le=3, description="Support tier tickets start at (0-3).")
    priority: Literal["P1", "P2", "P3", "P4"] | None = Field(
        None, description="Default ticket priority."
    )
    refresh_months: int | None = Field(
        None, ge=1, le=120, description="Device refresh cycle in months."
    )
    work_profile: WorkProfile | None = None


class RuleSpec(StrictModel):
    """One reason an employee gets a persona."""

    id: Identifier
    description: str = ""
    when: Condition


class PersonaSpec(StrictModel):
    """A persona: who gets it (rules), who never does (unless), and its service hints."""

    id: Identifier
    name: str = Field(min_length=1, description="Display name.")
    description: str = ""
    precedence: int = Field(
        description="Higher wins when an employee matches several personas; must be unique."
    )
    default: bool = Field(
        False, description="Given to in-scope employees who match no persona (at most one)."
    )
    service: ServiceHints = ServiceHints()
    rules: list[RuleSpec] = Field(default_factory=list)
    unless: list[Condition] = Field(
        default_factory=list,
        description="Exclusions: if any holds, the persona is not given, whatever the rules say.",
    )


# --- facts ------------------------------------------------------------------------------


class TableEntry(StrictModel):
    match: str = Field(description="Regular expression, searched case-insensitively.")
    value: Scalar


class OrgChart(StrictModel):
    """Seniority from the manager chain: top - per_level * depth, at least floor."""

    top: float = Field(10, description="Seniority of someone with no manager.")
    per_level: float = Field(1, gt=0, description="Subtracted per level below the top.")
    floor: float = Field(1, description="Lowest value the org chart gives.")
    manager_bonus: float = Field(0, ge=0, description="Added for people with direct reports.")
    manager_min_reports: int = Field(1, ge=1)


class SourceFields(StrictModel):
    """Where a fact's value comes from, and how the raw attribute is normalised."""

    from_: str | list[str] | None = Field(
        None,
        alias="from",
        description=(
            "Attribute name(s); the first with a value is used. Built-ins: @dn, @id, "
            "@org_depth, @direct_reports."
        ),
    )
    value: Scalar | None = Field(None, description="A constant.")
    org_chart: OrgChart | None = Field(None, description="Derive from the manager chain.")
    flag: int | None = Field(None, ge=1, description="Bit mask: true when (attribute & flag) != 0.")
    capture: str | None = Field(
        None, description="Regex; the value is its group 'value', else group 1, else the match."
    )
    map: dict[str, Scalar] | None = Field(
        None, description="Lookup table, case-insensitive keys; unmatched values yield nothing."
    )
    table: list[TableEntry] | None = Field(
        None, description="Keyword table: the first entry whose regex matches gives the value."
    )


class FactSource(SourceFields):
    @model_validator(mode="after")
    def _one_origin(self) -> FactSource:
        origins = [k for k in ("from_", "value", "org_chart") if k in self.model_fields_set]
        names = [{"from_": "from"}.get(k, k) for k in origins]
        if len(origins) != 1:
            raise ValueError(
                "a fact source needs exactly one of: from, value, org_chart; found: "
                + (", ".join(names) if names else "none")
            )
        return self

    @property
    def attributes(self) -> list[str]:
        if self.from_ is None:
            return []
        return [self.from_] if isinstance(self.from_, str) else list(self.from_)


class FactSpec(SourceFields):
    """A fact rules can test. Give one source inline, or several under ``sources``."""

    type: Literal["string", "number", "boolean"] = "string"
    description: str = ""
    sources: list[FactSource] = Field(default_factory=list)
    default: Scalar | None = Field(None, description="Value when no source gives one.")

    @model_validator(mode="before")
    @classmethod
    def _inline_source(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        inline = {k: v for k, v in data.items() if k in _SOURCE_KEYS}
        if not inline:
            return data
        if "sources" in data:
            raise ValueError(
                "give either 'sources' or one inline source (from/value/...), not both"
            )
        rest = {k: v for k, v in data.items() if k not in _SOURCE_KEYS}
        return {**rest, "sources": [inline]}

    @model_validator(mode="after")
    def _has_source(self) -> FactSpec:
        if not self.sources and self.default is None:
            raise ValueError(
                "a fact needs a source (from, value, org_chart or sources) or a default"
            )
        return self


_SOURCE_KEYS = {"from", "value", "org_chart", "flag", "capture", "map", "table"}


# --- scope and scenarios ----------------------------------------------------------------

Unmatched = Literal["default", "leave", "clear"]


class ScopeSpec(StrictModel):
    """Which directory entries are employees, and what happens to those who match nothing."""

    include: Condition | None = Field(None, description="Only entries where this holds.")
    exclude: list[Condition] = Field(
        default_factory=list, description="Entries where any of these holds are out of scope."
    )
    unmatched: Unmatched = Field(
        "default",
        description=(
            "For in-scope employees matching no persona: 'default' gives the default "
            "persona, 'leave' keeps what the directory has, 'clear' empties the attribute."
        ),
    )


class ScenarioSpec(StrictModel):
    """An output of its own, with its own precedence order (e.g. routing vs device refresh)."""

    id: Identifier
    description: str = ""
    order: list[Identifier] | None = Field(
        None,
        description=(
            "Personas this scenario can give, highest precedence first. "
            "Omitted: every persona, by its precedence number."
        ),
    )
    default: Identifier | None = Field(
        None, description="Persona for unmatched employees in this scenario."
    )
    unmatched: Unmatched | None = Field(None, description="Overrides scope.unmatched.")


class RuleFile(StrictModel):
    """One rule file. A rule set is every ``*.yaml`` file in the rules folder."""

    schema_: str | None = Field(None, alias="$schema", description="Path or URL of this schema.")
    version: Literal[1] = 1
    personas: list[PersonaSpec] = Field(default_factory=list)
    facts: dict[str, FactSpec] = Field(default_factory=dict)
    scope: ScopeSpec | None = None
    scenarios: list[ScenarioSpec] = Field(default_factory=list)
