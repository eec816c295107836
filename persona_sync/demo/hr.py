"""The demo company's HR export: the report an HR system (Workday, SuccessFactors) saves as
CSV, joined to the directory by the feed ``hr`` of the demo config.

One row per person HR employs: contractors are not HR's (they come from a vendor system),
nor are service accounts, and people who left (disabled accounts) are gone from the report;
a few new hires are in the directory before HR has entered them, and two people who left are
still in the report although IT deleted their accounts. The grade (``G1`` to ``G10``) is the
person's real seniority, which the directory shows for only one person in ten
(``seniorityLevel``), and for a few it is a step ahead of their title: HR has promoted them,
the directory not yet. The default rules read it first (``hr.grade``). The join is on the work
email (the directory's ``mail``): the demo directory carries no employee numbers.

``hr-export.csv`` next to this module is :func:`hr_export`'s output for the shipped
company; rebuild it with ``scripts/generate_demo_company.py``.
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path

from persona_sync.demo.generate import MAIL_DOMAIN, staff_company
from persona_sync.demo.staffing import Person

DEFAULT_OUTPUT = Path(__file__).with_name("hr-export.csv")
COLUMNS = ("employee_id", "work_email", "grade", "work_arrangement")
NOT_YET_ENTERED_SHARE = 0.01  # new hires HR has not entered yet
PROMOTED_SHARE = 0.02  # promoted in HR; the directory's title says the old job
LEAVERS = (("Elke", "Brandt"), ("Tomasz", "Wrobel"))  # in the report, gone from the directory
ON_SITE = ("Plant", "Store", "Hospital", "Clinic")


def hr_export(employees: int = 2400, seed: int = 7) -> str:
    """The export as CSV text (comma-separated, a header row, CRLF line ends as Excel
    writes them). The same arguments give the same text."""
    _company, people = staff_company(employees, seed)
    rng = random.Random(f"hr-export-{seed}")  # its own generator: the directory stays as is
    employed = [p for p in people if p.employee_type != "contractor" and not p.disabled]
    missing = set(rng.sample(range(len(employed)), round(NOT_YET_ENTERED_SHARE * len(employed))))
    promoted = set(rng.sample(range(len(employed)), round(PROMOTED_SHARE * len(employed))))
    out = io.StringIO()
    writer = csv.writer(out)  # csv's default line end is \r\n, as Excel writes
    writer.writerow(COLUMNS)
    for number, person in enumerate(employed, 10001):
        if number - 10001 in missing:
            continue
        writer.writerow(
            (
                f"E{number}",
                f"{person.mail}@{MAIL_DOMAIN}",
                f"G{min(10, person.grade + 3) if number - 10001 in promoted else person.grade}",
                _arrangement(rng, person),
            )
        )
    for number, (given, surname) in enumerate(LEAVERS, 10001 + len(employed)):
        mail = f"{given.lower()}.{surname.lower()}@{MAIL_DOMAIN}"
        writer.writerow((f"E{number}", mail, f"G{rng.randint(3, 6)}", "onsite"))
    return out.getvalue()


def _arrangement(rng: random.Random, person: Person) -> str:
    if person.site.ou == "Remote":
        return "remote"
    if any(word.casefold() in (person.site.office or "").casefold() for word in ON_SITE):
        return "onsite"
    return rng.choice(("hybrid", "hybrid", "onsite"))
