"""Throughput of the persona engine on the default catalog, against a hand-written yardstick.

Run from the repository root::

    python bench/engine_bench.py                      # 1,000,000 employees
    python bench/engine_bench.py --employees 200000 --seed 7 --json

What it does, in one process on one core:

1. Generates N synthetic Active Directory employees (not timed): title, department,
   physicalDeliveryOfficeName, employeeType, userAccountControl, seniorityLevel (~20%),
   customerFacing (~15%), drawn from weighted pools per job segment (clinical, retail,
   plant, sales, IT, engineering, corporate) so that titles, departments and sites go
   together the way they do in a real directory. Attribute strings are shared from the
   pools; only the id and DN are unique per employee.
2. Times ``Engine.decide`` over everyone with the catalog in ``rules/``, then the two halves
   apart: ``Engine.facts`` alone, and the decision on precomputed facts. The second half
   pokes the engine's internals (``engine.in_scope(facts)`` then ``engine._scenarios[0]``),
   because the public API has no "decide from facts"; if the engine's internals change,
   only that measurement needs updating.
3. Runs a hand-written ``if``/``elif`` version of the default catalog (fact derivation and
   persona decision written directly in Python: the same regex tables, case-insensitive,
   the same precedence, ``unless`` clauses and scope) over the same employees, prints its
   speed and the engine's ratio to it, and checks that both give every employee the same
   persona and rule. Any mismatch is printed and the exit status is 1.

The hand-written version memoises what it derives from a title, a department, a site and an
employee type (one dict lookup per attribute value), as anyone writing it for speed would;
the engine memoises per fact source. Both read the same attributes and give the same
answers, so the ratio is "how much does generality cost". Targets
(shared/notes/rule-engine-peers.md): engine >= 0.5x hand-written; floor 200,000/s.

``Engine.decide`` is called per employee without an org-chart position (the synthetic
entries have no ``manager``), so the org-chart source of ``seniority`` yields nothing; the
hand-written version mirrors that. Garbage collection is off while a timed loop runs (as
``timeit`` does); the generated directory is frozen out of the collector first. Rates are
per CPU second of this process (``time.process_time``), so a busy neighbour on a shared
machine does not count against either side; wall-clock seconds are reported alongside. The
four measurements take turns chunk by chunk (50,000 employees), so a slowdown hits them
alike.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import re
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from persona_sync.employee import Employee
from persona_sync.rules.engine import Decision, Engine
from persona_sync.rules.loader import load_rules

DEFAULT_EMPLOYEES = 1_000_000
DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules"
CHUNK = 50_000  # measurements take turns per chunk; facts are kept for one chunk at a time
FLOOR = 200_000  # employees/s, the floor
AIM = 0.5  # engine / hand-written, from the peers note

Assignment = tuple[str | None, str | None]  # (persona, rule); (None, None) when out of scope
OUT_OF_SCOPE: Assignment = (None, None)

# --------------------------------------------------------------------------------------
# Synthetic directory
# --------------------------------------------------------------------------------------

# Title pools per segment: (base title, weight, seniority variants allowed).
_V_ALL = ("Senior ", "Junior ", "Sr. ", "Lead ", "Trainee ")
_V_PRO = ("Senior ", "Junior ", "Sr. ", "Lead ", "Principal ", "Staff ")
_V_FEW = ("Senior ",)
_NO: tuple[str, ...] = ()

TITLES: dict[str, list[tuple[str, float, tuple[str, ...]]]] = {
    "clinical": [
        ("Registered Nurse", 30, ("Senior ",)),
        ("Nurse Practitioner", 6, _V_FEW),
        ("Charge Nurse", 4, _NO),
        ("Clinical Nurse Specialist", 2, _NO),
        ("Trauma Surgeon", 2, ("Senior ",)),
        ("Emergency Physician", 3, _NO),
        ("Attending Physician", 4, ("Senior ",)),
        ("Physician", 6, _NO),
        ("Surgeon", 3, _NO),
        ("Orthopedic Surgeon", 2, _NO),
        ("Anesthesiologist", 2, _NO),
        ("Pharmacist", 3, _V_FEW),
        ("Radiologist", 2, _NO),
        ("Physical Therapist", 3, _V_FEW),
        ("Respiratory Therapist", 2, _NO),
        ("Paramedic", 3, _NO),
        ("Midwife", 2, _NO),
        ("Resident Doctor", 3, _NO),
        ("Emergency Medicine Doctor", 1, _NO),
        ("Medical Assistant", 6, _NO),
        ("Patient Care Technician", 4, _NO),
        ("Ward Clerk", 2, _NO),
        ("Medical Receptionist", 3, _NO),
        ("Nursing Manager", 1, _NO),
        ("Head of Nursing", 0.3, _NO),
        ("Chief Nursing Officer", 0.05, _NO),
        ("Director of Clinical Services", 0.1, _NO),
    ],
    "retail": [
        ("Cashier", 30, _NO),
        ("Head Cashier", 3, _NO),
        ("Sales Associate", 20, ("Senior ",)),
        ("Retail Associate", 8, _NO),
        ("Store Manager", 3, _NO),
        ("Assistant Store Manager", 3, _NO),
        ("Shift Supervisor", 4, _NO),
        ("Stock Clerk", 6, _NO),
        ("Merchandiser", 3, _NO),
        ("Visual Merchandiser", 2, _NO),
        ("Customer Service Representative", 5, _V_FEW),
        ("Shop Assistant", 4, _NO),
        ("Greeter", 2, _NO),
        ("Store Clerk", 4, _NO),
        ("Loss Prevention Officer", 2, _NO),
        ("Regional Store Director", 0.2, _NO),
    ],
    "plant": [
        ("CNC Machine Operator", 15, ("Senior ", "Lead ", "Trainee ")),
        ("Machine Operator", 12, ("Senior ", "Trainee ")),
        ("Forklift Driver", 6, _NO),
        ("Assembler", 10, _NO),
        ("Welder", 5, ("Senior ",)),
        ("Machinist", 5, ("Senior ",)),
        ("Production Worker", 10, _NO),
        ("Line Worker", 6, _NO),
        ("Maintenance Technician", 5, ("Senior ",)),
        ("Quality Inspector", 4, _NO),
        ("Production Supervisor", 3, _NO),
        ("Warehouse Associate", 8, _NO),
        ("Shift Lead", 2, _NO),
        ("Plant Manager", 0.5, _NO),
        ("Plant Director", 0.2, _NO),
        ("Production Planner", 2, _V_FEW),
        ("Logistics Coordinator", 2, _NO),
        ("Electrician", 3, _NO),
        ("Process Engineer", 2, _V_PRO),
        ("Apprentice Mechanic", 1.5, _NO),
    ],
    "sales": [
        ("Account Executive", 12, ("Senior ", "Junior ", "Sr. ")),
        ("Account Manager", 8, _V_FEW),
        ("Key Account Manager", 4, _NO),
        ("Sales Representative", 10, _V_ALL),
        ("Sales Manager", 3, _NO),
        ("Business Development Representative", 5, _V_FEW),
        ("Sales Engineer", 3, _V_FEW),
        ("Inside Sales Representative", 5, _NO),
        ("Field Sales Representative", 4, _NO),
        ("Sales Operations Analyst", 2, _NO),
        ("Customer Success Manager", 3, _NO),
        ("Regional Sales Director", 0.5, _NO),
        ("Vice President, Sales", 0.1, _NO),
        ("Head of Sales EMEA", 0.1, _NO),
    ],
    "it": [
        ("Service Desk Technician", 10, ("Senior ", "Junior ")),
        ("Help Desk Analyst", 6, _V_FEW),
        ("Helpdesk Technician", 3, _NO),
        ("IT Support Specialist", 6, _V_FEW),
        ("Desktop Support Technician", 5, _NO),
        ("System Administrator", 5, ("Senior ", "Junior ")),
        ("Network Administrator", 3, _V_FEW),
        ("Sysadmin", 1, _NO),
        ("IT Project Manager", 2, _NO),
        ("Security Analyst", 3, _V_FEW),
        ("Database Administrator", 2, _V_FEW),
        ("Cloud Engineer", 3, _V_PRO),
        ("DevOps Engineer", 3, _V_PRO),
        ("IT Manager", 1, _NO),
        ("Chief Information Officer", 0.05, _NO),
        ("Director of IT", 0.1, _NO),
    ],
    "engineering": [
        ("Software Engineer", 30, _V_PRO),
        ("Software Developer", 10, _V_PRO),
        ("Data Scientist", 5, _V_PRO),
        ("Data Analyst", 5, _V_ALL),
        ("Solutions Architect", 3, _NO),
        ("Mechanical Engineer", 5, _V_PRO),
        ("Electrical Engineer", 4, _V_PRO),
        ("UX Designer", 3, _V_FEW),
        ("QA Engineer", 4, _V_ALL),
        ("Research Scientist", 2, _V_FEW),
        ("Firmware Engineer", 2, _V_PRO),
        ("Engineering Manager", 2, _NO),
        ("Product Designer", 2, _NO),
        ("Engineering Intern", 1, _NO),
        ("VP Engineering", 0.05, _NO),
        ("Chief Technology Officer", 0.02, _NO),
    ],
    "corporate": [
        ("Accountant", 10, _V_ALL),
        ("Financial Analyst", 8, _V_ALL),
        ("Controller", 2, _NO),
        ("HR Business Partner", 4, _V_FEW),
        ("Recruiter", 4, _V_FEW),
        ("Payroll Specialist", 3, _NO),
        ("Paralegal", 2, _NO),
        ("Legal Counsel", 2, _V_FEW),
        ("Marketing Specialist", 6, _V_ALL),
        ("Marketing Coordinator", 4, _NO),
        ("Content Writer", 2, _NO),
        ("Procurement Officer", 3, _NO),
        ("Buyer", 3, _V_FEW),
        ("Administrative Assistant", 6, _NO),
        ("Executive Assistant", 2, _NO),
        ("Office Manager", 2, _NO),
        ("Project Coordinator", 4, _NO),
        ("Business Analyst", 5, _V_ALL),
        ("Communications Specialist", 2, _NO),
        ("Receptionist", 2, _NO),
        ("Compliance Officer", 2, _NO),
        ("Internal Auditor", 2, _V_FEW),
        ("Product Manager", 4, _V_FEW),
        ("Project Manager", 4, _V_FEW),
        ("Facilities Coordinator", 2, _NO),
        ("Finance Manager", 1.5, _NO),
        ("HR Manager", 1, _NO),
        ("Team Lead, Accounts Payable", 0.5, _NO),
        ("Senior Manager, Procurement", 0.3, _NO),
        ("Head of Legal", 0.1, _NO),
        ("Director of Finance", 0.3, _NO),
        ("Director, Human Resources", 0.2, _NO),
        ("Vice President, Marketing", 0.15, _NO),
        ("Senior Vice President, Operations", 0.05, _NO),
        ("EVP, Finance", 0.03, _NO),
        ("SVP Strategy", 0.03, _NO),
        ("Chief Executive Officer", 0.01, _NO),
        ("Chief Financial Officer", 0.01, _NO),
        ("President", 0.01, _NO),
        ("Interim CFO", 0.01, _NO),
        ("Marketing Intern", 1, _NO),
    ],
}

# Directory data is not tidy: a few titles arrive shouting, in lower case or padded.
TITLE_QUIRKS = [
    ("REGISTERED NURSE", "clinical", 0.5),
    ("cashier", "retail", 0.5),
    (" Cashier ", "retail", 0.1),
    ("software engineer", "engineering", 0.3),
    ("ACCOUNT EXECUTIVE", "sales", 0.2),
    ("Sr.Accountant", "corporate", 0.1),
    ("vice president, marketing", "corporate", 0.02),
]

DEPARTMENTS: dict[str, list[str]] = {
    "clinical": [
        "Emergency Medicine",
        "Trauma Surgery",
        "Cardiology",
        "Surgery",
        "Nursing",
        "Pediatrics",
        "Radiology",
        "Oncology",
        "Patient Services",
        "Pharmacy",
        "Intensive Care",
        "Emergency Department",
        "Orthopedics",
        "Maternity",
    ],
    "retail": [
        "Stores",
        "Retail Operations",
        "Store Operations",
        "Customer Service",
        "Merchandising",
        "Loss Prevention",
        "Store 114",
        "E-Commerce Fulfilment",
    ],
    "plant": [
        "Production",
        "Manufacturing",
        "Maintenance",
        "Logistics",
        "Quality Assurance",
        "Warehouse Operations",
        "Supply Chain",
        "Plant Engineering",
        "Tooling",
    ],
    "sales": [
        "Sales EMEA",
        "Sales Americas",
        "Sales APAC",
        "Inside Sales",
        "Business Development",
        "Account Management",
        "Field Service",
        "Revenue Operations",
        "Key Accounts",
    ],
    "it": [
        "IT",
        "IT Operations",
        "Information Technology",
        "IT Service Desk",
        "Infrastructure",
        "Information Security",
        "IT Applications",
        "Digital Workplace",
    ],
    "engineering": [
        "R&D",
        "Engineering",
        "Software Development",
        "Data Science",
        "Product Engineering",
        "Platform Engineering",
        "Research",
        "Hardware Engineering",
    ],
    "corporate": [
        "Finance",
        "Accounting",
        "Human Resources",
        "Legal",
        "Marketing",
        "Procurement",
        "Facilities",
        "Communications",
        "Executive Office",
        "Strategy",
        "Compliance",
        "Internal Audit",
        "Customer Success",
        "Treasury",
        "Tax",
        "Investor Relations",
    ],
}

_CITIES = [
    "Vienna",
    "Graz",
    "Linz",
    "Munich",
    "Berlin",
    "Hamburg",
    "Lyon",
    "Paris",
    "Milan",
    "Madrid",
    "Leeds",
    "Dublin",
    "Chicago",
    "Austin",
    "Toronto",
    "Dallas",
    "Denver",
    "Phoenix",
    "Atlanta",
    "Boston",
]
SITES: dict[str, list[str]] = {
    "hq": ["Munich HQ", "Headquarters Chicago", "Head Office London", "HQ Vienna"],
    "office": [
        "Vienna Office",
        "Berlin",
        "Paris La Defense",
        "New York - Midtown",
        "Toronto",
        "Singapore",
        "Sydney",
        "Austin Campus",
        "Dublin Docklands",
        "Zurich",
        "Madrid Business Park",
        "Warsaw Tech Hub",
        "Bangalore",
        "Sao Paulo",
        "Tokyo",
    ],
    "plant": [
        "Plant Linz",
        "Plant Gyor",
        "Detroit Assembly Plant",
        "Monterrey Factory",
        "Rotterdam Warehouse",
        "Memphis Distribution Center",
        "Sheffield Steel Works",
        "Kemi Paper Mill",
        "Leipzig Distribution Centre",
        "Plant Brno",
    ],
    "clinic": [
        "St. Mary Hospital",
        "Northside Clinic",
        "University Medical Center",
        "Riverside Medical Centre",
        "Children's Hospital Boston",
        "Lakeside Clinic",
        "General Hospital Graz",
        "Eastside Urgent Care Clinic",
    ],
    "store": [f"Store {n:03d} {_CITIES[n % len(_CITIES)]}" for n in range(1, 151)]
    + ["Outlet Graz", "Outlet Parndorf", "Flagship Shop Milan", "Airport Shop Vienna"],
    "remote": ["Remote", "Remote - Lyon", "Remote - Texas", "Home Office", "Telework", "Virtual"],
}

# Where each segment works: kind of site -> weight; None = attribute missing.
SITE_MIX: dict[str, dict[str | None, float]] = {
    "clinical": {"clinic": 88, "hq": 1, "office": 3, "remote": 2, None: 6},
    "retail": {"store": 86, "hq": 2, "office": 3, "plant": 3, "remote": 1, None: 5},
    "plant": {"plant": 87, "office": 4, "hq": 2, "remote": 1, None: 6},
    "sales": {"office": 40, "hq": 15, "remote": 30, "store": 5, None: 10},
    "it": {"hq": 35, "office": 28, "remote": 15, "plant": 8, "clinic": 5, "store": 2, None: 7},
    "engineering": {"hq": 25, "office": 40, "remote": 25, "plant": 4, None: 6},
    "corporate": {"hq": 40, "office": 34, "remote": 15, "plant": 3, "clinic": 2, None: 6},
}
SEGMENTS: dict[str, float] = {
    "corporate": 28,
    "clinical": 16,
    "retail": 15,
    "plant": 15,
    "engineering": 12,
    "sales": 8,
    "it": 6,
}

EMPLOYEE_TYPES: dict[str | None, float] = {
    "employee": 84,
    "Employee": 1,
    "contractor": 6.5,
    "Contractor": 0.5,
    "consultant": 1,
    "intern": 2,
    "service": 0.4,
    None: 4.6,
}
ACCOUNT_CONTROL: dict[str | None, float] = {
    "512": 88,
    "66048": 6,
    "514": 4.5,
    "66050": 0.5,
    "544": 0.5,
    None: 0.5,
}
SENIORITY_LEVELS = dict(
    zip((str(n) for n in range(1, 11)), (3, 10, 16, 18, 16, 12, 9, 7, 5, 4), strict=True)
)
CUSTOMER_FACING: dict[str | None, float] = {
    "TRUE": 7,
    "FALSE": 6,
    "true": 1,
    "false": 0.5,
    "yes": 0.3,
    "N": 0.2,
    None: 85,
}
_NAME_STEMS = [
    f"{a}{b}"
    for a in "abcdefghijklmnoprstvwz"
    for b in (
        "smith",
        "jones",
        "muller",
        "garcia",
        "rossi",
        "novak",
        "kim",
        "patel",
        "dubois",
        "silva",
        "berg",
        "tanaka",
        "nguyen",
        "brown",
        "wagner",
    )
]
_SERVICE_PURPOSES = ["backup", "sql", "sccm", "print", "scan", "monitor", "deploy", "web"]


def _weighted(pool: dict[Any, float]) -> tuple[list[Any], list[float]]:
    items = list(pool)
    cumulative: list[float] = []
    total = 0.0
    for item in items:
        total += pool[item]
        cumulative.append(total)
    return items, cumulative


def _title_pool(segment: str) -> dict[str, float]:
    pool: dict[str, float] = {}
    for base, weight, variants in TITLES[segment]:
        share = 0.12 if variants else 0.0
        pool[base] = pool.get(base, 0) + weight * (1 - share * len(variants))
        for prefix in variants:
            pool[prefix + base] = pool.get(prefix + base, 0) + weight * share
    for title, seg, weight in TITLE_QUIRKS:
        if seg == segment:
            pool[title] = weight
    return pool


def _site_pool(segment: str) -> dict[str | None, float]:
    pool: dict[str | None, float] = {}
    for kind, weight in SITE_MIX[segment].items():
        if kind is None:
            pool[None] = weight
            continue
        names = SITES[kind]
        # Zipf-like inside a kind: big sites hold more people.
        shares = [1 / (rank + 1) for rank in range(len(names))]
        norm = sum(shares)
        for name, share in zip(names, shares, strict=True):
            pool[name] = pool.get(name, 0) + weight * share / norm
    return pool


def _department_pool(segment: str) -> dict[str | None, float]:
    names = DEPARTMENTS[segment]
    pool: dict[str | None, float] = {n: 98 / len(names) for n in names}
    pool[None] = 2
    return pool


def distinct_titles() -> int:
    return len({t for segment in TITLES for t in _title_pool(segment)})


def generate_employees(count: int, seed: int) -> list[Employee]:
    """Build the synthetic directory; attribute strings are shared from the pools."""
    rng = random.Random(seed)

    def draw(pool: dict[Any, float], k: int) -> list[Any]:
        items, cumulative = _weighted(pool)
        return rng.choices(items, cum_weights=cumulative, k=k)

    segment_names, segment_weights = _weighted(SEGMENTS)
    segments = rng.choices(segment_names, cum_weights=segment_weights, k=count)
    per_segment = Counter(segments)
    columns: dict[str, tuple[Any, Any, Any]] = {}
    for segment, k in per_segment.items():
        columns[segment] = (
            iter(draw(_title_pool(segment), k)),
            iter(draw(_department_pool(segment), k)),
            iter(draw(_site_pool(segment), k)),
        )
    employee_types = draw(EMPLOYEE_TYPES, count)
    controls = draw(ACCOUNT_CONTROL, count)
    levels = draw({**SENIORITY_LEVELS, None: sum(SENIORITY_LEVELS.values()) * 4}, count)  # ~20%
    facing = draw(CUSTOMER_FACING, count)
    stems = rng.choices(_NAME_STEMS, k=count)
    odd = rng.random  # accounts without employeeType: a few admin and service accounts

    employees: list[Employee] = []
    append = employees.append
    for n in range(count):
        titles, departments, sites = columns[segments[n]]
        title = next(titles)
        department = next(departments)
        site = next(sites)
        employee_type = employee_types[n]
        if employee_type == "service":
            uid = f"svc-{_SERVICE_PURPOSES[n % len(_SERVICE_PURPOSES)]}{n}"
            dn = f"CN={uid},OU=Service Accounts,DC=corp,DC=example,DC=com"
        elif employee_type is None and (roll := odd()) < 0.08:
            if roll < 0.05:  # personal admin account, caught by its id
                uid = f"sa-{stems[n]}{n}"
                dn = f"CN={uid},OU=Admins,DC=corp,DC=example,DC=com"
            else:  # service account known only by where it lives
                uid = f"{_SERVICE_PURPOSES[n % len(_SERVICE_PURPOSES)]}{n}"
                dn = f"CN={uid},OU=Service Accounts,DC=corp,DC=example,DC=com"
        else:
            uid = f"{stems[n]}{n}"
            dn = f"CN={uid},OU=Staff,DC=corp,DC=example,DC=com"
        attributes: dict[str, str] = {}
        if title is not None:
            attributes["title"] = title
        if department is not None:
            attributes["department"] = department
        if site is not None:
            attributes["physicaldeliveryofficename"] = site
        if employee_type is not None:
            attributes["employeetype"] = employee_type
        if controls[n] is not None:
            attributes["useraccountcontrol"] = controls[n]
        if levels[n] is not None:
            attributes["senioritylevel"] = levels[n]
        if facing[n] is not None:
            attributes["customerfacing"] = facing[n]
        append(Employee(uid, dn, attributes))
    return employees


# --------------------------------------------------------------------------------------
# The yardstick: the default catalog (rules/*.yaml) written by hand
# --------------------------------------------------------------------------------------

_I = re.IGNORECASE
# facts.yaml, role.family (first matching line wins; default general)
FAMILY_TABLE = (
    (
        re.compile(
            r"\b(surgeon|physician|doctor|nurse|clinician|paramedic|pharmacist|radiologist"
            r"|midwife)|therapist\b",
            _I,
        ),
        "clinical",
    ),
    (
        re.compile(
            r"\b(help ?desk|service desk|it support|desktop support|support technician"
            r"|system administrator|sysadmin|network administrator)",
            _I,
        ),
        "it-support",
    ),
    (
        re.compile(
            r"\b(sales (rep|representative|executive|engineer|manager|director|consultant"
            r"|associate)|account executive|account manager|business development"
            r"|territory manager)\b",
            _I,
        ),
        "sales",
    ),
    (re.compile(r"\b(cashier|store|retail|shop|merchandiser)\b", _I), "retail"),
    (
        re.compile(r"\b(engineer|developer|architect|scientist|designer|data analyst)\b", _I),
        "engineering",
    ),
    (
        re.compile(
            r"\b(operator|machinist|assembler|welder|forklift|production"
            r"|line worker|maintenance technician)\b",
            _I,
        ),
        "production",
    ),
)
# facts.yaml, location.site_type (default office)
SITE_TYPE_TABLE = (
    (re.compile(r"\b(remote|home ?office|telework|virtual)\b", _I), "remote"),
    (re.compile(r"\b(plant|factory|mill|works|warehouse|distribution cent(er|re))\b", _I), "plant"),
    (re.compile(r"\b(hospital|clinic|medical cent(er|re))\b", _I), "clinic"),
    (re.compile(r"\b(store|shop|outlet)\b", _I), "store"),
    (re.compile(r"\b(hq|headquarters|head office)\b", _I), "hq"),
)
# facts.yaml, seniority from title keywords
SENIORITY_TABLE = (
    (re.compile(r"\b(vice president|vp|svp|evp)\b", _I), 9.0),
    (re.compile(r"\b(chief|ceo|cfo|cio|cto|coo|president)\b", _I), 10.0),
    (re.compile(r"\bdirector\b", _I), 8.0),
    (re.compile(r"\b(head of|senior manager)\b", _I), 7.0),
    (re.compile(r"\b(manager|team lead)\b", _I), 6.0),
    (re.compile(r"\b(senior|sr\.?|principal|staff)\b", _I), 5.0),
    (re.compile(r"\b(junior|jr\.?|intern|trainee|apprentice)\b", _I), 2.0),
)
CUSTOMER_DEPARTMENT = re.compile(
    r"\b(sales|retail|stores?|customer|patient|field service|account management)\b", _I
)
CUSTOMER_TITLE = re.compile(
    r"\b(sales|cashier|receptionist|account executive|account manager|customer|nurse|physician"
    r"|field)\b",
    _I,
)
SERVICE_ID = re.compile(r"^(svc|srv|sa)[-_.]", _I)
SERVICE_DN = re.compile(r"ou=service accounts", _I)
# personas.yaml
TRAUMA = re.compile(r"\b(trauma|emergency)\b", _I)
DOCTOR = re.compile(r"\b(surgeon|physician|doctor|attending|md)\b", _I)
IT_DEPARTMENT = re.compile(r"^(it|information technology)( |$)", _I)
TRUE_WORDS = frozenset({"true", "yes", "y", "1", "t", "on"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "f", "off"})

VIP_EXECUTIVE: Assignment = ("vip", "vip-executive")
VIP_TRAUMA: Assignment = ("vip", "vip-trauma-doctor")
CLINICIAN: Assignment = ("clinician", "clinician-by-title")
PLANT_FLOOR: Assignment = ("plant-floor", "plant-floor-production")
FRONTLINE: Assignment = ("frontline", "frontline-store")
FIELD_SALES: Assignment = ("field-sales", "field-sales-rep")
TECH_SUPPORT: Assignment = ("tech-support", "tech-support-it")
ENGINEER: Assignment = ("engineer", "engineer-by-title")
REMOTE_WORKER: Assignment = ("remote-worker", "remote-by-site")
KNOWLEDGE_WORKER: Assignment = ("knowledge-worker", "default")


def _first(table: Sequence[tuple[re.Pattern[str], Any]], text: str) -> Any:
    for pattern, value in table:
        if pattern.search(text):
            return value
    return None


def _number(raw: str) -> float | None:
    try:
        return float(raw.strip().replace(",", "."))
    except ValueError:
        return None


def _title_info(raw: str | None) -> tuple[str, float | None, bool | None, bool, bool]:
    """(role.family, seniority from title, customer-facing from title, title says trauma,
    title names a doctor)."""
    if not raw:
        return "general", None, None, False, False
    title = raw.strip()
    return (
        _first(FAMILY_TABLE, raw) or "general",
        _first(SENIORITY_TABLE, raw),
        True if CUSTOMER_TITLE.search(raw) else None,
        bool(title) and TRAUMA.search(title) is not None,
        bool(title) and DOCTOR.search(title) is not None,
    )


def _department_info(raw: str | None) -> tuple[bool | None, bool, bool]:
    """(customer-facing from department, department says trauma, IT department)."""
    if not raw:
        return None, False, False
    department = raw.strip()
    return (
        True if CUSTOMER_DEPARTMENT.search(raw) else None,
        bool(department) and TRAUMA.search(department) is not None,
        bool(department) and IT_DEPARTMENT.search(department) is not None,
    )


def _site_info(raw: str | None) -> tuple[str, bool]:
    """(location.site_type, location.site missing)."""
    if not raw:
        return "office", True
    return _first(SITE_TYPE_TABLE, raw) or "office", not raw.strip()


def _employee_type_info(raw: str | None) -> tuple[bool, bool, bool | None]:
    """(contractor or consultant, intern, service account by type)."""
    if not raw:
        return False, False, None
    word = raw.strip().casefold()
    return (
        word in ("contractor", "consultant"),
        word == "intern",
        True if word in ("service", "system") else None,
    )


def _flag(raw: str, bit: int) -> bool | None:
    try:
        return (int(raw.strip()) & bit) != 0
    except ValueError:
        return None


def _boolean(raw: str) -> bool | None:
    word = raw.strip().casefold()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    return None


def hand_written_decider() -> Callable[[Employee], Assignment]:
    """The default catalog as plain Python: one function, memoised per attribute value."""
    titles: dict[str | None, tuple[str, float | None, bool | None, bool, bool]] = {}
    departments: dict[str | None, tuple[bool | None, bool, bool]] = {}
    sites: dict[str | None, tuple[str, bool]] = {}
    employee_types: dict[str | None, tuple[bool, bool, bool | None]] = {}
    controls: dict[str, bool | None] = {}
    levels: dict[str, float | None] = {}
    facing: dict[str, bool | None] = {}

    def decide(employee: Employee) -> Assignment:
        get = employee.attributes.get

        # scope.yaml: disabled and service accounts are out of scope
        raw = get("useraccountcontrol")
        disabled: bool | None = None
        if raw:
            if raw in controls:
                disabled = controls[raw]
            else:
                disabled = controls[raw] = _flag(raw, 2)
        if disabled is None:
            enabled = get("accountenabled")
            if enabled:
                word = enabled.strip().casefold()
                disabled = True if word == "false" else False if word == "true" else None
        if disabled:
            return OUT_OF_SCOPE
        raw = get("employeetype")
        etype = employee_types.get(raw)
        if etype is None:
            etype = employee_types[raw] = _employee_type_info(raw)
        contractor, intern, service = etype
        if service is None:
            service = (
                SERVICE_ID.search(employee.id) is not None
                or SERVICE_DN.search(employee.dn) is not None
            )
        if service:
            return OUT_OF_SCOPE

        # facts.yaml
        raw = get("title") or get("jobtitle")
        title = titles.get(raw)
        if title is None:
            title = titles[raw] = _title_info(raw)
        family, title_seniority, title_facing, title_trauma, doctor = title
        raw = get("department") or get("departmentnumber")
        department = departments.get(raw)
        if department is None:
            department = departments[raw] = _department_info(raw)
        department_facing, department_trauma, it_department = department
        raw = get("physicaldeliveryofficename") or get("officelocation")
        site = sites.get(raw)
        if site is None:
            site = sites[raw] = _site_info(raw)
        site_type, site_missing = site
        seniority: float | None = None
        raw = get("senioritylevel")
        if raw:
            if raw in levels:
                seniority = levels[raw]
            else:
                seniority = levels[raw] = _number(raw)
        if seniority is None:
            seniority = title_seniority  # the org-chart source has no position here
        raw = get("customerfacing")
        customer_facing: bool | None = None
        if raw:
            if raw in facing:
                customer_facing = facing[raw]
            else:
                customer_facing = facing[raw] = _boolean(raw)
        if customer_facing is None:
            customer_facing = department_facing or title_facing or False

        # personas.yaml, highest precedence first
        if not contractor:
            if seniority is not None and seniority >= 9:
                return VIP_EXECUTIVE
            if doctor and (title_trauma or department_trauma):
                return VIP_TRAUMA
        if family == "clinical":
            return CLINICIAN
        if family == "production" or (
            site_type == "plant" and seniority is not None and seniority < 6
        ):
            return PLANT_FLOOR
        if family == "retail" or (site_type == "store" and customer_facing):
            return FRONTLINE
        if family == "sales" and customer_facing:
            return FIELD_SALES
        if family == "it-support" or it_department:
            return TECH_SUPPORT
        if family == "engineering" and not intern:
            return ENGINEER
        if site_type == "remote" or site_missing:
            return REMOTE_WORKER
        return KNOWLEDGE_WORKER

    return decide


# --------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _timed(run: Callable[[], Any]) -> tuple[tuple[float, float], Any]:
    """((CPU seconds, wall seconds), result) of one call, with the collector off."""
    gc.disable()
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        result = run()
        return (time.process_time() - cpu, time.perf_counter() - wall), result
    finally:
        gc.enable()


def _timed_map(
    function: Callable[[Any], Any], items: list[Any]
) -> tuple[tuple[float, float], list[Any]]:
    return _timed(lambda: [function(item) for item in items])


def _timed_decisions(
    in_scope: Callable[[list[Any]], bool],
    scenario: Callable[[list[Any]], Decision],
    out: Decision,
    facts: list[list[Any]],
) -> tuple[float, float]:
    took, _ = _timed(lambda: [scenario(f) if in_scope(f) else out for f in facts])
    return took


def _measure(
    employees: list[Employee], rules: Path
) -> tuple[dict[str, list[float]], list[tuple[Decision, ...]], list[Assignment]]:
    """[CPU, wall] seconds per measurement, plus both assignments, timed chunk by chunk.

    The four measurements take turns on each chunk of employees, so a busy neighbour on a
    shared machine slows them alike and the ratio stays fair. Each engine measurement gets
    an engine of its own: the engine memoises per attribute value, and a warm memo left by
    ``decide`` on the same chunk would flatter ``facts``.
    """
    rule_set = load_rules([rules])
    decide = Engine(rule_set).decide
    halves = Engine(rule_set)
    facts_of = halves.facts
    in_scope = halves.in_scope
    scenario = halves._scenarios[0]  # internal: the compiled decision of the first scenario
    out = halves._out_of_scope[0]  # internal: the shared out-of-scope decision
    by_hand = hand_written_decider()
    seconds = {key: [0.0, 0.0] for key in ("decide", "facts", "decisions", "hand_written")}

    def add(key: str, took: tuple[float, float]) -> None:
        seconds[key][0] += took[0]
        seconds[key][1] += took[1]

    engine_results: list[tuple[Decision, ...]] = []
    hand_results: list[Assignment] = []
    for start in range(0, len(employees), CHUNK):
        chunk = employees[start : start + CHUNK]
        took, decided = _timed_map(decide, chunk)
        add("decide", took)
        engine_results.extend(decided)
        took, assigned = _timed_map(by_hand, chunk)
        add("hand_written", took)
        hand_results.extend(assigned)
        took, facts = _timed_map(facts_of, chunk)
        add("facts", took)
        add("decisions", _timed_decisions(in_scope, scenario, out, facts))
    return seconds, engine_results, hand_results


def _assignment(decision: Decision) -> Assignment:
    return (decision.persona, decision.rule)


def run(count: int, seed: int, rules: Path) -> dict[str, Any]:
    started = time.perf_counter()
    scenarios = load_rules([rules]).scenarios
    if len(scenarios) != 1:
        raise SystemExit(f"{rules}: this bench expects one scenario, got {len(scenarios)}")

    (_, generate_seconds), employees = _timed(lambda: generate_employees(count, seed))
    gc.collect()
    gc.freeze()  # the directory lives for the whole run: keep it out of collections
    generated_mb = _peak_mb()

    seconds, engine_results, hand_results = _measure(employees, rules)

    mismatches = 0
    examples: list[dict[str, Any]] = []
    distribution: Counter[str] = Counter()
    for employee, decisions, expected in zip(employees, engine_results, hand_results, strict=True):
        got = _assignment(decisions[0])
        distribution[got[0] or "(out of scope)"] += 1
        if got != expected:
            mismatches += 1
            if len(examples) < 5:
                examples.append(
                    {
                        "id": employee.id,
                        "dn": employee.dn,
                        "attributes": dict(employee.attributes),
                        "engine": list(got),
                        "hand_written": list(expected),
                    }
                )

    cpu = {key: took[0] for key, took in seconds.items()}
    engine_rate = count / cpu["decide"]
    hand_rate = count / cpu["hand_written"]
    return {
        "employees": count,
        "seed": seed,
        "rules": str(rules),
        "distinct_titles": distinct_titles(),
        "generate_seconds": round(generate_seconds, 3),
        "engine_decide_per_s": round(engine_rate),
        "engine_decide_seconds": round(cpu["decide"], 3),
        "engine_facts_per_s": round(count / cpu["facts"]),
        "engine_facts_seconds": round(cpu["facts"], 3),
        "engine_decisions_on_facts_per_s": round(count / cpu["decisions"]),
        "engine_decisions_on_facts_seconds": round(cpu["decisions"], 3),
        "hand_written_per_s": round(hand_rate),
        "hand_written_seconds": round(cpu["hand_written"], 3),
        "timed_wall_seconds": {key: round(took[1], 3) for key, took in seconds.items()},
        "engine_vs_hand_written": round(engine_rate / hand_rate, 3),
        "aim_vs_hand_written": AIM,
        "floor_per_s": FLOOR,
        "meets_aim": engine_rate / hand_rate >= AIM,
        "meets_floor": engine_rate >= FLOOR,
        "mismatches": mismatches,
        "mismatch_examples": examples,
        "peak_rss_mb_after_generation": round(generated_mb, 1),
        "peak_rss_mb": round(_peak_mb(), 1),
        "persona_distribution": dict(distribution.most_common()),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "python": sys.version.split()[0],
    }


def _rate_line(label: str, summary: dict[str, Any], key: str, wall_key: str) -> str:
    wall = summary["timed_wall_seconds"][wall_key]
    return (
        f"{label:<20} {summary[key + '_per_s']:>12,} employees/s  "
        f"({summary[key + '_seconds']:.2f} s CPU, {wall:.2f} s wall)"
    )


def render(summary: dict[str, Any]) -> str:
    n = summary["employees"]
    ratio = summary["engine_vs_hand_written"]
    lines = [
        f"employees            {n:,} (seed {summary['seed']}, {summary['distinct_titles']} "
        f"distinct titles), generated in {summary['generate_seconds']:.1f} s (not timed)",
        f"rules                {summary['rules']}",
        "employees/s are per CPU second of this process (time.process_time); wall in brackets",
        _rate_line("engine.decide", summary, "engine_decide", "decide"),
        _rate_line("  facts only", summary, "engine_facts", "facts"),
        _rate_line("  decisions on facts", summary, "engine_decisions_on_facts", "decisions")
        + "  [in_scope + _scenarios[0]: internals]",
        _rate_line("hand-written if/elif", summary, "hand_written", "hand_written"),
        f"engine / hand-written {ratio:.2f}x  (aim >= {AIM}x: "
        f"{'met' if summary['meets_aim'] else 'NOT met'}; floor {FLOOR:,}/s: "
        f"{'met' if summary['meets_floor'] else 'NOT met'})",
        f"mismatches           {summary['mismatches']:,}",
    ]
    for example in summary["mismatch_examples"]:
        lines.append(
            f"  {example['id']}: engine {tuple(example['engine'])}, hand-written "
            f"{tuple(example['hand_written'])}, attributes {example['attributes']}"
        )
    lines.append(
        f"peak memory          {summary['peak_rss_mb']:,.0f} MB (ru_maxrss; "
        f"{summary['peak_rss_mb_after_generation']:,.0f} MB after generation)"
    )
    lines.append("personas")
    for persona, count in summary["persona_distribution"].items():
        lines.append(f"  {persona:<18} {count:>10,}  {100 * count / n:5.1f}%")
    lines.append(
        f"wall time            {summary['wall_seconds']:.1f} s (Python {summary['python']})"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--employees",
        type=int,
        default=DEFAULT_EMPLOYEES,
        metavar="N",
        help=f"synthetic employees to generate (default {DEFAULT_EMPLOYEES:,})",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--rules",
        type=Path,
        default=DEFAULT_RULES,
        help="rule folder (default rules/, the default catalog)",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON summary instead")
    args = parser.parse_args(argv)
    if args.employees < 1:
        parser.error("--employees must be at least 1")
    summary = run(args.employees, args.seed, args.rules)
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return 1 if summary["mismatches"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
