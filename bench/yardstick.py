"""The yardstick: the default catalog (rules/*.yaml) written by hand, for speed.

What a developer would write instead of persona-sync: one function with the same regex
tables (case-insensitive), the same precedence, ``unless`` clauses, scope and org-chart
formula, memoising what it derives from a title, a department, a site and each flag (one
dict lookup per attribute value). Like most hand-written code it takes the first attribute
that is not empty (``get("title") or get("jobTitle")``) and treats a whitespace-only value
as no value inside the memoised functions; the engine also skips a whitespace-only first
attribute for the next one, which no generated employee has (the bench would report it as
a mismatch). bench/engine_bench.py
times it against the engine and checks that both give every employee the same persona and
rule. It mirrors the catalog as shipped: change rules/ and this must change with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from persona_sync.employee import Employee
from persona_sync.rules.orgchart import Position

Assignment = tuple[str | None, str | None]  # (persona, rule); (None, None) when out of scope
Decide = Callable[[Employee, Position | None], Assignment]
OUT_OF_SCOPE: Assignment = (None, None)

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
# facts.yaml, seniority from title keywords, then the org chart
SENIORITY_TABLE = (
    (re.compile(r"\b(vice president|vp|svp|evp)\b", _I), 9.0),
    (re.compile(r"\b(chief|ceo|cfo|cio|cto|coo|president)\b", _I), 10.0),
    (re.compile(r"\bdirector\b", _I), 8.0),
    (re.compile(r"\b(head of|senior manager)\b", _I), 7.0),
    (re.compile(r"\b(manager|team lead)\b", _I), 6.0),
    (re.compile(r"\b(senior|sr\.?|principal|staff)\b", _I), 5.0),
    (re.compile(r"\b(junior|jr\.?|intern|trainee|apprentice)\b", _I), 2.0),
)
ORG_TOP, ORG_PER_LEVEL, ORG_FLOOR, ORG_MANAGER_BONUS = 10.0, 1.5, 2.0, 1.0
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


# facts.yaml, seniority's first source: the HR feed's grade (hr.grade), capture (\d+)
GRADE_DIGITS = re.compile(r"(\d+)", _I)


def _grade(raw: str) -> float | None:
    match = GRADE_DIGITS.search(raw)
    return None if match is None else _number(match.group(1))


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


def _org_chart(position: Position | None) -> float | None:
    if position is None or position.depth is None:
        return None
    value = max(ORG_FLOOR, ORG_TOP - ORG_PER_LEVEL * position.depth)
    if position.direct_reports >= 1:
        value += ORG_MANAGER_BONUS
    return min(value, ORG_TOP)


def hand_written_decider() -> Decide:  # noqa: C901 - one branch per rule, as written by hand
    """The default catalog as plain Python: one function, memoised per attribute value."""
    titles: dict[str | None, tuple[str, float | None, bool | None, bool, bool]] = {}
    departments: dict[str | None, tuple[bool | None, bool, bool]] = {}
    sites: dict[str | None, tuple[str, bool]] = {}
    employee_types: dict[str | None, tuple[bool, bool, bool | None]] = {}
    controls: dict[str, bool | None] = {}
    grades: dict[str, float | None] = {}
    levels: dict[str, float | None] = {}
    facing: dict[str, bool | None] = {}

    def decide(employee: Employee, position: Position | None) -> Assignment:
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
        raw = get("hr.grade")
        if raw:
            if raw in grades:
                seniority = grades[raw]
            else:
                seniority = grades[raw] = _grade(raw)
        raw = get("senioritylevel") if seniority is None else None
        if raw:
            if raw in levels:
                seniority = levels[raw]
            else:
                seniority = levels[raw] = _number(raw)
        if seniority is None:
            seniority = title_seniority
            if seniority is None:
                seniority = _org_chart(position)
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
