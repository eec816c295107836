"""A seeded company of a few thousand employees, loadable into slapd and the Graph fake.

A third hold a catalog persona already, most of them not the one the default rules decide
(replaced with compare-and-swap); the others hold none (on slapd that write also adds the
personaHolder class). Every 50th is a service account,
out of scope and never written. A manager tree ten wide gives the org-chart facts depth,
and every 97th entry is named by a ``cn`` with a comma in it, so journal entries and
read-backs go through DN escapes (slapd returns ``\\2C`` where the entry was added as ``\\,``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ldap3.utils.dn import escape_rdn

from tests.fakegraph import FakeEntra

# Catalog personas held before the first run (a value outside the catalog would be a
# foreign value, which persona-sync leaves alone).
EARLIER = ("engineer", "knowledge-worker", "frontline", "vip")
TITLES = (
    "Registered Nurse",
    "Software Engineer",
    "Cashier",
    "CNC Machine Operator",
    "Sales Representative",
    "Help Desk Technician",
    "Accountant",
    "Marketing Specialist",
    "Data Analyst",
    "Trauma Surgeon",
    "Warehouse Associate",
    "Team Lead, Logistics",
    "Director of Finance",
)
OFFICES = ("Munich HQ", "North Clinic", "Store 12", "Leipzig Plant", "Remote", "Berlin Office")


@dataclass(frozen=True)
class Person:
    number: int
    name: str  # uid on slapd, the local part of the UPN on Graph
    cn: str
    title: str
    office: str
    manager: int | None  # number of the manager
    service: bool
    persona: str | None  # the value held before any run


def company(size: int, seed: int) -> list[Person]:
    """`size` employees; the same seed gives the same company."""
    rng = random.Random(seed)
    people = []
    for number in range(size):
        name = f"e{number:05d}"
        cn = f"Smith, Jr. {number}" if number % 97 == 96 else f"Employee {number}"
        people.append(
            Person(
                number=number,
                name=name,
                cn=cn,
                title="Chief Executive Officer" if number == 0 else rng.choice(TITLES),
                office=rng.choice(OFFICES),
                manager=None if number == 0 else (number - 1) // 10,
                service=number % 50 == 49,
                persona=EARLIER[number // 3 % 4] if number % 3 == 0 else None,
            )
        )
    return people


def ldap_dn(person: Person, people_dn: str) -> str:
    if person.number % 97 == 96:
        return f"cn={escape_rdn(person.cn)},{people_dn}"
    return f"uid={person.name},{people_dn}"


def ldif(people: list[Person], people_dn: str) -> str:
    """inetOrgPerson entries for slapadd."""
    blocks = []
    for person in people:
        lines = [
            f"dn: {ldap_dn(person, people_dn)}",
            "objectClass: inetOrgPerson",
            *(["objectClass: personaHolder"] if person.persona is not None else []),
            f"uid: {person.name}",
            f"cn: {person.cn}",
            f"sn: {person.name}",
            f"title: {person.title}",
            f"physicalDeliveryOfficeName: {person.office}",
        ]
        if person.manager is not None:
            lines.append(f"manager: {ldap_dn(people[person.manager], people_dn)}")
        if person.service:
            lines.append("employeeType: service")
        if person.persona is not None:
            lines.append(f"personaName: {person.persona}")
        blocks.append("\n".join(lines) + "\n\n")
    return "".join(blocks)


def load_graph(fake: FakeEntra, people: list[Person], attribute: str) -> dict[int, str]:
    """Create the users in the fake (managers first); returns number -> user id.

    `attribute` is the dotted target, e.g. onPremisesExtensionAttributes.extensionAttribute10.
    """
    ids: dict[int, str] = {}
    for person in people:
        props: dict[str, object] = {
            "userPrincipalName": f"{person.name}@contoso.example",
            "displayName": person.cn,
            "jobTitle": person.title,
            "officeLocation": person.office,
        }
        if person.service:
            props["employeeType"] = "service"
        if person.manager is not None:
            props["manager"] = ids[person.manager]
        ids[person.number] = fake.add_user(**props)
        if person.persona is not None:
            fake.set_property(ids[person.number], attribute, person.persona)
    return ids
