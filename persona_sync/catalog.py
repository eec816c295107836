"""The persona catalog for downstream tools: service hints as JSON or CSV, Entra ID groups.

ITSM and device-management tools import the catalog to route tickets (queue, tier,
priority) and plan device refresh (refresh cycle, work profile) by persona. For Entra ID,
:func:`entra_groups` gives one dynamic group per persona whose membership rule selects
the users holding that persona in the attribute persona-sync writes, so admins create
the groups once and Entra keeps them in step with every sync.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from persona_sync.errors import ConfigError
from persona_sync.rules.model import Persona, RuleSet

CATALOG_FORMAT = "persona-sync-catalog"
CATALOG_VERSION = 1
WORK_DIMENSIONS = ("technology", "network", "interaction", "communication", "mobility")
CSV_COLUMNS = (
    "id",
    "name",
    "description",
    "precedence",
    "default",
    "queue",
    "tier",
    "priority",
    "refresh_months",
    *WORK_DIMENSIONS,
    "scenarios",
    "rules",
)

_EXTENSION_ATTRIBUTE = re.compile(
    r"^(?:onPremisesExtensionAttributes\.)?extensionAttribute(1[0-5]|[1-9])$", re.IGNORECASE
)
_DIRECTORY_EXTENSION = re.compile(r"^extension_([0-9a-f]{32})_([A-Za-z0-9_]+)$", re.IGNORECASE)
_NICKNAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One persona as downstream tools see it: what is written, and how to serve it."""

    id: str
    name: str
    description: str
    precedence: int
    default: bool
    queue: str | None
    tier: int | None
    priority: str | None
    refresh_months: int | None
    work_profile: Mapping[str, int] | None
    scenarios: tuple[str, ...]
    rules: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "precedence": self.precedence,
            "default": self.default,
            "service": {
                "queue": self.queue,
                "tier": self.tier,
                "priority": self.priority,
                "refresh_months": self.refresh_months,
                "work_profile": dict(self.work_profile) if self.work_profile else None,
            },
            "scenarios": list(self.scenarios),
            "rules": list(self.rules),
        }


def _entry(persona: Persona, rule_set: RuleSet) -> CatalogEntry:
    hints = persona.service
    profile = None
    if hints.work_profile is not None:
        profile = {d: int(getattr(hints.work_profile, d)) for d in WORK_DIMENSIONS}
    scenarios = tuple(s.id for s in rule_set.scenarios if persona.id in s.order)
    return CatalogEntry(
        persona.id,
        persona.name,
        persona.description,
        persona.precedence,
        persona.default,
        hints.queue,
        hints.tier,
        hints.priority,
        hints.refresh_months,
        profile,
        scenarios,
        tuple(r.id for r in persona.rules),
    )


def catalog_entries(rule_set: RuleSet) -> list[CatalogEntry]:
    """Every persona, highest precedence first (the order the engine tries them)."""
    personas = sorted(rule_set.personas.values(), key=lambda p: (-p.precedence, p.id))
    return [_entry(p, rule_set) for p in personas]


def render_catalog_json(rule_set: RuleSet) -> str:
    document = {
        "format": CATALOG_FORMAT,
        "version": CATALOG_VERSION,
        "rules_checksum": rule_set.checksum,
        "personas": [e.to_dict() for e in catalog_entries(rule_set)],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_catalog_csv(rule_set: RuleSet) -> str:
    """One row per persona, flat columns (work profile spread out) for spreadsheet imports."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for e in catalog_entries(rule_set):
        profile = e.work_profile or {}
        writer.writerow(
            [
                _cell(v)
                for v in (
                    e.id,
                    e.name,
                    e.description,
                    e.precedence,
                    e.default,
                    e.queue,
                    e.tier,
                    e.priority,
                    e.refresh_months,
                    *[profile.get(d) for d in WORK_DIMENSIONS],
                    " ".join(e.scenarios),
                    " ".join(e.rules),
                )
            ]
        )
    return out.getvalue()


def entra_property(attribute: str) -> str:
    """The ``user.<property>`` a dynamic membership rule uses for the written attribute.

    ``extensionAttribute1``-``15`` (AD, or Entra's ``onPremisesExtensionAttributes``) and
    directory extensions ``extension_<appId without dashes>_<name>`` are the attributes
    dynamic groups can select on that are free for persona-sync to write.
    """
    name = attribute.strip()
    found = _EXTENSION_ATTRIBUTE.match(name)
    if found:
        return f"extensionAttribute{found.group(1)}"
    found = _DIRECTORY_EXTENSION.match(name)
    if found:
        return f"extension_{found.group(1).lower()}_{found.group(2)}"
    raise ConfigError(
        f"attribute {attribute!r} cannot be used in an Entra ID dynamic membership rule: write "
        "the persona to extensionAttribute1-15 (onPremisesExtensionAttributes."
        "extensionAttributeN) or to a directory extension, and pass --attribute "
        "extensionAttributeN or --attribute extension_<appId without dashes>_<name>"
    )


def membership_rule(attribute: str, value: str) -> str:
    """``user.extensionAttribute10 -eq "vip"``; quotes in the value escaped with a backtick."""
    quoted = value.replace("`", "``").replace('"', '`"')
    return f'user.{entra_property(attribute)} -eq "{quoted}"'


def _nickname(*parts: str) -> str:
    text = "-".join(_NICKNAME_UNSAFE.sub("-", p).strip("-.") for p in parts if p)
    return text[:64].rstrip("-.")


def entra_groups(
    rule_set: RuleSet, targets: Mapping[str, str], prefix: str = "Persona"
) -> list[dict[str, str]]:
    """One dynamic group per persona and scenario: ``targets`` maps scenario -> attribute.

    With one scenario the groups are named after the persona ("Persona - VIP"); with
    several, after scenario and persona, since the same persona may be written to
    different attributes.
    """
    groups: list[dict[str, str]] = []
    by_id = {e.id: e for e in catalog_entries(rule_set)}
    several = len(targets) > 1
    for scenario in rule_set.scenarios:
        if scenario.id not in targets:
            continue
        attribute = targets[scenario.id]
        wanted = set(scenario.order) | ({scenario.default} if scenario.default else set())
        for entry in (e for e in by_id.values() if e.id in wanted):
            label = f"{entry.name} ({scenario.id})" if several else entry.name
            groups.append(
                {
                    "persona": entry.id,
                    "scenario": scenario.id,
                    "displayName": f"{prefix} - {label}",
                    "description": (entry.description or f"Employees with persona {entry.id}")[
                        :1024
                    ],
                    "mailNickname": _nickname(
                        prefix.lower(), scenario.id if several else "", entry.id
                    ),
                    "membershipRule": membership_rule(attribute, entry.id),
                }
            )
    return groups


def render_entra_groups(groups: Sequence[Mapping[str, str]]) -> str:
    return json.dumps(list(groups), indent=2, ensure_ascii=False) + "\n"
