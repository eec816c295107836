"""Staffing the demo company: the leaders, then every unit's managers, team leads and
members, each with a name no one in the same OU has and a unique account and mailbox.

Every choice comes from the one ``random.Random`` that ``generate_company`` seeds, in a
fixed order, so the same seed staffs the same company.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, field

from persona_sync.demo.tables import Company, NamePool, Site, Unit

REMOTE = "remote"  # a unit's site: each member draws one of the company's remote locations
INTERN_SHARE = 0.06  # of the members of units that take interns


@dataclass(eq=False, slots=True)
class Person:
    """A person while the company is generated; quirks edit it before it becomes an Entry."""

    given: str
    surname: str
    cn: str
    site: Site
    title: str | None
    department: str | None
    employee_type: str
    grade: int
    persona: str
    customer_facing: bool
    manager: Person | str | None = None  # str: a DN that may not exist
    sam: str = ""
    mail: str = ""
    display_name: str = ""
    office: str | None = None
    disabled: bool = False
    renamed: bool = False
    show_grade: bool = False
    show_customer_facing: bool = False
    persona_tag: str | None = None
    reports: int = 0


@dataclass
class Hiring:
    """Staffs the company: names handed out so far ((given, surname) per OU, account
    names, mailboxes), drawn with the one random generator."""

    rng: random.Random
    company: Company
    names: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    accounts: set[str] = field(default_factory=set)
    mailboxes: set[str] = field(default_factory=set)

    def staff(self, employees: int) -> list[Person]:
        """The leaders, then each unit; every manager link set, direct reports counted."""
        leaders: dict[str, Person] = {}
        people: list[Person] = []
        for leader in self.company.leaders:
            persona = "vip" if leader.grade >= 9 else "knowledge-worker"
            site = self.company.sites[leader.site]
            person = self.hire(
                site,
                leader.title,
                leader.department,
                leader.employee_type,
                leader.grade,
                persona,
                False,
            )
            person.manager = leaders[leader.reports_to] if leader.reports_to else None
            leaders[leader.key] = person
            people.append(person)
        units = self.company.units
        sizes = _headcounts([unit.share for unit in units], employees - len(leaders))
        for unit, size in zip(units, sizes, strict=True):
            people.extend(self.staff_unit(unit, size, leaders[unit.parent]))
        for person in people:
            if isinstance(person.manager, Person):
                person.manager.reports += 1
        return people

    def staff_unit(self, unit: Unit, size: int, parent: Person) -> list[Person]:
        """The unit's manager, then each team lead followed by the team."""
        members: list[Person] = []
        top = parent
        if unit.manager is not None:
            site = self.company.sites[unit.manager_site or unit.site]
            top = self.hire_in(
                unit, site, unit.manager, "employee", self.grade(unit.manager, 6), parent
            )
            members.append(top)
            size -= 1
        leads = size // (unit.span + 1) if unit.lead is not None else 0
        team_sizes = [(size - leads) // leads + (i < (size - leads) % leads) for i in range(leads)]
        for team_size in team_sizes or [size]:
            boss = top
            if unit.lead is not None and team_sizes:
                site = self.site(unit)
                boss = self.hire_in(
                    unit, site, unit.lead, "employee", self.grade(unit.lead, 5), top
                )
                members.append(boss)
            members.extend(self.member(unit, boss) for _ in range(team_size))
        for person in members:
            person.show_customer_facing = unit.flags_customer_facing
        return members

    def member(self, unit: Unit, boss: Person) -> Person:
        titles = [title for title, _ in unit.roles]
        title = self.rng.choices(titles, [weight for _, weight in unit.roles])[0]
        employee_type = "employee"
        if unit.intern_title is not None and self.rng.random() < INTERN_SHARE:
            employee_type = "intern"
            if self.rng.random() < 0.6 or self.grade(title, 0):  # no "Senior ..." interns
                title = unit.intern_title
        elif self.rng.random() < unit.contractors:
            employee_type = "contractor"
        grade = 2 if employee_type == "intern" else self.grade(title, unit.ic_grade)
        return self.hire_in(unit, self.site(unit), title, employee_type, grade, boss)

    def site(self, unit: Unit) -> Site:
        if unit.site != REMOTE:
            return self.company.sites[unit.site]
        locations = self.company.remote_locations
        return self.rng.choices([site for site, _ in locations], [w for _, w in locations])[0]

    def grade(self, title: str, default: int) -> int:
        lowered = f" {title.lower().replace(',', ' ')} "
        for keywords, grade in self.company.grade_keywords:
            if any(keyword in lowered for keyword in keywords):
                return grade
        return default

    def hire_in(
        self, unit: Unit, site: Site, title: str, employee_type: str, grade: int, boss: Person
    ) -> Person:
        """A member of ``unit``: its department, persona and customer contact."""
        return self.hire(
            site,
            title,
            unit.department,
            employee_type,
            grade,
            unit.persona,
            unit.customer_facing,
            boss,
        )

    def hire(
        self,
        site: Site,
        title: str,
        department: str,
        employee_type: str,
        grade: int,
        persona: str,
        customer_facing: bool,
        manager: Person | None = None,
    ) -> Person:
        given, surname, pool = self.draw(site)
        cn = f"{surname}{given}" if pool.surname_first else f"{given} {surname}"
        first = self.ascii(given.split()[0]).lower()
        last = self.ascii(surname).lower()
        person = Person(
            given,
            surname,
            cn,
            site,
            title,
            department,
            employee_type,
            grade,
            persona,
            customer_facing,
            manager,
            display_name=cn,
            office=site.office,
        )
        person.sam = _unique(first[:1] + last, self.accounts, 20)
        person.mail = _unique(f"{first}.{last}", self.mailboxes, 64)
        return person

    def draw(self, site: Site) -> tuple[str, str, NamePool]:
        """A given name and surname no one in the site's OU has yet."""
        taken = self.names.setdefault(site.ou.casefold(), set())
        pools = [name for name, _ in site.names]
        weights = [weight for _, weight in site.names]
        for attempt in range(60):
            pool = self.company.name_pools[self.rng.choices(pools, weights)[0]]
            given, surname = self.rng.choice(pool.given), self.rng.choice(pool.surnames)
            if attempt >= 30 and not pool.surname_first:  # crowded OU: add a middle initial
                given = f"{given} {self.rng.choice('ABCDEFGHJKLMNPRSTW')}."
            key = (given.casefold(), surname.casefold())
            if key not in taken:
                taken.add(key)
                return given, surname, pool
        # A very large company (benchmarks) runs out of combinations: number the surname.
        number = 2
        while (given.casefold(), f"{surname} {number}".casefold()) in taken:
            number += 1
        taken.add((given.casefold(), f"{surname} {number}".casefold()))
        return given, f"{surname} {number}", pool

    def ascii(self, text: str) -> str:
        """Letters and digits of ``text`` in ASCII, for account names and mail addresses."""
        romanized = self.company.romanized
        text = "".join(romanized.get(char, char) for char in text)
        decomposed = unicodedata.normalize("NFKD", text.translate(self.company.ascii_letters))
        return "".join(char for char in decomposed if char.isascii() and char.isalnum())


def _headcounts(shares: list[int], total: int) -> list[int]:
    """Split ``total`` over the units by share: two each first, the rest by largest
    remainder, so the sum is exact."""
    rest = total - 2 * len(shares)
    exact = [rest * share / sum(shares) for share in shares]
    sizes = [int(x) for x in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (sizes[i] - exact[i], i))
    for i in by_remainder[: rest - sum(sizes)]:
        sizes[i] += 1
    return [size + 2 for size in sizes]


def _unique(base: str, taken: set[str], limit: int) -> str:
    """``base`` cut to ``limit`` characters, numbered from 2 if taken; then taken."""
    name, number = base[:limit], 1
    while name in taken:
        number += 1
        name = f"{base[: limit - len(str(number))]}{number}"
    taken.add(name)
    return name
