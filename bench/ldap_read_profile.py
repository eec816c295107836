"""LDAP full read: ours against ldapsearch, same server, same attributes, one run.

    python bench/ldap_read_profile.py                     # 100,000 employees, 3 rounds
    python bench/ldap_read_profile.py --employees 1000000 --rounds 1
    python bench/ldap_read_profile.py --profile 30        # cProfile of our read, top 30
    python bench/ldap_read_profile.py --no-plan           # the read only

Loads N inetOrgPerson entries into a throwaway slapd (tests/servers/slapd.py, `slapadd -q`;
not timed), then per round, each in a fresh process so peak memory is its own:
  1. `ldapsearch -E pr=<page>/noprompt` of the employees with the same attributes
     (stdout read and dropped), over LDAPS as the service account: the floor;
  2. `LdapDirectory.read` of the same, the entries consumed one by one and dropped
     (a streaming reader holds one page at a time, whatever N);
  3. `persona-sync plan` with the default rules against the same server (the whole
     plan: read, org chart, engine, plan file).
Prints wall seconds of each, the ratio to ldapsearch, CPU seconds and peak RSS of
ours (VmHWM; GNU time's for the plan). The machine may be shared: read ratios within one
round, and the range over rounds. Issue 10's targets: a full plan <= 3x ldapsearch, <= 300 MB at
100,000; < 1 GiB at 1,000,000.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.servers.clients import ldap_tool_env  # noqa: E402
from tests.servers.slapd import SlapdServer  # noqa: E402

ATTRIBUTES = [
    "title",
    "departmentNumber",
    "physicalDeliveryOfficeName",
    "employeeType",
    "manager",
    "personaName",
    "cn",
    "uid",
    "entryUUID",
]
TITLES = [
    "Software Engineer",
    "Registered Nurse",
    "Cashier",
    "Vice President, Sales",
    "Accountant",
    "Chief Executive Officer",
    "CNC Machine Operator",
    "Store Manager",
]
SITES = ["Munich HQ", "North Clinic", "Plant 3", "Store 112", "Remote"]
DEPARTMENTS = ["Engineering", "Nursing", "Retail", "Finance", "Manufacturing"]


def employees_ldif(people_dn: str, count: int, seed: int = 1) -> str:
    """N inetOrgPerson entries: a manager chain of ten per team, some attributes missing."""
    rng = random.Random(seed)
    parts = []
    for i in range(count):
        lines = [
            f"dn: uid=u{i:07d},{people_dn}",
            "objectClass: inetOrgPerson",
            "objectClass: personaHolder",
            f"uid: u{i:07d}",
            f"cn: Person {i}",
            f"sn: P{i}",
            f"title: {rng.choice(TITLES)}",
            f"departmentNumber: {rng.choice(DEPARTMENTS)}",
        ]
        if rng.random() > 0.06:
            lines.append(f"physicalDeliveryOfficeName: {rng.choice(SITES)}")
        if rng.random() > 0.5:
            lines.append("employeeType: employee")
        if i % 10:
            lines.append(f"manager: uid=u{i - i % 10:07d},{people_dn}")
        if rng.random() > 0.7:
            lines.append("personaName: engineer")
        parts.append("\n".join(lines) + "\n\n")
    return "".join(parts)


_OURS = """
import cProfile, json, logging, pstats, sys, time
sys.path.insert(0, {repo!r})
import structlog
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory.ldap import LdapDirectory
from persona_sync.secrets import Secret
settings = json.loads(sys.argv[1])
spec = LdapDirectoryConfig.model_validate(settings["spec"])
directory = LdapDirectory(spec, Secret(settings["password"], "bench"))
profile = cProfile.Profile() if settings["profile"] else None
start, cpu = time.perf_counter(), time.process_time()
if profile:
    profile.enable()
count = 0
with directory:
    for employee in directory.read(settings["attributes"]):
        count += 1
if profile:
    profile.disable()
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
if profile:
    pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(settings["profile"])
# VmHWM is this process's own peak; ru_maxrss would carry the parent's over fork+exec.
with open("/proc/self/status") as status:
    peak = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
print(json.dumps({{"seconds": seconds, "cpu": cpu, "count": count, "peak_mb": peak}}))
"""


def ldapsearch(server: SlapdServer, page: int) -> tuple[float, int]:
    command = [
        "ldapsearch", "-LLL", "-x", "-H", server.ldaps_url, "-D", server.service_dn,
        "-w", server.service_password, "-b", server.people_dn, "-E", f"pr={page}/noprompt",
        "(objectClass=inetOrgPerson)", *ATTRIBUTES,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(
        command, env=ldap_tool_env(server.ca_file), capture_output=True, check=True
    )
    seconds = time.perf_counter() - start
    return seconds, done.stdout.count(b"\ndn: ") + done.stdout.startswith(b"dn: ")


PLAN_CONFIG = """\
rules: {rules}
directory:
  type: ldap
  preset: openldap
  urls: [{url}]
  ca_file: {ca_file}
  bind: {{user: '{user}'}}
  base_dns: ['{base}']
  page_size: {page}
targets:
  persona: personaName
state_dir: state
"""


def plan(server: SlapdServer, page: int, folder: Path) -> tuple[float, float, int]:
    """`persona-sync plan` in a fresh process: wall seconds, peak MB, changes."""
    (folder / "persona-sync.yaml").write_text(
        PLAN_CONFIG.format(
            rules=REPO / "rules",
            url=server.ldaps_url,
            ca_file=server.ca_file,
            user=server.service_dn,
            base=server.people_dn,
            page=page,
        )
    )
    env = {**os.environ, "PERSONA_SYNC_BIND_PASSWORD": server.service_password}
    start = time.perf_counter()
    # GNU time prints the peak RSS (KB) last on stderr; the CLI may leave by os._exit,
    # so an atexit hook in the child would not run.
    done = subprocess.run(
        [
            "/usr/bin/time",
            "-f",
            "%M",
            sys.executable,
            "-m",
            "persona_sync",
            "plan",
            "-q",
            "-o",
            "plan.json",
        ],  # fmt: skip
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 2):
        raise SystemExit(f"persona-sync plan failed ({done.returncode}):\n{done.stderr}")
    changes = json.loads((folder / "plan.json").read_text())["summary"]["changes"]
    return seconds, int(done.stderr.split()[-1]) / 1024, int(changes)


def ours(server: SlapdServer, page: int, profile: int) -> dict[str, Any]:
    settings = {
        "spec": {
            "type": "ldap",
            "preset": "openldap",
            "urls": [server.ldaps_url],
            "ca_file": str(server.ca_file),
            "bind": {"user": server.service_dn},
            "base_dns": [server.people_dn],
            "page_size": page,
        },
        "password": server.service_password,
        "attributes": ATTRIBUTES,
        "profile": profile,
    }
    done = subprocess.run(
        [sys.executable, "-c", _OURS.format(repo=str(REPO)), json.dumps(settings)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    if profile:
        print(done.stderr, file=sys.stderr)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--page", type=int, default=500)
    parser.add_argument("--profile", type=int, default=0, metavar="LINES")
    parser.add_argument("--no-plan", action="store_true", help="time the read only")
    args = parser.parse_args()
    server = SlapdServer()
    # The test server's database may grow to 1 GiB: about 1,000,000 of these entries.
    config = server.config_file.read_text()
    server.config_file.write_text(config.replace("maxsize     1073741824", "maxsize 8589934592"))
    try:
        started = time.perf_counter()
        server.add_ldif(employees_ldif(server.people_dn, args.employees))
        server.start()
        print(
            f"loaded {args.employees:,} employees, {len(ATTRIBUTES)} attributes read, "
            f"page {args.page} ({time.perf_counter() - started:.1f} s, not timed)"
        )
        with tempfile.TemporaryDirectory(prefix="persona-ldap-bench-") as temp:
            for round_number in range(1, args.rounds + 1):
                floor, found = ldapsearch(server, args.page)
                mine = ours(server, args.page, args.profile)
                if found != args.employees or mine["count"] != args.employees:
                    raise SystemExit(f"counts differ: ldapsearch {found}, ours {mine['count']}")
                line = (
                    f"round {round_number}: ldapsearch {floor:.2f} s | read {mine['seconds']:.2f} s"
                    f" = {mine['seconds'] / floor:.1f}x (cpu {mine['cpu']:.2f} s, "
                    f"peak {mine['peak_mb']:.0f} MB)"
                )
                if not args.no_plan:
                    seconds, peak, changes = plan(server, args.page, Path(temp))
                    line += (
                        f" | plan {seconds:.2f} s = {seconds / floor:.1f}x "
                        f"(peak {peak:.0f} MB, {changes:,} changes)"
                    )
                print(line, flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
