"""The demo company's tables: ``company.yaml`` (shipped next to this module) as frozen values.

The tables are data, not code: countries, name pools, sites, the leadership tree, the units
with their roles, and the service accounts. :func:`company_tables` reads them once per
process, with the persona ids of the default catalog (the rules the demo ships), so the
generator never carries a copy of either.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from persona_sync.rules.loader import load_rules

TABLES = "company.yaml"


@dataclass(frozen=True, slots=True)
class NamePool:
    given: tuple[str, ...]
    surnames: tuple[str, ...]
    surname_first: bool = False  # CJK: "李娜", no space


@dataclass(frozen=True, slots=True)
class Site:
    """A workplace: office name (None: the attribute is missing), OU, city and country,
    and which name pools its people come from (pool, weight)."""

    office: str | None
    ou: str
    city: str
    country: str
    names: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Leader:
    """A fixed position at the top of the tree: CEO, C-level, vice presidents, directors."""

    key: str
    title: str
    department: str
    site: str
    reports_to: str | None
    grade: int
    employee_type: str = "employee"


@dataclass(frozen=True, slots=True)
class Unit:
    """A department at one site: an optional manager, optional team leads, members.

    ``roles`` are member titles with weights; ``share`` is the unit's relative headcount;
    ``persona`` is what most members should get (the source of stale target values).
    """

    parent: str
    site: str
    department: str
    manager: str | None
    roles: tuple[tuple[str, int], ...]
    share: int
    persona: str
    lead: str | None = None
    customer_facing: bool = False
    flags_customer_facing: bool = False  # every member carries customerFacing
    intern_title: str | None = None
    contractors: float = 0.0
    manager_site: str | None = None
    ic_grade: int = 4
    span: int = 10


@dataclass(frozen=True, slots=True)
class Company:
    """The tables of ``company.yaml`` (its comments say what each holds), and the persona
    ids of the default catalog, for values an earlier run left in the target attribute."""

    countries: Mapping[str, tuple[str, str]]  # ISO code -> (co, company)
    name_pools: Mapping[str, NamePool]
    romanized: Mapping[str, str]
    ascii_letters: Mapping[int, str]  # a str.translate table
    sites: Mapping[str, Site]
    remote_locations: tuple[tuple[Site, int], ...]
    leaders: tuple[Leader, ...]
    units: tuple[Unit, ...]
    grade_keywords: tuple[tuple[tuple[str, ...], int], ...]
    service_accounts: tuple[tuple[str, str], ...]
    foreign_tags: tuple[str, ...]
    vendors: tuple[str, ...]
    nicknames: Mapping[str, str]
    persona_ids: tuple[str, ...]


@functools.cache
def company_tables() -> Company:
    """The tables, read and converted once per process: every generation reuses them."""
    text = resources.files(__package__).joinpath(TABLES).read_text(encoding="utf-8")
    rules = Path(str(resources.files("persona_sync").joinpath("default_rules")))
    return company_from(yaml.safe_load(text), tuple(load_rules([rules]).personas))


def company_from(data: dict[str, Any], persona_ids: tuple[str, ...]) -> Company:
    """The YAML document as tables; a missing key raises KeyError, an unknown unit key
    TypeError (the file ships with the package, so either is a bug, not user input)."""

    def site(entry: dict[str, Any]) -> Site:
        names = tuple((str(pool), int(weight)) for pool, weight in entry["names"].items())
        city = entry["city"]
        return Site(entry["office"], entry.get("ou", city), city, entry["country"], names)

    def unit(entry: dict[str, Any]) -> Unit:
        roles = tuple((str(title), int(weight)) for title, weight in entry["roles"].items())
        return Unit(**{**entry, "roles": roles})

    pools = {
        key: NamePool(
            tuple(pool["given"].split()),
            tuple(pool["surnames"].split()),
            pool.get("surname_first", False),
        )
        for key, pool in data["name_pools"].items()
    }
    keywords = data["grade_keywords"]
    return Company(
        countries={code: (co, company) for code, (co, company) in data["countries"].items()},
        name_pools=pools,
        romanized=dict(data["romanized"]),
        ascii_letters=str.maketrans(data["ascii_letters"]),
        sites={key: site(entry) for key, entry in data["sites"].items()},
        remote_locations=tuple(
            (site(entry), entry["weight"]) for entry in data["remote_locations"]
        ),
        leaders=tuple(Leader(key, *row) for key, row in data["leaders"].items()),
        units=tuple(unit(entry) for entry in data["units"]),
        grade_keywords=tuple((tuple(entry["keywords"]), entry["grade"]) for entry in keywords),
        service_accounts=tuple(data["service_accounts"].items()),
        foreign_tags=tuple(data["foreign_tags"]),
        vendors=tuple(data["vendors"]),
        nicknames=dict(data["nicknames"]),
        persona_ids=persona_ids,
    )
