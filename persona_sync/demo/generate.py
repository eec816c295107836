"""Generate the demo company: an Active Directory export of a fictional group, as LDIF.

Contoso (``DC=contoso,DC=example``) has a Munich headquarters, offices, two plants,
occupational-health clinics, stores and remote staff in nine countries, with a real manager
tree from the CEO down to the shop floor. Its people exercise every persona of the default
catalog, and the file carries what real exports carry: non-ASCII names (base64 in LDIF),
``CN=Smith\\, John``-style DNs, disabled and service accounts, entries without a title,
department or office, stale persona values, one manager cycle and one dangling manager.

The company's tables (sites, leaders, units, names) are data: ``company.yaml``, read by
:mod:`persona_sync.demo.tables`. The same ``employees`` and ``seed`` give the same bytes:
one ``random.Random`` drives every choice and nothing depends on set or hash order.
``company.ldif`` next to this module is the default output; rebuild it with
``scripts/generate_demo_company.py``. Only user objects are exported (as ``ldifde -r
"(objectClass=user)"`` would), because a file directory reads every record as an employee.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from persona_sync.demo.staffing import Hiring, Person
from persona_sync.demo.tables import Company, company_tables
from persona_sync.directory.ldif_write import format_record

BASE_DN = "DC=contoso,DC=example"
PEOPLE_DN = f"OU=People,{BASE_DN}"
SERVICE_ACCOUNTS_DN = f"OU=Service Accounts,{BASE_DN}"
MAIL_DOMAIN = "contoso.example"
TARGET_ATTRIBUTE = "msDS-cloudExtensionAttribute1"
DEFAULT_OUTPUT = Path(__file__).with_name("company.ldif")
MIN_EMPLOYEES = 300
USER_CLASSES = ("top", "person", "organizationalPerson", "user")
ENABLED, DISABLED, SERVICE_FLAGS = "512", "514", "66048"  # 66048: password never expires

# Shares of people with each data quirk; counts are rounded from these.
DISABLED_SHARE = 0.02
MISSING_SHARE = 0.03  # title, department or office missing (remote staff without one count)
COMMA_CN_SHARE = 0.02  # "Smith, John" style CNs
SENIORITY_SHARE = 0.10
CUSTOMER_FLAG_SHARE = 0.05
TAGGED_SHARE = 0.15  # enabled people who already carry a persona
STALE_TAG_SHARE = 0.3  # of those, how many carry some other persona

DEPARTMENT_PLACEHOLDER = "<unassigned>"  # what HR exports for a vacant cost centre
# A manager deleted from the directory (no generated name uses "Lindner").
DANGLING_MANAGER = f"CN=Gerhard Lindner,OU=Munich,{PEOPLE_DN}"
# Special characters of RFC 4514 that are escaped anywhere in an attribute value.
DN_SPECIALS = '\\"+,;<>'


@dataclass(frozen=True, slots=True)
class Entry:
    """One directory entry: its DN and its (name, value) pairs in output order."""

    dn: str
    attributes: tuple[tuple[str, str], ...]

    def value(self, name: str) -> str | None:
        """The first value of ``name`` (case-insensitive), or None."""
        key = name.lower()
        return next((v for n, v in self.attributes if n.lower() == key), None)


def generate_company(employees: int = 2400, seed: int = 7) -> list[Entry]:
    """The demo company's user entries: ``employees`` people, then the service accounts.

    Raises ValueError below MIN_EMPLOYEES, too few to staff every unit.
    """
    company, people = staff_company(employees, seed)
    return [_person_entry(company, p) for p in people] + [
        _service_entry(company, *account) for account in company.service_accounts
    ]


def staff_company(employees: int = 2400, seed: int = 7) -> tuple[Company, list[Person]]:
    """The company's tables and its people, quirks included, before they become entries
    (the HR export, :mod:`persona_sync.demo.hr`, is drawn from the same people)."""
    if employees < MIN_EMPLOYEES:
        raise ValueError(f"the demo company needs at least {MIN_EMPLOYEES} employees")
    company = company_tables()
    rng = random.Random(seed)
    people = Hiring(rng, company).staff(employees)
    _add_quirks(rng, company, people)
    return company, people


def ldif_bytes(entries: Iterable[Entry]) -> bytes:
    """The entries as LDIF content records, as ``ldapsearch -LLL`` would print them."""
    return b"".join(format_record(entry.dn, entry.attributes) for entry in entries)


def escape_dn_value(value: str) -> str:
    """An RDN value escaped per RFC 4514 (``Smith, John`` -> ``Smith\\, John``)."""
    out = []
    for index, char in enumerate(value):
        edge = (index == 0 and char in " #") or (index == len(value) - 1 and char == " ")
        if char in DN_SPECIALS or edge:
            out.append("\\" + char)
        elif char == "\0":
            out.append("\\00")
        else:
            out.append(char)
    return "".join(out)


def _dn(person: Person) -> str:
    return f"CN={escape_dn_value(person.cn)},OU={escape_dn_value(person.site.ou)},{PEOPLE_DN}"


# -- quirks of real directories --------------------------------------------------------------


def _add_quirks(rng: random.Random, company: Company, people: list[Person]) -> None:
    """Disabled accounts, missing and odd values, special CNs, HR flags, persona values
    already written, and the two deliberate org-chart problems."""
    staff = [p for p in people if p.reports == 0]  # individual contributors
    count = len(people)
    for person in rng.sample(staff, round(DISABLED_SHARE * count)):
        person.disabled = True
    _drop_attributes(rng, people)
    _rename(rng, company, people)
    _odd_values(rng, staff)
    for person in rng.sample(people, round(SENIORITY_SHARE * count)):
        person.show_grade = True
    flagged = sum(p.show_customer_facing for p in people)
    unflagged = [p for p in people if not p.show_customer_facing]
    for person in rng.sample(unflagged, max(0, round(CUSTOMER_FLAG_SHARE * count) - flagged)):
        person.show_customer_facing = True
    _tag_personas(rng, company, people)
    _break_org_chart(rng, staff)


def _drop_attributes(rng: random.Random, people: list[Person]) -> None:
    """Remove a title, department or office until MISSING_SHARE of people lack one."""
    complete = [p for p in people[1:] if p.title and p.department and p.office]
    wanted = round(MISSING_SHARE * len(people)) - (len(people) - 1 - len(complete))
    for person in rng.sample(complete, max(0, wanted)):
        missing = rng.choices(("title", "department", "office"), (2, 1, 2))[0]
        setattr(person, missing, None)


def _rename(rng: random.Random, company: Company, people: list[Person]) -> None:
    """CNs that need escaping in a DN: "Last, First", vendor names with '+', a leading
    '#' on leavers, quoted nicknames and one stray trailing space."""
    western = [p for p in people[1:] if " " in p.cn]
    for person in rng.sample(western, round(COMMA_CN_SHARE * len(people))):
        person.cn = person.display_name = f"{person.surname}, {person.given}"
        person.renamed = True
    plain = [p for p in western if not p.renamed]
    contractors = [p for p in plain if p.employee_type == "contractor"]
    vendors = rng.sample(contractors, min(len(company.vendors), len(contractors)))
    for person, vendor in zip(vendors, company.vendors, strict=False):
        person.cn = person.display_name = f"{person.cn} ({vendor})"
        person.renamed = True
    leavers = [p for p in plain if p.disabled and not p.renamed]
    for person in rng.sample(leavers, min(3, len(leavers))):
        person.cn = f"#{person.cn}"
        person.display_name = f"{person.cn} (left)"
        person.renamed = True
    nicknames = company.nicknames
    nicknamed = [p for p in plain if p.given in nicknames and not p.renamed]
    for person in rng.sample(nicknamed, min(2, len(nicknamed))):
        nickname = nicknames[person.given]
        person.cn = person.display_name = f'{person.given} "{nickname}" {person.surname}'
        person.renamed = True
    person = rng.choice([p for p in plain if not p.renamed])
    person.cn += " "  # typed with a trailing space; AD keeps it, the DN escapes it


def _odd_values(rng: random.Random, staff: list[Person]) -> None:
    """Values that only survive a round trip as base64: stray spaces, a placeholder."""
    typed = [p for p in staff if p.title and p.department]
    odd = rng.sample(typed, 7)
    for person in odd[:2]:
        person.title = f"{person.title} "
    for person in odd[2:4]:
        person.department = f" {person.department}"
    for person in odd[4:]:
        person.department = DEPARTMENT_PLACEHOLDER


def _tag_personas(rng: random.Random, company: Company, people: list[Person]) -> None:
    """Persona values an earlier run (or an admin) left in the target attribute."""
    foreign = company.foreign_tags
    enabled = [p for p in people if not p.disabled]
    tagged = rng.sample(enabled, round(TAGGED_SHARE * len(enabled)) + len(foreign))
    for person in tagged[len(foreign) :]:
        person.persona_tag = person.persona
        if rng.random() < STALE_TAG_SHARE:
            others = [p for p in company.persona_ids if p != person.persona]
            person.persona_tag = rng.choice(others)
    for person, tag in zip(tagged, foreign, strict=False):
        person.persona_tag = tag


def _break_org_chart(rng: random.Random, staff: list[Person]) -> None:
    """Two people who name each other as manager, and one whose manager was deleted."""
    candidates = [p for p in staff if not p.disabled and isinstance(p.manager, Person)]
    first, second, orphan = rng.sample(candidates, 3)
    first.manager, second.manager = second, first
    orphan.manager = DANGLING_MANAGER


# -- entries ---------------------------------------------------------------------------------


def _person_entry(company: Company, person: Person) -> Entry:
    country, legal_entity = company.countries[person.site.country]
    attributes = [("objectClass", name) for name in USER_CLASSES]
    attributes += [
        ("cn", person.cn),
        ("sn", person.surname),
        ("givenName", person.given),
        ("displayName", person.display_name),
        ("sAMAccountName", person.sam),
        ("userPrincipalName", f"{person.sam}@{MAIL_DOMAIN}"),
        ("mail", f"{person.mail}@{MAIL_DOMAIN}"),
    ]
    optional = [
        ("title", person.title),
        ("department", person.department),
        ("company", legal_entity),
        ("physicalDeliveryOfficeName", person.office),
    ]
    attributes += [(name, value) for name, value in optional if value is not None]
    attributes += [
        ("l", person.site.city),
        ("co", country),
        ("c", person.site.country),
        ("employeeType", person.employee_type),
    ]
    manager = _dn(person.manager) if isinstance(person.manager, Person) else person.manager
    if manager is not None:
        attributes.append(("manager", manager))
    attributes.append(("userAccountControl", DISABLED if person.disabled else ENABLED))
    if person.show_grade:
        attributes.append(("seniorityLevel", str(person.grade)))
    if person.show_customer_facing:
        attributes.append(("customerFacing", "TRUE" if person.customer_facing else "FALSE"))
    if person.persona_tag is not None:
        attributes.append((TARGET_ATTRIBUTE, person.persona_tag))
    return Entry(_dn(person), tuple(attributes))


def _service_entry(company: Company, name: str, description: str) -> Entry:
    attributes = [("objectClass", c) for c in USER_CLASSES] + [
        ("cn", name),
        ("description", description),
        ("sAMAccountName", name),
        ("userPrincipalName", f"{name}@{MAIL_DOMAIN}"),
        ("company", company.countries["DE"][1]),
        ("employeeType", "service"),
        ("userAccountControl", SERVICE_FLAGS),
    ]
    return Entry(f"CN={name},{SERVICE_ACCOUNTS_DN}", tuple(attributes))
