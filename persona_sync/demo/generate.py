"""Generate the demo company: an Active Directory export of a fictional group, as LDIF.

Contoso (``DC=contoso,DC=example``) has a Munich headquarters, offices, two plants,
occupational-health clinics, stores and remote staff in nine countries, with a real manager
tree from the CEO down to the shop floor. Its people exercise every persona of the default
catalog, and the file carries what real exports carry: non-ASCII names (base64 in LDIF),
``CN=Smith\\, John``-style DNs, disabled and service accounts, entries without a title,
department or office, stale persona values, one manager cycle and one dangling manager.

The same ``employees`` and ``seed`` give the same bytes: one ``random.Random`` drives every
choice and nothing depends on set or hash order. ``company.ldif`` next to this module is
the default output; rebuild it with ``python -m persona_sync.demo.generate``. Only user
objects are exported (as ``ldifde -r "(objectClass=user)"`` would), because a file
directory reads every record as an employee.
"""

from __future__ import annotations

import argparse
import random
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
INTERN_SHARE = 0.06  # of the members of units that take interns

# The default catalog's persona ids, for values already in the target attribute.
PERSONA_IDS = (
    "vip",
    "clinician",
    "plant-floor",
    "frontline",
    "field-sales",
    "tech-support",
    "engineer",
    "remote-worker",
    "knowledge-worker",
)
FOREIGN_TAGS = ("legacy-tag", "kiosk", "tbd")
VENDORS = ("Baker+Lane", "Rhein+Main IT", "A+B Consulting")
NICKNAMES = {"Robert": "Bob", "William": "Will", "Michael": "Mike", "Katherine": "Kate"}
DEPARTMENT_PLACEHOLDER = "<unassigned>"  # what HR exports for a vacant cost centre
# A manager deleted from the directory (no generated name uses "Lindner").
DANGLING_MANAGER = f"CN=Gerhard Lindner,OU=Munich,{PEOPLE_DN}"
# Special characters of RFC 4514 that are escaped anywhere in an attribute value.
DN_SPECIALS = '\\"+,;<>'


@dataclass(frozen=True, slots=True)
class NamePool:
    given: tuple[str, ...]
    surnames: tuple[str, ...]
    surname_first: bool = False  # CJK: "李娜", no space


def _pool(given: str, surnames: str, surname_first: bool = False) -> NamePool:
    return NamePool(tuple(given.split()), tuple(surnames.split()), surname_first)


NAME_POOLS = {
    "de": _pool(
        "Jörg Jürgen Anna Lukas Sophie Maximilian Lea Felix Björn Käthe Günther Mia Jonas "
        "Katrin Sabine Stefan Uwe Hannah Tobias Julia Markus Lena Andreas Claudia Matthias",
        "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schäfer Köhler Groß "
        "Hoffmann Bauer Krüger Wolf Neumann Schröder Zimmermann Braun Hartmann Lange Werner "
        "Krause Lehmann Jäger Vogel",
    ),
    "at": _pool(
        "Florian Katharina Lukas Anna Matthias Magdalena Stefan Theresa Andreas Johanna "
        "Dominik Verena Bernhard Elisabeth Christoph Sarah Wolfgang Birgit Manuel Michaela "
        "Jakob Lisa Gerald Sonja",
        "Huber Gruber Pichler Steiner Moser Wimmer Hölzl Brunner Mayer Hofer Leitner Berger "
        "Fuchs Eder Fischer Schwarz Maier Reiter Winkler Lang Baumgartner Auer Egger Wallner",
    ),
    "gb": _pool(
        "Oliver Amelia Harry Zoë Chloë George Emily Jack Isla Noah Siân William Katherine "
        "Thomas Charlotte James Olivia Henry Grace Daniel Sophie Robert Lucy Michael",
        "Smith Jones Taylor Brown Williams Wilson Evans Thomas Roberts O'Brien Davies Hughes "
        "Walker Wright Green Hall Wood Clarke Jackson Hill Cooper Ward Turner Baker",
    ),
    "fr": _pool(
        "Léa Chloé Hélène François Jérôme Théo Camille Louis Inès Zoé Gaëlle Noël Hugo Manon "
        "Lucas Émilie Nicolas Océane Mathieu Céline Antoine Julie Sébastien Amélie",
        "Martin Bernard Dubois Thomas Robert Richard Petit Durand Lefèvre Moreau Girard Bénard "
        "Faure Laurent Simon Michel Leroy Roux David Bertrand Morel Fournier Mercier Rousseau",
    ),
    "us": _pool(
        "James Mary Michael Jennifer Robert Linda David Sarah Daniel Jessica Kevin Ashley "
        "William Emily Brian Megan Jason Nicole Tyler Rachel Brandon Lauren Justin Katherine",
        "Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Nguyen Patel Kim "
        "Lee Anderson Taylor Thomas Moore Jackson White Harris Clark Lewis Walker Young",
    ),
    "mx": _pool(
        "José María Juan Guadalupe Luis Sofía Andrés Valentina Jesús Ximena Ángel Fernanda "
        "Carlos Mariana Miguel Daniela Javier Gabriela Alejandro Paola Ricardo Lucía Óscar "
        "Verónica",
        "Núñez Hernández García Martínez López González Pérez Rodríguez Sánchez Ramírez Cruz "
        "Flores Gómez Díaz Reyes Morales Jiménez Ruiz Vázquez Castillo Ortiz Mendoza Chávez "
        "Ramos",
    ),
    "pl": _pool(
        "Łukasz Paweł Agnieszka Małgorzata Katarzyna Piotr Wojciech Zofia Michał Józef Anna "
        "Tomasz Magdalena Krzysztof Joanna Marcin Ewa Grzegorz Aleksandra Jakub",
        "Nowak Wiśniewski Wójcik Kowalczyk Kamiński Lewandowski Zieliński Szymański Woźniak "
        "Dąbrowski Kozłowski Jankowski Mazur Krawczyk Piotrowski Grabowski Pawłowski Michalski "
        "Król Wieczorek",
    ),
    "ch": _pool(
        "Luca Noah Mia Elena Reto Ursula Beat Anja Nicolas Laura Marco Sandra Urs Céline "
        "Daniel Nadine Lars Corinne Simon Jasmin",
        "Meier Keller Brunner Baumann Frei Gerber Bühler Zürcher Rüegg Müller Widmer Steiner "
        "Schmid Huber Graf Moser Sutter Kälin Hürlimann Zbinden",
    ),
    "ie": _pool(
        "Seán Siobhán Niamh Aoife Ciarán Pádraig Róisín Conor Saoirse Cian Áine Darragh Orla "
        "Eoin Gráinne Liam Caoimhe Oisín Emma Jack",
        "Murphy Kelly O'Sullivan Walsh Byrne Ryan O'Connor O'Neill Doyle McCarthy Gallagher "
        "Doherty Kennedy Lynch Murray Quinn Moore McLoughlin Brennan Ó'Brien",
    ),
    "tr": _pool(
        "Emre Ayşe Mehmet Elif Can Zeynep Burak Gül Oğuz Şeyma Mert Ebru Kerem Deniz Hülya",
        "Çelik Yılmaz Şahin Öztürk Demir Kaya Aydın Arslan Doğan Koç Kılıç Aslan Polat Güneş",
    ),
    "cn": _pool(
        "娜 伟 敏 静 磊 芳 强 丽 洋 杰", "李 王 张 刘 陈 杨 黄 赵 周 吴", surname_first=True
    ),
    "intl": _pool(
        "Priya Aarav Zoë Fatima Kwame Ana Mateus Yuki Amara Omar Ingrid Lars Dmitri Chiara "
        "Giulia Raj Aisha Tomás Björk Nkechi",
        "Patel Sharma Silva Santos Okafor Haddad Nakamura Novák Dvořák Rossi Bianchi Andersson "
        "Hansen Petrov Mensah Khan Costa Ferreira Jensen Virtanen",
    ),
}
# Romanization of the CJK pool, for account names and mail addresses.
ROMANIZED = {
    "李": "Li",
    "王": "Wang",
    "张": "Zhang",
    "刘": "Liu",
    "陈": "Chen",
    "杨": "Yang",
    "黄": "Huang",
    "赵": "Zhao",
    "周": "Zhou",
    "吴": "Wu",
    "娜": "Na",
    "伟": "Wei",
    "敏": "Min",
    "静": "Jing",
    "磊": "Lei",
    "芳": "Fang",
    "强": "Qiang",
    "丽": "Li",
    "洋": "Yang",
    "杰": "Jie",
}
# Letters that Unicode decomposition does not reduce to ASCII.
ASCII_LETTERS = str.maketrans({"ß": "ss", "ł": "l", "Ł": "L", "ı": "i", "ø": "o", "æ": "ae"})

# ISO code -> (co, company): each country's legal entity.
COUNTRIES = {
    "DE": ("Germany", "Contoso Deutschland GmbH"),
    "AT": ("Austria", "Contoso Austria GmbH"),
    "GB": ("United Kingdom", "Contoso UK Ltd"),
    "FR": ("France", "Contoso France SAS"),
    "US": ("United States", "Contoso Inc."),
    "MX": ("Mexico", "Contoso México S.A. de C.V."),
    "PL": ("Poland", "Contoso Polska Sp. z o.o."),
    "CH": ("Switzerland", "Contoso Schweiz AG"),
    "IE": ("Ireland", "Contoso Health Ireland DAC"),
}


@dataclass(frozen=True, slots=True)
class Site:
    """A workplace: office name (None: the attribute is missing), OU, city and country,
    and which name pools its people come from (pool, weight)."""

    office: str | None
    ou: str
    city: str
    country: str
    names: tuple[tuple[str, int], ...]


def _workplace(office: str, city: str, country: str, mix: str) -> Site:
    """A site whose OU is its city; ``mix`` is "pool:weight ..." for its people's names."""
    names = tuple((pool, int(weight)) for pool, weight in (p.split(":") for p in mix.split()))
    return Site(office, city, city, country, names)


SITES = {
    "munich": _workplace("Munich HQ", "Munich", "DE", "de:78 tr:8 intl:8 cn:3 at:3"),
    "london": _workplace("London Office", "London", "GB", "gb:80 ie:5 intl:15"),
    "paris": _workplace("Paris Office", "Paris", "FR", "fr:85 intl:15"),
    "new-york": _workplace("New York Office", "New York", "US", "us:72 cn:14 mx:8 intl:6"),
    "zurich": _workplace("Zürich Office", "Zürich", "CH", "ch:70 de:15 fr:5 intl:10"),
    "warsaw": _workplace("Warsaw Office", "Warsaw", "PL", "pl:90 intl:10"),
    "linz": _workplace("Plant Linz", "Linz", "AT", "at:80 tr:12 de:8"),
    "monterrey": _workplace("Plant Monterrey", "Monterrey", "MX", "mx:100"),
    "st-mary": _workplace("St. Mary Hospital", "Dublin", "IE", "ie:80 gb:8 intl:12"),
    "north-clinic": _workplace("North Clinic", "Hamburg", "DE", "de:85 tr:10 intl:5"),
    "store-vienna": _workplace("Store 114 Vienna", "Vienna", "AT", "at:85 tr:15"),
    "store-graz": _workplace("Store 207 Graz", "Graz", "AT", "at:90 tr:10"),
    "store-lyon": _workplace("Store 31 Lyon", "Lyon", "FR", "fr:90 intl:10"),
    "store-manchester": _workplace("Store 52 Manchester", "Manchester", "GB", "gb:85 intl:15"),
    "store-krakow": _workplace("Store 88 Kraków", "Kraków", "PL", "pl:100"),
}
REMOTE = "remote"  # a unit "site": each member draws a location from REMOTE_LOCATIONS
REMOTE_LOCATIONS = (
    (Site("Remote", "Remote", "Berlin", "DE", (("de", 1),)), 3),
    (Site("Home Office", "Remote", "Cologne", "DE", (("de", 1),)), 3),
    (Site("Remote - Lyon", "Remote", "Lyon", "FR", (("fr", 1),)), 2),
    (Site("Home Office", "Remote", "Leeds", "GB", (("gb", 1),)), 2),
    (Site("Telework", "Remote", "Bordeaux", "FR", (("fr", 1),)), 1),
    (Site("Remote", "Remote", "Gdańsk", "PL", (("pl", 1),)), 1),
    (Site(None, "Remote", "Salzburg", "AT", (("at", 1),)), 2),
    (Site(None, "Remote", "Manchester", "GB", (("gb", 1),)), 1),
)


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


LEADERS = (
    Leader("ceo", "Chief Executive Officer", "Executive Office", "munich", None, 10),
    Leader("cfo", "Chief Financial Officer", "Finance", "munich", "ceo", 10),
    Leader("cto", "Chief Technology Officer", "Research & Development", "munich", "ceo", 10),
    Leader("cio", "Chief Information Officer", "IT", "munich", "ceo", 10),
    Leader("coo", "Chief Operating Officer", "Operations", "munich", "ceo", 10),
    Leader("cmo", "Chief Medical Officer", "Occupational Health", "munich", "ceo", 10),
    Leader("cro", "Chief Revenue Officer", "Sales", "london", "ceo", 10),
    Leader("chro", "Chief Human Resources Officer", "Human Resources", "munich", "ceo", 10),
    Leader("gc", "General Counsel", "Legal", "munich", "ceo", 9),
    Leader("vp-fin", "Vice President, Finance", "Finance", "munich", "cfo", 9),
    Leader("vp-proc", "VP Procurement", "Procurement", "munich", "cfo", 9),
    Leader("vp-eng", "VP Engineering", "Research & Development", "munich", "cto", 9),
    Leader("vp-data", "VP Data & Analytics", "Data & Analytics", "paris", "cto", 9),
    Leader("vp-it", "VP IT Operations", "IT Operations", "munich", "cio", 9),
    Leader("vp-mfg", "VP Manufacturing", "Manufacturing", "linz", "coo", 9),
    Leader("vp-stores", "Vice President, Stores", "Store Operations", "munich", "coo", 9),
    Leader("vp-clin", "VP Clinical Services", "Occupational Health", "st-mary", "cmo", 9),
    Leader("vp-emea", "VP Sales EMEA", "Sales EMEA", "london", "cro", 9),
    Leader("vp-amer", "VP Sales Americas", "Sales Americas", "new-york", "cro", 9),
    Leader("vp-mkt", "VP Marketing", "Marketing", "paris", "cro", 9),
    Leader("vp-people", "VP People & Culture", "Human Resources", "munich", "chro", 9),
    Leader("d-acct", "Director, Accounting", "Finance", "munich", "vp-fin", 8),
    Leader("d-fpa", "Director, Financial Planning", "Finance", "london", "vp-fin", 8),
    Leader(
        "d-proc",
        "Interim Director, Procurement",
        "Procurement",
        "munich",
        "vp-proc",
        8,
        "contractor",
    ),
    Leader(
        "d-sw", "Director, Software Engineering", "Research & Development", "munich", "vp-eng", 8
    ),
    Leader("d-design", "Director, Product Design", "Product Design", "munich", "vp-eng", 8),
    Leader("d-data", "Director, Analytics", "Data & Analytics", "paris", "vp-data", 8),
    Leader("d-service", "Director, IT Service Management", "IT Service Desk", "munich", "vp-it", 8),
    Leader("d-infra", "Director, Infrastructure", "IT Infrastructure", "munich", "vp-it", 8),
    Leader("d-linz", "Plant Director", "Operations", "linz", "vp-mfg", 8),
    Leader("d-mty", "Plant Director", "Operations", "monterrey", "vp-mfg", 8),
    Leader(
        "d-east", "Regional Director, Stores East", "Store Operations", "munich", "vp-stores", 8
    ),
    Leader(
        "d-west", "Regional Director, Stores West", "Store Operations", "london", "vp-stores", 8
    ),
    Leader("d-hosp", "Hospital Director", "Hospital Administration", "st-mary", "vp-clin", 8),
    Leader("d-clinic", "Clinic Director", "Occupational Health", "north-clinic", "vp-clin", 8),
    Leader("d-nursing", "Director of Nursing", "Nursing", "st-mary", "d-hosp", 8),
    Leader("d-dach", "Sales Director DACH", "Sales DACH", "munich", "vp-emea", 8),
    Leader("d-ukfr", "Sales Director UK & France", "Sales EMEA", "london", "vp-emea", 8),
    Leader("d-na", "Sales Director North America", "Sales Americas", "new-york", "vp-amer", 8),
    Leader("d-hr", "HR Director", "Human Resources", "munich", "vp-people", 8),
)


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
    lead: str | None
    roles: tuple[tuple[str, int], ...]
    share: int
    persona: str
    customer_facing: bool = False
    flags_customer_facing: bool = False  # every member carries customerFacing
    intern_title: str | None = None
    contractors: float = 0.0
    manager_site: str | None = None
    ic_grade: int = 4
    span: int = 10


SOFTWARE = (
    ("Software Engineer", 6),
    ("Senior Software Engineer", 3),
    ("QA Engineer", 2),
    ("DevOps Engineer", 1),
    ("Software Architect", 1),
)
SHARED_SERVICES = (
    ("Accountant", 4),
    ("Accounts Receivable Specialist", 3),
    ("Billing Specialist", 2),
    ("Senior Accountant", 1),
)
SERVICE_DESK = (
    ("Service Desk Technician", 5),
    ("Service Desk Analyst", 3),
    ("Desktop Support Technician", 2),
    ("IT Support Specialist", 2),
)
PRODUCTION = (
    ("CNC Machine Operator", 5),
    ("Machinist", 3),
    ("Assembler", 4),
    ("Welder", 1),
    ("Forklift Driver", 1),
    ("Maintenance Technician", 1),
    ("Quality Inspector", 1),
)
STORE = (
    ("Cashier", 5),
    ("Store Associate", 5),
    ("Stock Clerk", 2),
    ("Greeter", 1),
    ("Visual Merchandiser", 1),
)
FIELD_SALES = (
    ("Account Executive", 4),
    ("Senior Account Executive", 2),
    ("Key Account Manager", 1),
    ("Sales Engineer", 1),
)
MARKETING = (
    ("Marketing Specialist", 3),
    ("Brand Manager", 1),
    ("Communications Specialist", 2),
    ("Marketing Coordinator", 2),
)


def _store(parent: str, site: str) -> Unit:
    return Unit(
        parent,
        site,
        "Stores",
        "Store Manager",
        "Assistant Store Manager",
        STORE,
        50,
        "frontline",
        customer_facing=True,
        ic_grade=3,
        span=12,
    )


def _software(site: str, share: int, intern_title: str | None) -> Unit:
    return Unit(
        "d-sw",
        site,
        "Research & Development",
        "Engineering Manager",
        "Lead Software Engineer",
        SOFTWARE,
        share,
        "engineer",
        intern_title=intern_title,
        contractors=0.1,
        span=8,
    )


UNITS = (
    Unit(
        "ceo",
        "munich",
        "Executive Office",
        None,
        None,
        (("Executive Assistant", 3), ("Office Manager", 1)),
        6,
        "knowledge-worker",
    ),
    Unit(
        "d-acct",
        "munich",
        "Accounting",
        "Accounting Manager",
        "Team Lead, Accounting",
        (
            ("Accountant", 5),
            ("Staff Accountant", 2),
            ("Accounts Payable Clerk", 3),
            ("Payroll Specialist", 1),
        ),
        45,
        "knowledge-worker",
        intern_title="Finance Intern",
        contractors=0.03,
    ),
    Unit(
        "d-acct",
        REMOTE,
        "Finance Shared Services",
        "Shared Services Manager",
        "Team Lead, Shared Services",
        SHARED_SERVICES,
        70,
        "remote-worker",
        manager_site="munich",
    ),
    Unit(
        "d-acct",
        "warsaw",
        "Finance Shared Services",
        "Shared Services Manager",
        "Team Lead, Shared Services",
        SHARED_SERVICES,
        40,
        "knowledge-worker",
    ),
    Unit(
        "d-fpa",
        "london",
        "Financial Planning & Analysis",
        "FP&A Manager",
        None,
        (("Financial Analyst", 3), ("Senior Financial Analyst", 1)),
        14,
        "knowledge-worker",
    ),
    Unit(
        "vp-fin",
        "zurich",
        "Treasury",
        "Treasury Manager",
        None,
        (("Treasury Analyst", 2), ("Cash Manager", 1)),
        8,
        "knowledge-worker",
    ),
    Unit(
        "d-proc",
        "munich",
        "Procurement",
        "Procurement Manager",
        None,
        (("Buyer", 3), ("Senior Buyer", 1), ("Procurement Specialist", 2)),
        16,
        "knowledge-worker",
        contractors=0.1,
    ),
    _software("munich", 120, "Engineering Intern"),
    _software("zurich", 45, "Engineering Intern"),
    _software("new-york", 35, None),
    Unit(
        "d-design",
        "munich",
        "Product Design",
        "Design Engineering Manager",
        "Lead Mechanical Engineer",
        (
            ("Mechanical Engineer", 4),
            ("CAD Engineer", 3),
            ("CAD Designer", 2),
            ("Electrical Engineer", 2),
            ("Test Engineer", 1),
        ),
        55,
        "engineer",
        intern_title="Engineering Intern",
        contractors=0.05,
    ),
    Unit(
        "d-data",
        "paris",
        "Data & Analytics",
        "Analytics Manager",
        "Lead Data Engineer",
        (("Data Scientist", 3), ("Data Engineer", 3), ("Data Analyst", 3), ("BI Developer", 1)),
        40,
        "engineer",
        intern_title="Data Intern",
    ),
    Unit(
        "d-service",
        "munich",
        "IT Service Desk",
        "Service Desk Manager",
        "Service Desk Team Lead",
        SERVICE_DESK,
        35,
        "tech-support",
        intern_title="IT Intern",
    ),
    Unit(
        "d-service",
        "warsaw",
        "IT Service Desk",
        "Service Desk Manager",
        "Service Desk Team Lead",
        SERVICE_DESK,
        40,
        "tech-support",
        contractors=0.1,
    ),
    Unit(
        "d-service",
        "new-york",
        "IT Service Desk",
        "Service Desk Manager",
        None,
        SERVICE_DESK,
        15,
        "tech-support",
    ),
    Unit(
        "d-infra",
        "munich",
        "IT Infrastructure",
        "Infrastructure Manager",
        None,
        (
            ("System Administrator", 3),
            ("Network Administrator", 2),
            ("Cloud Engineer", 2),
            ("Security Analyst", 1),
        ),
        25,
        "tech-support",
        contractors=0.1,
    ),
    Unit(
        "d-linz",
        "linz",
        "Production",
        "Production Manager",
        "Shift Supervisor",
        PRODUCTION,
        200,
        "plant-floor",
        contractors=0.05,
        ic_grade=3,
        span=12,
    ),
    Unit(
        "d-linz",
        "linz",
        "Plant Logistics",
        "Logistics Manager",
        "Team Lead, Logistics",
        (("Warehouse Clerk", 3), ("Junior Planner", 1), ("Material Planner", 2)),
        40,
        "plant-floor",
        ic_grade=3,
    ),
    Unit(
        "d-mty",
        "monterrey",
        "Production",
        "Production Manager",
        "Shift Supervisor",
        PRODUCTION,
        200,
        "plant-floor",
        contractors=0.05,
        ic_grade=3,
        span=12,
    ),
    Unit(
        "d-mty",
        "monterrey",
        "Quality",
        "Quality Manager",
        None,
        (("Quality Inspector", 3), ("Quality Technician", 1)),
        25,
        "plant-floor",
        ic_grade=3,
    ),
    _store("d-east", "store-vienna"),
    _store("d-east", "store-graz"),
    _store("d-east", "store-krakow"),
    _store("d-west", "store-lyon"),
    _store("d-west", "store-manchester"),
    Unit(
        "d-hosp",
        "st-mary",
        "Emergency Medicine",
        "Head of Emergency Medicine",
        None,
        (("Emergency Physician", 3), ("Attending Physician", 2), ("Trauma Surgeon", 1)),
        22,
        "vip",
        customer_facing=True,
        contractors=0.1,
    ),
    Unit(
        "d-nursing",
        "st-mary",
        "Nursing",
        "Nurse Manager",
        "Charge Nurse",
        (("Registered Nurse", 6), ("Licensed Practical Nurse", 2), ("Nurse Practitioner", 1)),
        60,
        "clinician",
        customer_facing=True,
    ),
    Unit(
        "d-hosp",
        "st-mary",
        "Patient Services",
        "Patient Services Manager",
        None,
        (("Receptionist", 2), ("Medical Records Clerk", 2), ("Medical Assistant", 1)),
        14,
        "knowledge-worker",
        customer_facing=True,
    ),
    Unit(
        "d-clinic",
        "north-clinic",
        "Occupational Health",
        "Head of Occupational Medicine",
        None,
        (
            ("Occupational Health Physician", 2),
            ("Occupational Health Nurse", 3),
            ("Physical Therapist", 1),
            ("Radiologist", 1),
            ("Medical Assistant", 2),
        ),
        30,
        "clinician",
        customer_facing=True,
    ),
    Unit(
        "d-dach",
        "munich",
        "Sales DACH",
        "Sales Manager",
        None,
        FIELD_SALES,
        30,
        "field-sales",
        customer_facing=True,
    ),
    Unit(
        "d-ukfr",
        REMOTE,
        "Sales EMEA",
        "Sales Manager",
        None,
        FIELD_SALES,
        35,
        "field-sales",
        customer_facing=True,
        manager_site="london",
    ),
    Unit(
        "d-ukfr",
        "london",
        "Sales EMEA",
        "Sales Manager",
        "Team Lead, Sales",
        FIELD_SALES,
        35,
        "field-sales",
        customer_facing=True,
    ),
    Unit(
        "d-na",
        "new-york",
        "Sales Americas",
        "Sales Manager",
        "Team Lead, Sales",
        FIELD_SALES,
        40,
        "field-sales",
        customer_facing=True,
    ),
    Unit(
        "vp-emea",
        "london",
        "Revenue Operations",
        "Revenue Operations Manager",
        None,
        (("Sales Operations Analyst", 3), ("CRM Administrator", 1)),
        10,
        "knowledge-worker",
        flags_customer_facing=True,
    ),
    Unit(
        "vp-mkt",
        "paris",
        "Marketing",
        "Marketing Manager",
        None,
        MARKETING,
        30,
        "knowledge-worker",
        intern_title="Marketing Intern",
    ),
    Unit(
        "vp-mkt",
        "munich",
        "Marketing",
        "Marketing Manager",
        None,
        MARKETING,
        15,
        "knowledge-worker",
    ),
    Unit(
        "d-hr",
        "munich",
        "Human Resources",
        "HR Manager",
        None,
        (
            ("HR Business Partner", 2),
            ("Recruiter", 2),
            ("HR Generalist", 2),
            ("Payroll Specialist", 1),
        ),
        30,
        "knowledge-worker",
        intern_title="HR Intern",
    ),
    Unit(
        "d-hr",
        REMOTE,
        "Human Resources",
        "Talent Acquisition Manager",
        None,
        (("Recruiter", 3), ("Sourcing Specialist", 1)),
        12,
        "remote-worker",
        manager_site="munich",
    ),
    Unit(
        "gc",
        "munich",
        "Legal",
        "Legal Operations Manager",
        None,
        (("Legal Counsel", 2), ("Paralegal", 1), ("Compliance Officer", 1)),
        12,
        "knowledge-worker",
    ),
)

# Title keyword -> grade, first match wins; mirrors how HR grades titles, so a
# seniorityLevel attribute never contradicts the title next to it.
GRADE_KEYWORDS = (
    ((" vice president", " vp "), 9),
    ((" chief ",), 10),
    ((" director",), 8),
    ((" head of ", " senior manager"), 7),
    ((" manager", " team lead"), 6),
    ((" senior ", " principal ", " staff "), 5),
    ((" junior ", " intern"), 2),
)

SERVICE_ACCOUNTS = (
    ("svc-backup", "Backup jobs (Veeam)"),
    ("svc-veeam-proxy", "Veeam backup proxy"),
    ("svc-sql-prod", "SQL Server production engine"),
    ("svc-sql-reporting", "SSRS reports"),
    ("svc-sharepoint", "SharePoint farm"),
    ("svc-exchange-hybrid", "Exchange hybrid agent"),
    ("svc-adconnect", "Entra Connect sync"),
    ("svc-persona-sync", "persona-sync writer"),
    ("svc-intune-connector", "Intune connector for AD"),
    ("svc-scanner", "Scan to mail"),
    ("svc-print", "Print servers"),
    ("svc-sap-rfc", "SAP RFC user"),
    ("svc-jenkins", "Build agents"),
    ("svc-monitoring", "Monitoring probes"),
    ("svc-splunk-forwarder", "Log forwarding"),
    ("svc-hr-import", "HR feed import"),
    ("svc-badge-system", "Door badge system"),
    ("svc-mes-linz", "MES Plant Linz"),
    ("svc-mes-monterrey", "MES Plant Monterrey"),
    ("svc-pos-stores", "Store tills"),
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One directory entry: its DN and its (name, value) pairs in output order."""

    dn: str
    attributes: tuple[tuple[str, str], ...]

    def value(self, name: str) -> str | None:
        """The first value of ``name`` (case-insensitive), or None."""
        key = name.lower()
        return next((v for n, v in self.attributes if n.lower() == key), None)


@dataclass(eq=False, slots=True)
class _Person:
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
    manager: _Person | str | None = None  # str: a DN that may not exist
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

    @property
    def dn(self) -> str:
        return f"CN={escape_dn_value(self.cn)},OU={escape_dn_value(self.site.ou)},{PEOPLE_DN}"


@dataclass
class _Registry:
    """Names handed out so far: (given, surname) per OU, account names, mailboxes."""

    rng: random.Random
    names: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    accounts: set[str] = field(default_factory=set)
    mailboxes: set[str] = field(default_factory=set)

    def draw(self, site: Site) -> tuple[str, str, NamePool]:
        """A given name and surname no one in the site's OU has yet."""
        taken = self.names.setdefault(site.ou.casefold(), set())
        pools = [name for name, _ in site.names]
        weights = [weight for _, weight in site.names]
        for attempt in range(60):
            pool = NAME_POOLS[self.rng.choices(pools, weights)[0]]
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


def _unique(base: str, taken: set[str], limit: int) -> str:
    """``base`` cut to ``limit`` characters, numbered from 2 if taken; then taken."""
    name, number = base[:limit], 1
    while name in taken:
        number += 1
        name = f"{base[: limit - len(str(number))]}{number}"
    taken.add(name)
    return name


def generate_company(employees: int = 2400, seed: int = 7) -> list[Entry]:
    """The demo company's user entries: ``employees`` people, then the service accounts.

    Raises ValueError below MIN_EMPLOYEES, too few to staff every unit.
    """
    if employees < MIN_EMPLOYEES:
        raise ValueError(f"the demo company needs at least {MIN_EMPLOYEES} employees")
    rng = random.Random(seed)
    registry = _Registry(rng)
    people = _staff(rng, registry, employees)
    _add_quirks(rng, people)
    return [_person_entry(p) for p in people] + [_service_entry(*s) for s in SERVICE_ACCOUNTS]


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


# -- staffing ------------------------------------------------------------------------------


def _staff(rng: random.Random, registry: _Registry, employees: int) -> list[_Person]:
    leaders: dict[str, _Person] = {}
    people: list[_Person] = []
    for leader in LEADERS:
        person = _hire(
            registry,
            SITES[leader.site],
            leader.title,
            leader.department,
            leader.employee_type,
            leader.grade,
            "vip" if leader.grade >= 9 else "knowledge-worker",
            False,
        )
        person.manager = leaders[leader.reports_to] if leader.reports_to else None
        leaders[leader.key] = person
        people.append(person)
    for unit, size in zip(UNITS, _headcounts(employees - len(LEADERS)), strict=True):
        people.extend(_staff_unit(rng, registry, unit, size, leaders[unit.parent]))
    for person in people:
        if isinstance(person.manager, _Person):
            person.manager.reports += 1
    return people


def _headcounts(total: int) -> list[int]:
    """Split ``total`` over the units by share: two each first, the rest by largest
    remainder, so the sum is exact."""
    shares = [unit.share for unit in UNITS]
    rest = total - 2 * len(shares)
    exact = [rest * share / sum(shares) for share in shares]
    sizes = [int(x) for x in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (sizes[i] - exact[i], i))
    for i in by_remainder[: rest - sum(sizes)]:
        sizes[i] += 1
    return [size + 2 for size in sizes]


def _staff_unit(
    rng: random.Random, registry: _Registry, unit: Unit, size: int, parent: _Person
) -> list[_Person]:
    """The unit's manager, then each team lead followed by the team."""
    members: list[_Person] = []
    top = parent
    if unit.manager is not None:
        site = SITES[unit.manager_site or unit.site]
        top = _hire(
            registry,
            site,
            unit.manager,
            unit.department,
            "employee",
            _grade(unit.manager, 6),
            unit.persona,
            unit.customer_facing,
            parent,
        )
        members.append(top)
        size -= 1
    leads = size // (unit.span + 1) if unit.lead is not None else 0
    team_sizes = [(size - leads) // leads + (i < (size - leads) % leads) for i in range(leads)]
    for team_size in team_sizes or [size]:
        boss = top
        if unit.lead is not None and team_sizes:
            boss = _hire(
                registry,
                _site(rng, unit),
                unit.lead,
                unit.department,
                "employee",
                _grade(unit.lead, 5),
                unit.persona,
                unit.customer_facing,
                top,
            )
            members.append(boss)
        members.extend(_member(rng, registry, unit, boss) for _ in range(team_size))
    for person in members:
        person.show_customer_facing = unit.flags_customer_facing
    return members


def _member(rng: random.Random, registry: _Registry, unit: Unit, boss: _Person) -> _Person:
    titles = [title for title, _ in unit.roles]
    title = rng.choices(titles, [weight for _, weight in unit.roles])[0]
    employee_type = "employee"
    if unit.intern_title is not None and rng.random() < INTERN_SHARE:
        employee_type = "intern"
        if rng.random() < 0.6 or _grade(title, 0):  # no "Senior ..." interns
            title = unit.intern_title
    elif rng.random() < unit.contractors:
        employee_type = "contractor"
    grade = 2 if employee_type == "intern" else _grade(title, unit.ic_grade)
    return _hire(
        registry,
        _site(rng, unit),
        title,
        unit.department,
        employee_type,
        grade,
        unit.persona,
        unit.customer_facing,
        boss,
    )


def _site(rng: random.Random, unit: Unit) -> Site:
    if unit.site != REMOTE:
        return SITES[unit.site]
    sites = [site for site, _ in REMOTE_LOCATIONS]
    return rng.choices(sites, [weight for _, weight in REMOTE_LOCATIONS])[0]


def _hire(
    registry: _Registry,
    site: Site,
    title: str,
    department: str,
    employee_type: str,
    grade: int,
    persona: str,
    customer_facing: bool,
    manager: _Person | None = None,
) -> _Person:
    given, surname, pool = registry.draw(site)
    cn = f"{surname}{given}" if pool.surname_first else f"{given} {surname}"
    first = _ascii(given.split()[0]).lower()
    last = _ascii(surname).lower()
    person = _Person(
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
    person.sam = _unique(first[:1] + last, registry.accounts, 20)
    person.mail = _unique(f"{first}.{last}", registry.mailboxes, 64)
    return person


def _grade(title: str, default: int) -> int:
    lowered = f" {title.lower().replace(',', ' ')} "
    for keywords, grade in GRADE_KEYWORDS:
        if any(keyword in lowered for keyword in keywords):
            return grade
    return default


def _ascii(text: str) -> str:
    """Letters and digits of ``text`` in ASCII, for account names and mail addresses."""
    text = "".join(ROMANIZED.get(char, char) for char in text).translate(ASCII_LETTERS)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if char.isascii() and char.isalnum())


# -- quirks of real directories --------------------------------------------------------------


def _add_quirks(rng: random.Random, people: list[_Person]) -> None:
    """Disabled accounts, missing and odd values, special CNs, HR flags, persona values
    already written, and the two deliberate org-chart problems."""
    staff = [p for p in people if p.reports == 0]  # individual contributors
    count = len(people)
    for person in rng.sample(staff, round(DISABLED_SHARE * count)):
        person.disabled = True
    _drop_attributes(rng, people)
    _rename(rng, people)
    _odd_values(rng, staff)
    for person in rng.sample(people, round(SENIORITY_SHARE * count)):
        person.show_grade = True
    flagged = sum(p.show_customer_facing for p in people)
    unflagged = [p for p in people if not p.show_customer_facing]
    for person in rng.sample(unflagged, max(0, round(CUSTOMER_FLAG_SHARE * count) - flagged)):
        person.show_customer_facing = True
    _tag_personas(rng, people)
    _break_org_chart(rng, staff)


def _drop_attributes(rng: random.Random, people: list[_Person]) -> None:
    """Remove a title, department or office until MISSING_SHARE of people lack one."""
    complete = [p for p in people[1:] if p.title and p.department and p.office]
    wanted = round(MISSING_SHARE * len(people)) - (len(people) - 1 - len(complete))
    for person in rng.sample(complete, max(0, wanted)):
        missing = rng.choices(("title", "department", "office"), (2, 1, 2))[0]
        setattr(person, missing, None)


def _rename(rng: random.Random, people: list[_Person]) -> None:
    """CNs that need escaping in a DN: "Last, First", vendor names with '+', a leading
    '#' on leavers, quoted nicknames and one stray trailing space."""
    western = [p for p in people[1:] if " " in p.cn]
    for person in rng.sample(western, round(COMMA_CN_SHARE * len(people))):
        person.cn = person.display_name = f"{person.surname}, {person.given}"
        person.renamed = True
    plain = [p for p in western if not p.renamed]
    contractors = [p for p in plain if p.employee_type == "contractor"]
    vendors = rng.sample(contractors, min(len(VENDORS), len(contractors)))
    for person, vendor in zip(vendors, VENDORS, strict=False):
        person.cn = person.display_name = f"{person.cn} ({vendor})"
        person.renamed = True
    leavers = [p for p in plain if p.disabled and not p.renamed]
    for person in rng.sample(leavers, min(3, len(leavers))):
        person.cn = f"#{person.cn}"
        person.display_name = f"{person.cn} (left)"
        person.renamed = True
    nicknamed = [p for p in plain if p.given in NICKNAMES and not p.renamed]
    for person in rng.sample(nicknamed, min(2, len(nicknamed))):
        person.cn = person.display_name = (
            f'{person.given} "{NICKNAMES[person.given]}" {person.surname}'
        )
        person.renamed = True
    person = rng.choice([p for p in plain if not p.renamed])
    person.cn += " "  # typed with a trailing space; AD keeps it, the DN escapes it


def _odd_values(rng: random.Random, staff: list[_Person]) -> None:
    """Values that only survive a round trip as base64: stray spaces, a placeholder."""
    typed = [p for p in staff if p.title and p.department]
    odd = rng.sample(typed, 7)
    for person in odd[:2]:
        person.title = f"{person.title} "
    for person in odd[2:4]:
        person.department = f" {person.department}"
    for person in odd[4:]:
        person.department = DEPARTMENT_PLACEHOLDER


def _tag_personas(rng: random.Random, people: list[_Person]) -> None:
    """Persona values an earlier run (or an admin) left in the target attribute."""
    enabled = [p for p in people if not p.disabled]
    tagged = rng.sample(enabled, round(TAGGED_SHARE * len(enabled)) + len(FOREIGN_TAGS))
    for person in tagged[len(FOREIGN_TAGS) :]:
        person.persona_tag = person.persona
        if rng.random() < STALE_TAG_SHARE:
            person.persona_tag = rng.choice([p for p in PERSONA_IDS if p != person.persona])
    for person, tag in zip(tagged, FOREIGN_TAGS, strict=False):
        person.persona_tag = tag


def _break_org_chart(rng: random.Random, staff: list[_Person]) -> None:
    """Two people who name each other as manager, and one whose manager was deleted."""
    candidates = [p for p in staff if not p.disabled and isinstance(p.manager, _Person)]
    first, second, orphan = rng.sample(candidates, 3)
    first.manager, second.manager = second, first
    orphan.manager = DANGLING_MANAGER


# -- entries ---------------------------------------------------------------------------------


def _person_entry(person: _Person) -> Entry:
    country, company = COUNTRIES[person.site.country]
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
        ("company", company),
        ("physicalDeliveryOfficeName", person.office),
    ]
    attributes += [(name, value) for name, value in optional if value is not None]
    attributes += [
        ("l", person.site.city),
        ("co", country),
        ("c", person.site.country),
        ("employeeType", person.employee_type),
    ]
    manager = person.manager.dn if isinstance(person.manager, _Person) else person.manager
    if manager is not None:
        attributes.append(("manager", manager))
    attributes.append(("userAccountControl", DISABLED if person.disabled else ENABLED))
    if person.show_grade:
        attributes.append(("seniorityLevel", str(person.grade)))
    if person.show_customer_facing:
        attributes.append(("customerFacing", "TRUE" if person.customer_facing else "FALSE"))
    if person.persona_tag is not None:
        attributes.append((TARGET_ATTRIBUTE, person.persona_tag))
    return Entry(person.dn, tuple(attributes))


def _service_entry(name: str, description: str) -> Entry:
    attributes = [("objectClass", c) for c in USER_CLASSES] + [
        ("cn", name),
        ("description", description),
        ("sAMAccountName", name),
        ("userPrincipalName", f"{name}@{MAIL_DOMAIN}"),
        ("company", COUNTRIES["DE"][1]),
        ("employeeType", "service"),
        ("userAccountControl", SERVICE_FLAGS),
    ]
    return Entry(f"CN={name},{SERVICE_ACCOUNTS_DN}", tuple(attributes))


# -- command line ----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m persona_sync.demo.generate [--employees N] [--seed S] [-o FILE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m persona_sync.demo.generate",
        description="Write the demo company (an AD export) as LDIF.",
    )
    parser.add_argument("--employees", type=int, default=2400, help="people (default 2400)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"LDIF file to write (default {DEFAULT_OUTPUT})",
    )
    args = parser.parse_args(argv)
    try:
        entries = generate_company(args.employees, args.seed)
    except ValueError as error:
        parser.error(str(error))
    data = ldif_bytes(entries)
    try:
        args.output.write_bytes(data)
    except OSError as error:
        parser.exit(1, f"cannot write {args.output}: {error.strerror}\n")
    print(f"wrote {len(entries)} entries ({len(data):,} bytes) to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
