"""LDAP read and write speed against a real slapd, each figure next to its C-tool floor.

    python bench/ldap_bench.py                    # 100,000 employees (issue 10's targets)
    python bench/ldap_bench.py --repeat 3         # three rounds, ranges printed
    python bench/ldap_bench.py --employees 1000000
    python bench/ldap_bench.py --samba            # also a Samba AD DC (fixed ports: locks)
    python bench/ldap_bench.py --samba-only       # only the DC
    python bench/ldap_bench.py --json             # one JSON document on stdout
    python bench/ldap_bench.py --only plan        # only (a) and (b), the full plan
    python bench/ldap_bench.py --only plan --profile   # the plan under cProfile, top 30

Set-up (not timed): the demo company is generated at the requested size, and the default
rules decide every persona once on that LDIF (a file-directory plan). The people are then
bulk-loaded into a slapd of our own (``slapadd -q``, ``index entryCSN eq``) with the decided
persona already in ``personaName`` for everyone but 10,000 of those whose persona changes,
so a full plan against slapd has exactly 10,000 changes. Every round, in one process tree:

  (a) ``persona-sync plan`` through the CLI (a child process) vs ``ldapsearch -E
      pr=500/noprompt`` of the same attributes, same base, filter and bind;
  (b) the plan's peak memory: the larger of the child's VmHWM (read as it exits) and the
      peak of its process tree's summed Pss, sampled every 10 ms (a full plan's forked
      evaluation worker shares most pages with it; Pss counts each page once);
  (c) ``persona-sync apply --force`` of that plan (10,000 compare-and-swap modifies) vs
      ``ldapmodify`` of 10,000 modifies of the same attribute on the same entries (they put
      the old values back, so every round starts from the same directory);
  (d) ``persona-sync plan --delta`` after 100 entries changed (when the CLI has the
      option; a first delta plan, not timed, makes the cursor) vs the full plan of (a).
      The slapd runs slapo-syncprov with a session log (the mode the README recommends
      for deltas: a syncrepl refresh with a delete phase); ``--no-syncprov`` measures the
      entryCSN mode instead (changes by ``(entryCSN>=X)``, deletions by a sweep), and
      ``--no-sessionlog`` syncprov without a session log (a present phase). Printed
      twice: the CLI's wall time (the verdict) and the time inside the plan, from after
      the imports to the exit (config, rules, connection, read, plan, output); next to
      them its floor, a new interpreter that imports only the design card's libraries
      every directory command needs (pydantic, ldap3, PyYAML, structlog, click);
  (d') the same in one resident process: the second cycle of ``plan --delta --every 4s``
      (the interpreter and the modules loaded once, as ``sync --delta --every`` runs a
      schedule), timed by its own ``cycle_finished`` log line, vs the full plan of (a).

Both clients use the same transport: ldap:// (plaintext opt-in) by default, or LDAPS with
the suite's test CA (``--ldaps``). Times are wall-clock seconds; the children's CPU seconds
are printed alongside, because the machine may be shared. Targets (issue 10): (a) <= 3x,
(b) <= 300 MB (1 GiB at 1,000,000 employees), (c) <= 1.2x, (d) < 1 s and < 5% of (a). With
``--repeat`` the verdict is on the median round; the range is printed.

``--samba`` adds a Samba AD DC (tests/servers/samba.py, ports 389/636, taken under the flock
``/tmp/persona-samba.lock`` that the test suite uses) with ``--samba-employees`` users (the
DC takes about 400 adds/s): the full plan vs ``ldapsearch`` and the apply vs
``ldapmodify``, over LDAPS, with the same 1.2x/3x targets ("the server's own rate").
"""

from __future__ import annotations

import argparse
import base64
import compileall
import fcntl
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
# persona-sync children run this tree's code, not what the interpreter's site-packages
# point at (an editable install of another worktree, say)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))

from persona_sync.demo import generate  # noqa: E402
from persona_sync.directory.ldif_write import format_record  # noqa: E402
from tests.servers.slapd import PERSONA_OID_ARC, SlapdServer  # noqa: E402

APPLY_CHANGES = 10_000
DELTA_CHANGES = 100
SAMBA_LOCK = Path("/tmp/persona-samba.lock")
TARGETS = {"plan": 3.0, "memory_mb": 300.0, "apply": 1.2, "delta_s": 1.0, "delta_share": 0.05}
BIG_MEMORY_MB = 1024.0  # the 1,000,000-employee run's limit

# Attributes the default rules read that the standard OpenLDAP schemas lack (AD has them);
# the bench's slapd gets them in an auxiliary class, so every fact has its real value.
BENCH_SCHEMA = "".join(
    f"""
attributetype ( {PERSONA_OID_ARC}.3.{number} NAME '{name}'
    EQUALITY caseIgnoreMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{{256}}
    SINGLE-VALUE )
"""
    for number, name in enumerate(
        ("department", "company", "userAccountControl", "seniorityLevel", "customerFacing"), 1
    )
) + (
    f"\nobjectclass ( {PERSONA_OID_ARC}.4.1 NAME 'personaBenchPerson'\n"
    "    SUP top AUXILIARY\n"
    "    MAY ( department $ company $ userAccountControl $ seniorityLevel $ customerFacing ) )\n"
)
# Generated attribute -> slapd attribute (None: dropped; AD-only and read by no rule).
ATTRIBUTE_MAP: dict[str, str | None] = {
    "cn": "cn",
    "sn": "sn",
    "givenname": "givenName",
    "displayname": "displayName",
    "samaccountname": "uid",
    "userprincipalname": None,
    "mail": "mail",
    "title": "title",
    "department": "department",
    "company": "company",
    "physicaldeliveryofficename": "physicalDeliveryOfficeName",
    "l": "l",
    "co": None,
    "c": None,
    "employeetype": "employeeType",
    "manager": "manager",
    "useraccountcontrol": "userAccountControl",
    "senioritylevel": "seniorityLevel",
    "customerfacing": "customerFacing",
    "objectclass": None,
    "description": "description",
}
TARGET = "personaName"
SESSIONLOG = 200_000  # deletes and modifies syncprov remembers (>= the writes between runs)
# What a plan imports before it starts working; the timed delta child imports these first,
# so "inside the plan" starts after them.
PLAN_IMPORTS = (
    "persona_sync.cli.main",
    "persona_sync.cli.sync_cmds",
    "persona_sync.workflow",
    "persona_sync.session",
    "persona_sync.directory.ldap",
    "persona_sync.render",
)

CONFIG = """\
rules: {rules}
directory:
  type: ldap
  preset: {preset}
  urls: ['{url}']
{tls}  bind: {{user: '{user}'}}
  base_dns: ['{base}']
{extra}targets:
  persona: {target}
safety:
  max_change_percent: 100
state_dir: state
"""
FILE_CONFIG = """\
rules: {rules}
directory:
  type: file
  path: company.ldif
targets:
  persona: msDS-cloudExtensionAttribute1
state_dir: state
"""


# --- running the tools ----------------------------------------------------------------


@dataclass(frozen=True)
class Timed:
    """One child process: wall seconds, CPU seconds (user + system, its worker's
    included), peak RSS in MB (of persona-sync only; 0 for the C tools), and the peak of
    its process tree's proportional set size in MB (the worker's own pages added; 0 when
    not sampled)."""

    wall: float
    cpu: float
    peak_mb: float
    stdout: str
    stderr: str
    code: int
    tree_mb: float = 0.0

    @property
    def memory_mb(self) -> float:
        """(b)'s figure: the larger of the two peaks."""
        return max(self.peak_mb, self.tree_mb)


class TreeSampler(threading.Thread):
    """Samples the summed Pss of a process and its descendants every 10 ms (a full plan
    forks a worker that shares most of its pages: Pss counts each page once overall)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.01):
            self.peak_kb = max(self.peak_kb, _tree_pss_kb(self.pid))


def _tree_pss_kb(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        process = todo.pop()
        try:
            with open(f"/proc/{process}/smaps_rollup") as rollup:
                total += next(int(line.split()[1]) for line in rollup if line.startswith("Pss:"))
            with open(f"/proc/{process}/task/{process}/children") as children:
                todo.extend(int(child) for child in children.read().split())
        except (OSError, StopIteration):  # gone, or a zombie with no mappings left
            continue
    return total


# The child's own peak is VmHWM, read as it exits. Not ru_maxrss: a child spawned by a
# process holding 500 MB reports 500 MB there, even after exec (Linux carries the parent's
# high-water mark over), and this process holds the generated company.
_CHILD = """
import atexit, runpy, sys
peak_file = sys.argv[1]
def report():
    with open("/proc/self/status") as status, open(peak_file, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(report)
profile = sys.argv[2]
sys.argv = ["persona-sync", *sys.argv[3:]]
if profile:
    import cProfile
    profiler = cProfile.Profile()
    atexit.register(lambda: profiler.dump_stats(profile))  # runs before report: LIFO
    profiler.enable()
runpy.run_module("persona_sync", run_name="__main__", alter_sys=True)
"""
PROFILE_TOP = 30


def timed(
    command: Sequence[str],
    cwd: Path,
    env: dict[str, str],
    ok: Sequence[int] = (0,),
    peak_file: Path | None = None,
    keep_output: bool = True,
) -> Timed:
    """Run ``command`` to its end, its output into a file; its CPU time comes from wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=out, stderr=err)
        sampler = TreeSampler(child.pid) if peak_file is not None else None
        if sampler is not None:
            sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        if sampler is not None:
            sampler.done.set()
            sampler.join()
        child.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = Timed(
            wall,
            usage.ru_utime + usage.ru_stime,
            int(peak_file.read_text()) / 1024 if peak_file is not None else 0.0,
            out.read().decode("utf-8", "replace") if keep_output else "",
            err.read().decode("utf-8", "replace"),
            code,
            sampler.peak_kb / 1024 if sampler is not None else 0.0,
        )
    if code not in ok:
        shown = " ".join(_masked(command))
        sys.exit(f"{shown} exited {code}:\n{result.stderr[-3000:]}{result.stdout[-2000:]}")
    return result


def _masked(command: Sequence[str]) -> list[str]:
    return ["***" if i > 0 and command[i - 1] == "-w" else part for i, part in enumerate(command)]


# The same child, timing itself from after the plan's imports to its exit (into argv[2]).
_TIMED_CHILD = """
import atexit, importlib, runpy, sys, time
peak_file, inside_file, modules = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
for module in modules:
    importlib.import_module(module)
started = time.perf_counter()
def report():
    with open(inside_file, "w") as out:
        out.write(repr(time.perf_counter() - started))
    with open("/proc/self/status") as status, open(peak_file, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(report)
sys.argv = ["persona-sync", *sys.argv[4:]]
runpy.run_module("persona_sync", run_name="__main__", alter_sys=True)
"""


def persona_sync(folder: Path, env: dict[str, str], *args: str, profile: str = "") -> Timed:
    """``persona-sync ARGS`` in a child of its own (exit 0 or 2), with its peak memory;
    under cProfile (stats dumped to the file ``profile``) when given."""
    peak = folder / "peak.txt"
    return timed(
        [sys.executable, "-c", _CHILD, str(peak), profile, *args],
        folder,
        env,
        ok=(0, 2),
        peak_file=peak,
    )


def persona_sync_timed(folder: Path, env: dict[str, str], *args: str) -> tuple[Timed, float]:
    """``persona_sync`` that also returns the seconds spent after the plan's imports."""
    peak, inside = folder / "peak.txt", folder / "inside.txt"
    done = timed(
        [sys.executable, "-c", _TIMED_CHILD, str(peak), str(inside), ",".join(PLAN_IMPORTS),
         *args],
        folder, env, ok=(0, 2), peak_file=peak,
    )  # fmt: skip
    return done, float(inside.read_text())


def print_profile(path: Path) -> None:
    """The top entries of a cProfile dump, by own time and by cumulative time."""
    import pstats

    for order in ("tottime", "cumulative"):
        print(f"profile of the plan, by {order}:", flush=True)
        pstats.Stats(str(path), stream=sys.stdout).sort_stats(order).print_stats(PROFILE_TOP)


def cli_has_delta() -> bool:
    done = subprocess.run(
        [sys.executable, "-m", "persona_sync", "plan", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    return "--delta" in done.stdout


# --- the workload -----------------------------------------------------------------------


@dataclass
class Workload:
    """The company as loaded into the server, and the changes the bench expects."""

    ldif: bytes
    people: int
    stale: list[tuple[str, str | None, str]]  # (dn, value left in the server, persona due)
    retitle: list[tuple[str, str]]  # (dn, title) of the entries the delta run changes
    decide_seconds: float = 0.0


def decide_personas(entries: list[generate.Entry], folder: Path) -> tuple[dict[str, str], float]:
    """The default rules' decision for every employee whose persona differs from the one
    the generator tagged: a file-directory plan over the generated LDIF (not timed)."""
    work = folder / "decide"
    work.mkdir()
    (work / "company.ldif").write_bytes(generate.ldif_bytes(entries))
    (work / "persona-sync.yaml").write_text(FILE_CONFIG.format(rules=REPO / "rules"))
    done = persona_sync(work, dict(os.environ), "plan", "-q", "-o", "plan.json")
    plan = json.loads((work / "plan.json").read_text())
    return {c["dn"]: c["new"] for c in plan["changes"]}, done.wall


def slapd_workload(entries: list[generate.Entry], due: dict[str, str], people_dn: str) -> Workload:
    """The generated people under ``people_dn`` of slapd, with personas pre-set so exactly
    APPLY_CHANGES (or all, if fewer) are still to change."""
    source_suffix = "," + generate.PEOPLE_DN
    target_suffix = "," + people_dn

    def moved(dn: str) -> str:
        if dn.endswith(source_suffix):
            return dn[: -len(source_suffix)] + target_suffix
        return dn

    changing = [e.dn for e in entries if e.dn in due]
    count = min(APPLY_CHANGES, len(changing))
    left = {changing[i * len(changing) // count] for i in range(count)} if count else set()
    units: dict[str, None] = {}
    records: list[bytes] = []
    stale: list[tuple[str, str | None, str]] = []
    people = 0
    titled: list[tuple[str, str]] = []
    for entry in entries:
        if not entry.dn.endswith(source_suffix):
            continue  # service accounts live elsewhere
        people += 1
        dn = moved(entry.dn)
        unit = _parent(dn)
        units.setdefault(unit, None)
        tag = entry.value(generate.TARGET_ATTRIBUTE)
        value = tag
        if entry.dn in due:
            if entry.dn in left:
                stale.append((dn, tag, due[entry.dn]))
            else:
                value = due[entry.dn]
        attributes: list[tuple[str, str]] = [
            ("objectClass", "inetOrgPerson"),
            ("objectClass", "personaHolder"),
            ("objectClass", "personaBenchPerson"),
        ]
        for name, raw in entry.attributes:
            mapped = ATTRIBUTE_MAP.get(name.lower(), name)
            if mapped is None or name == generate.TARGET_ATTRIBUTE:
                continue
            attributes.append((mapped, moved(raw) if mapped == "manager" else raw))
        if value:
            attributes.append((TARGET, value))
        title = entry.value("title")
        if title:
            titled.append((dn, title))
        records.append(format_record(dn, attributes))
    ous = [
        format_record(unit, [("objectClass", "organizationalUnit"), ("ou", _rdn_value(unit))])
        for unit in units
        if unit.lower() != people_dn.lower()
    ]
    step = len(titled) / min(DELTA_CHANGES, len(titled) or 1)
    retitle = [titled[int(i * step)] for i in range(min(DELTA_CHANGES, len(titled)))]
    return Workload(b"".join(ous) + b"".join(records), people, stale, retitle)


def _parent(dn: str) -> str:
    """The parent of ``dn``: everything after the first unescaped comma."""
    index = 0
    while index < len(dn):
        if dn[index] == "\\":
            index += 2
            continue
        if dn[index] == ",":
            return dn[index + 1 :]
        index += 1
    return ""


def _rdn_value(dn: str) -> str:
    first = dn[: len(dn) - len(_parent(dn)) - 1] if _parent(dn) else dn
    return first.split("=", 1)[1].replace("\\", "")


def ldif_value(name: str, value: str) -> str:
    if value.isascii() and value == value.strip() and not value.startswith((":", "<")):
        return f"{name}: {value}\n"
    return f"{name}:: {base64.b64encode(value.encode()).decode()}\n"


def swap_ldif(rows: Sequence[tuple[str, str | None, str | None]], attribute: str) -> str:
    """Modify records that turn each entry's ``old`` into ``new``, as persona-sync does it
    (delete the old value and add the new one in one modify; a plain add when empty)."""
    parts = []
    for dn, old, new in rows:
        record = ldif_value("dn", dn) + "changetype: modify\n"
        if old:
            record += f"delete: {attribute}\n" + ldif_value(attribute, old) + "-\n"
        if new:
            record += f"add: {attribute}\n" + ldif_value(attribute, new) + "-\n"
        parts.append(record)
    return "\n".join(parts) + "\n"


def retitle_ldif(rows: Sequence[tuple[str, str]], suffix: str) -> str:
    parts = []
    for dn, title in rows:
        new = title + suffix
        parts.append(
            ldif_value("dn", dn) + "changetype: modify\nreplace: title\n" + ldif_value("title", new)
        )
    return "\n".join(parts) + "\n"


# --- the server ---------------------------------------------------------------------------


class BenchSlapd(SlapdServer):
    """The suite's slapd, plus the bench's attributes and an entryCSN index; syncprov with
    a session log of SESSIONLOG (``sessionlog`` 0: without), or neither."""

    def __init__(self, employees: int, syncprov: bool = True, sessionlog: bool = True) -> None:
        super().__init__(
            start_timeout=60,
            syncprov=syncprov,
            sessionlog=SESSIONLOG if syncprov and sessionlog else 0,
        )
        schema = self.workdir / "persona.schema"
        schema.write_text(schema.read_text() + BENCH_SCHEMA)
        config = self.config_file.read_text()
        # The suite's 1 GiB map holds about 500,000 of these entries; the map is sparse.
        size = max(2**30, employees * 8192)
        config = re.sub(r"^maxsize\s+\d+$", f"maxsize     {size}", config, flags=re.MULTILINE)
        if not re.search(r"^index\s+entryCSN\b", config, re.MULTILINE):
            config = config.replace(
                "index       uid eq\n", "index       uid eq\nindex       entryCSN eq\n"
            )
        self.config_file.write_text(config)


# --- one target -------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    target: str
    rounds: list[dict[str, float]] = field(default_factory=list)
    meets: Callable[[dict[str, float]], bool] = lambda _: True
    describe: Callable[[dict[str, float]], str] = lambda _: ""
    note: str = ""

    def verdict(self) -> str:
        if not self.rounds:
            return "not available yet"
        return "PASS" if self.meets(self.median()) else "MISS"

    def median(self) -> dict[str, float]:
        keys = self.rounds[0].keys()
        return {k: statistics.median(r[k] for r in self.rounds) for k in keys}

    def ranges(self) -> dict[str, tuple[float, float]]:
        keys = self.rounds[0].keys()
        return {k: (min(r[k] for r in self.rounds), max(r[k] for r in self.rounds)) for k in keys}


def ratio_figure(name: str, target: float, ours: str, floor: str) -> Figure:
    return Figure(
        name,
        f"<= {target:g}x",
        meets=lambda m: m["ratio"] <= target,
        describe=lambda m: f"{m['ours']:.2f} s vs {m['floor']:.2f} s: {m['ratio']:.2f}x",
        note=f"{ours} vs {floor}",
    )


# --- the rounds ---------------------------------------------------------------------------


@dataclass
class Target:
    """One directory under test: how to reach it with persona-sync and with the C tools."""

    label: str
    url: str
    bind_dn: str
    password: str
    base: str
    search_filter: str
    attribute: str
    tool_env: dict[str, str]
    folder: Path
    env: dict[str, str]
    admin: tuple[str, str] = ("", "")  # who makes the delta round's changes (an HR feed)


def decoder() -> str:
    """Which decoder the plan's reads use: the compiled one (built at install with a C
    compiler) or the pure-Python walks; the figures differ by about a third."""
    from persona_sync.directory.ldap_stream import DECODER

    if DECODER == "compiled":
        return "compiled (persona_sync/directory/_ber.c, persona_sync/_dn.c)"
    return "pure Python (no C compiler at install: reinstall with gcc and python3-dev)"


def read_attribute_names(folder: Path) -> list[str]:
    """The attributes a plan reads (what ldapsearch must fetch to be the same read)."""
    from persona_sync.directory.ldap import PRESETS
    from persona_sync.plan import read_attributes
    from persona_sync.session import open_session

    session = open_session(folder / "persona-sync.yaml")
    spec = session.config.spec.directory
    preset = PRESETS[spec.preset]  # type: ignore[union-attr]
    return list(
        dict.fromkeys(
            [
                *read_attributes(session.engine, session.config),
                (spec.id_attribute or preset.id_attribute).lower(),  # type: ignore[union-attr]
                (spec.stable_id_attribute or preset.stable_id_attribute).lower(),  # type: ignore[union-attr]
            ]
        )
    )


def ldap_tool(target: Target, tool: str, *args: str, admin: bool = False) -> list[str]:
    user, password = target.admin if admin else (target.bind_dn, target.password)
    return [tool, "-x", "-H", target.url, "-D", user, "-w", password, *args]


def full_read(
    target: Target, attributes: Sequence[str], profile: bool = False
) -> tuple[Timed, Timed, int]:
    """(a)/(b): the plan and the ldapsearch of the same read; returns the plan's changes.
    ``profile``: the plan runs under cProfile and its top entries are printed."""
    floor = timed(
        ldap_tool(
            target, "ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-E", "pr=500/noprompt",
            "-b", target.base, target.search_filter, *attributes,
        ),
        target.folder,
        target.tool_env,
        keep_output=False,
    )  # fmt: skip
    stats = target.folder / "plan.prof"
    ours = persona_sync(
        target.folder, target.env, "plan", "-q", "-o", "plan.json",
        profile=str(stats) if profile else "",
    )  # fmt: skip
    if profile:
        print_profile(stats)
    changes = json.loads((target.folder / "plan.json").read_text())["summary"]["changes"]
    return ours, floor, changes


def write_round(target: Target, undo: str) -> tuple[Timed, Timed, dict[str, int]]:
    """(c): apply plan.json, then ldapmodify the same entries back (same number of
    modifies of the same attribute, the reverse values), so the next round starts alike."""
    ours = persona_sync(target.folder, target.env, "apply", "-q", "--force", "plan.json")
    runs = persona_sync(target.folder, target.env, "runs", "--format", "json")
    last = json.loads(runs.stdout)[-1]
    counts = {k: int(last.get(k) or 0) for k in ("applied", "unchanged", "conflicts", "failed")}
    (target.folder / "undo.ldif").write_text(undo, encoding="utf-8")
    floor = timed(
        ldap_tool(target, "ldapmodify", "-f", "undo.ldif"), target.folder, target.tool_env
    )
    return ours, floor, counts


def delta_round(target: Target, change: str, restore: str) -> tuple[Timed, float, str]:
    """(d): a delta plan (it moves the cursor past this round's apply and undo), 100
    entries changed, the timed delta plan; then the 100 are put back. Returns the timed run,
    the seconds inside it after its imports, and how its read went (the plan's own words)."""
    persona_sync(target.folder, target.env, "plan", "--delta", "-q", "-o", "delta0.json")
    (target.folder / "retitle.ldif").write_text(change, encoding="utf-8")
    timed(
        ldap_tool(target, "ldapmodify", "-f", "retitle.ldif", admin=True),
        target.folder,
        target.tool_env,
    )
    ours, inside = persona_sync_timed(
        target.folder, target.env, "plan", "--delta", "-o", "delta.json"
    )
    (target.folder / "restore.ldif").write_text(restore, encoding="utf-8")
    timed(
        ldap_tool(target, "ldapmodify", "-f", "restore.ldif", admin=True),
        target.folder,
        target.tool_env,
    )
    said = "; ".join(
        line.removeprefix("read: ") for line in ours.stderr.splitlines() if line.startswith("read:")
    )
    return ours, inside, said


RESIDENT_EVERY = "4s"  # the schedule's interval: room for a 100-entry ldapmodify between
#: What a one-shot command cannot start without: the interpreter and the design card's
#: libraries that every directory command imports, and nothing of ours ((d)'s floor).
LIBRARIES = ("pydantic", "ldap3", "yaml", "structlog", "click")


def libraries_floor(folder: Path) -> Timed:
    """(d)'s floor: a new interpreter that imports LIBRARIES and exits."""
    return timed(
        [sys.executable, "-c", "import " + ", ".join(LIBRARIES)], folder, dict(os.environ)
    )


def resident_delta_round(target: Target, change: str, restore: str) -> tuple[float, str]:
    """(d) in one resident process: ``plan --delta --every`` runs three cycles; after the
    first (it moves the cursor) 100 entries are changed, the second is timed (its own
    ``cycle_finished`` log line: config, rules, connection, read, plan, output), after it
    they are put back and the third reads that. Returns the seconds and what the read said."""
    (target.folder / "retitle.ldif").write_text(change, encoding="utf-8")
    (target.folder / "restore.ldif").write_text(restore, encoding="utf-8")
    child = subprocess.Popen(
        [sys.executable, "-m", "persona_sync", "-v", "--log-format", "json", "plan", "--delta",
         "-q", "-o", "delta-every.json", "--every", RESIDENT_EVERY, "--cycles", "3"],
        cwd=target.folder, env=target.env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stderr is not None
    seconds, said, read = 0.0, "", {}
    try:
        for line in child.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                raise SystemExit(f"resident delta: the plan said: {line.strip()}") from None
            if event.get("event") == "snapshot_refreshed":
                read = event
            if event.get("event") != "cycle_finished":
                continue
            if event["cycle"] == 1:
                timed(ldap_tool(target, "ldapmodify", "-f", "retitle.ldif", admin=True),
                      target.folder, target.tool_env)  # fmt: skip
            elif event["cycle"] == 2:
                seconds = float(event["seconds"])
                said = (
                    f"{read.get('mode')} read: {read.get('entries_read')} entries read, "
                    f"{read.get('changed')} changed; {read.get('re_evaluated')} re-evaluated"
                )
                timed(ldap_tool(target, "ldapmodify", "-f", "restore.ldif", admin=True),
                      target.folder, target.tool_env)  # fmt: skip
    finally:
        code = child.wait(timeout=120)
    if code not in (0, 2) or not seconds:
        raise SystemExit(f"resident delta: plan --every ended with exit code {code}")
    return seconds, said


# --- output -----------------------------------------------------------------------------


class Report:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.facts: dict[str, Any] = {}

    def line(self, text: str) -> None:
        if not self.as_json:
            print(text, flush=True)

    def round_line(self, label: str, text: str) -> None:
        self.line(f"  {label:<22}{text}")


def summarize(report: Report, figures: Sequence[Figure], prefix: str = "") -> None:
    report.line("")
    rounds = max(len(f.rounds) for f in figures)
    counted = f"median of {rounds} rounds" if rounds > 1 else "1 round"
    report.line(f"{prefix}targets ({counted})")
    for figure in figures:
        if not figure.rounds:
            report.line(f"  {figure.name:<30} {figure.target:<18} not available yet")
            report.facts.setdefault("figures", {})[prefix + figure.name] = None
            continue
        median = figure.median()
        spread = ""
        if len(figure.rounds) > 1:
            kept = ("ratio", "ours", "mb", "inside")
            shown = {k: v for k, v in figure.ranges().items() if k in kept}
            spread = "  range " + ", ".join(
                f"{k} {lo:.2f}-{hi:.2f}" for k, (lo, hi) in shown.items()
            )
        report.line(
            f"  {figure.name:<30} {figure.target:<18} {figure.describe(median):<40} "
            f"{figure.verdict()}{spread}"
        )
        report.facts.setdefault("figures", {})[prefix + figure.name] = {
            "target": figure.target,
            "verdict": figure.verdict(),
            "median": median,
            "rounds": figure.rounds,
            "note": figure.note,
        }


# --- slapd --------------------------------------------------------------------------------


def bench_slapd(options: argparse.Namespace, report: Report, folder: Path) -> list[Figure]:
    started = time.perf_counter()
    entries = generate.generate_company(options.employees, options.seed)
    generated = time.perf_counter() - started
    due, decide_seconds = decide_personas(entries, folder)
    server = BenchSlapd(options.employees, not options.no_syncprov, not options.no_sessionlog)
    tracking = (
        "entryCSN (no syncprov: changes by entryCSN, deletions by an entryUUID sweep)"
        if options.no_syncprov
        else f"syncprov, session log {SESSIONLOG:,} (syncrepl refresh, delete phase)"
        if not options.no_sessionlog
        else "syncprov without a session log (syncrepl refresh, present phase)"
    )
    workload = slapd_workload(entries, due, server.people_dn)
    del entries
    server.add_ldif(workload.ldif.decode("utf-8"))
    started = time.perf_counter()
    with server:
        loaded = time.perf_counter() - started
        report.line(
            f"slapd                 {workload.people:,} employees, "
            f"{len(workload.ldif) / 1e6:.1f} MB LDIF; generated in {generated:.1f} s, "
            f"decided in {decide_seconds:.1f} s, "
            f"slapadd -q + start {loaded:.1f} s (not timed)"
        )
        report.line(f"change tracking       {tracking}")
        report.facts["slapd"] = {
            "employees": workload.people,
            "load_seconds": loaded,
            "change_tracking": tracking,
        }
        work = folder / "slapd"
        work.mkdir()
        url = server.ldaps_url if options.ldaps else server.url
        tls = f"  ca_file: {server.ca_file}\n" if options.ldaps else "  allow_plaintext: true\n"
        (work / "persona-sync.yaml").write_text(
            CONFIG.format(
                rules=REPO / "rules", preset="openldap", url=url, tls=tls,
                user=server.service_dn, base=server.people_dn,
                extra="  auxiliary_class: personaHolder\n", target=TARGET,
            )
        )  # fmt: skip
        env = {**os.environ, "PERSONA_SYNC_BIND_PASSWORD": server.service_password}
        target = Target(
            "slapd", url, server.service_dn, server.service_password, server.people_dn,
            "(objectClass=inetOrgPerson)", TARGET, server.client_env, work, env,
            (server.admin_dn, server.admin_password),
        )  # fmt: skip
        attributes = read_attribute_names(work)
        report.line(
            f"transport             {'LDAPS (test CA)' if options.ldaps else 'ldap:// (plaintext)'}"
            f"; the read fetches {len(attributes)} attributes: {', '.join(attributes)}"
        )
        report.line(f"decoder               {decoder()}")
        memory_limit = BIG_MEMORY_MB if options.employees >= 1_000_000 else TARGETS["memory_mb"]
        plan = ratio_figure("(a) full plan vs ldapsearch", TARGETS["plan"], "plan", "ldapsearch")
        memory = Figure(
            "(b) plan peak memory",
            f"<= {memory_limit:g} MB",
            meets=lambda m: m["mb"] <= memory_limit,
            describe=lambda m: f"{m['mb']:.0f} MB",
        )
        apply = ratio_figure(
            f"(c) apply {len(workload.stale):,} vs ldapmodify",
            TARGETS["apply"],
            "apply",
            "ldapmodify",
        )
        delta = Figure(
            f"(d) delta plan after {len(workload.retitle)}",
            f"< {TARGETS['delta_s']:g} s and < {TARGETS['delta_share']:.0%}",
            meets=lambda m: m["ours"] < TARGETS["delta_s"] and m["share"] < TARGETS["delta_share"],
            describe=lambda m: (
                f"{m['ours']:.2f} s, {m['share']:.1%} of the full plan (inside {m['inside']:.2f} s;"
                f" floor {m['floor']:.2f} s, {m['floor_share']:.1%})"
            ),
            note="the CLI's wall time (interpreter and imports included); 'inside' is the "
            "time after the imports; 'floor': a new interpreter importing only "
            + ", ".join(LIBRARIES)
            + " (no code of ours), in the same round: a one-shot command's 5% is reachable "
            "only while the floor is below it; tracking: " + tracking,
        )
        resident = Figure(
            f"(d') delta after {len(workload.retitle)}, resident",
            f"< {TARGETS['delta_s']:g} s and < {TARGETS['delta_share']:.0%}",
            meets=lambda m: m["ours"] < TARGETS["delta_s"] and m["share"] < TARGETS["delta_share"],
            describe=lambda m: f"{m['ours']:.2f} s, {m['share']:.1%} of the full plan",
            note="a cycle of `plan --delta --every " + RESIDENT_EVERY + "` (one process: "
            "interpreter and modules loaded once; config, rules and connection each cycle)",
        )
        undo = swap_ldif([(dn, new, old) for dn, old, new in workload.stale], TARGET)
        has_delta = cli_has_delta()
        for number in range(1, options.repeat + 1):
            report.line(f"round {number}")
            ours, floor, changes = full_read(target, attributes, options.profile)
            plan.rounds.append(
                {"ours": ours.wall, "floor": floor.wall, "ratio": ours.wall / floor.wall,
                 "ours_cpu": ours.cpu, "floor_cpu": floor.cpu}
            )  # fmt: skip
            memory.rounds.append({"mb": ours.memory_mb})
            report.round_line(
                "plan", f"{ours.wall:6.2f} s (cpu {ours.cpu:5.2f} s)  peak {ours.peak_mb:5.0f} MB "
                f"(with its worker {ours.tree_mb:5.0f} MB)  {changes:,} changes"
            )  # fmt: skip
            report.round_line(
                "ldapsearch", f"{floor.wall:6.2f} s (cpu {floor.cpu:5.2f} s)"
            )  # fmt: skip
            if changes != len(workload.stale):
                report.line(
                    f"  note: the plan has {changes:,} changes, the bench expected "
                    f"{len(workload.stale):,} (the slapd copy decides differently)"
                )
            if options.only == "plan":
                continue
            ours, floor, counts = write_round(target, undo)
            apply.rounds.append(
                {"ours": ours.wall, "floor": floor.wall, "ratio": ours.wall / floor.wall,
                 "ours_cpu": ours.cpu, "floor_cpu": floor.cpu}
            )  # fmt: skip
            report.round_line(
                "apply --force", f"{ours.wall:6.2f} s (cpu {ours.cpu:5.2f} s)  peak "
                f"{ours.peak_mb:5.0f} MB  " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
            )  # fmt: skip
            report.round_line("ldapmodify", f"{floor.wall:6.2f} s (cpu {floor.cpu:5.2f} s)")
            if has_delta:
                change = retitle_ldif(workload.retitle, f" (round {number})")
                restore = retitle_ldif(workload.retitle, "")
                ours_delta, inside, said = delta_round(target, change, restore)
                floor = libraries_floor(target.folder)
                full = plan.rounds[-1]["ours"]
                delta.rounds.append(
                    {"ours": ours_delta.wall, "full": full, "share": ours_delta.wall / full,
                     "inside": inside, "ours_cpu": ours_delta.cpu, "floor": floor.wall,
                     "floor_share": floor.wall / full}
                )  # fmt: skip
                report.round_line(
                    "plan --delta", f"{ours_delta.wall:6.2f} s (cpu {ours_delta.cpu:5.2f} s)  "
                    "CLI wall time, interpreter and imports included"
                )  # fmt: skip
                report.round_line(
                    "  libraries floor", f"{floor.wall:6.2f} s  a new interpreter importing "
                    + ", ".join(LIBRARIES) + " and nothing of ours"
                )  # fmt: skip
                report.round_line(
                    "  inside the plan", f"{inside:6.2f} s  after the imports: config, rules, "
                    "connection, read, plan, output"
                    + (f"\n  {'':<22}said: {said}" if said else "")
                )  # fmt: skip
                seconds, said = resident_delta_round(target, change, restore)
                resident.rounds.append({"ours": seconds, "full": full, "share": seconds / full})
                report.round_line(
                    "plan --delta --every", f"{seconds:6.2f} s  its second cycle, in one "
                    f"resident process\n  {'':<22}said: {said}"
                )  # fmt: skip
            else:
                report.round_line("plan --delta", "not available yet (the CLI has no --delta)")
    if options.only == "plan":
        return [plan, memory]
    return [plan, memory, apply, delta, resident]


# --- Samba --------------------------------------------------------------------------------


@contextmanager
def samba_lock() -> Iterator[None]:
    """The test suite's lock around the fixed-port DC (flock /tmp/persona-samba.lock)."""
    with open(SAMBA_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def bench_samba(options: argparse.Namespace, report: Report, folder: Path) -> list[Figure]:
    from tests.servers.samba import PERSONA_ATTRIBUTE, AdUser, SambaDC

    count = options.samba_employees
    changes = min(options.samba_changes, count)
    entries = [
        e for e in generate.generate_company(max(count, generate.MIN_EMPLOYEES), options.seed)
        if e.dn.endswith("," + generate.PEOPLE_DN)
    ][:count]  # fmt: skip
    wanted = ("title", "department", "physicalDeliveryOfficeName", "employeeType", "company")
    report.line("")
    report.line(f"samba                 waiting for {SAMBA_LOCK} ...")
    with samba_lock(), SambaDC() as dc:
        ou = dc.create_ou("Bench")
        users = []
        for number, entry in enumerate(entries):
            values = {n: v for n, v in entry.attributes if n in wanted}
            users.append(AdUser(f"bench{number:06d}", values, None, ou))
        started = time.perf_counter()
        dns = dc.add_users(users)
        loaded = time.perf_counter() - started
        # Every user starts enabled (the rules skip disabled accounts) with no persona.
        dc.modify_ldif(
            "".join(
                f"dn: {dn}\nchangetype: modify\nreplace: userAccountControl\n"
                "userAccountControl: 544\n-\n\n"
                for dn in dns
            )
        )
        report.line(
            f"samba                 {count:,} users loaded with ldapadd in {loaded:.1f} s "
            "(not timed); LDAPS with the test CA"
        )
        work = folder / "samba"
        work.mkdir()
        (work / "persona-sync.yaml").write_text(
            CONFIG.format(
                rules=REPO / "rules", preset="ad", url=dc.url, tls=f"  ca_file: {dc.ca_file}\n",
                user=dc.service_user, base=ou, extra="", target=PERSONA_ATTRIBUTE,
            )
        )  # fmt: skip
        env = {**os.environ, "PERSONA_SYNC_BIND_PASSWORD": dc.service_password}
        target = Target(
            "samba", dc.url, dc.service_user, dc.service_password, ou,
            "(&(objectCategory=person)(objectClass=user))", PERSONA_ATTRIBUTE,
            dc.client_env, work, env,
        )  # fmt: skip
        attributes = read_attribute_names(work)
        plan = ratio_figure("(a) full plan vs ldapsearch", TARGETS["plan"], "plan", "ldapsearch")
        apply = ratio_figure(
            f"(c) apply {changes:,} vs ldapmodify", TARGETS["apply"], "apply", "ldapmodify"
        )
        for number in range(1, options.repeat + 1):
            report.line(f"samba round {number}")
            ours, floor, planned = full_read(target, attributes)
            plan.rounds.append(
                {"ours": ours.wall, "floor": floor.wall, "ratio": ours.wall / floor.wall}
            )
            report.round_line("plan", f"{ours.wall:6.2f} s  {planned:,} changes")
            report.round_line("ldapsearch", f"{floor.wall:6.2f} s")
            plan_data = json.loads((work / "plan.json").read_text())
            rows = [(c["dn"], c["new"], c["old"]) for c in plan_data["changes"]]
            if len(rows) > changes:
                # Keep the apply to `changes` writes: make the others already right.
                dc.modify_ldif(
                    swap_ldif([(d, o, n) for d, n, o in rows[changes:]], PERSONA_ATTRIBUTE)
                )
                persona_sync(work, env, "plan", "-q", "-o", "plan.json")
                plan_data = json.loads((work / "plan.json").read_text())
                rows = [(c["dn"], c["new"], c["old"]) for c in plan_data["changes"]]
            undo = swap_ldif(rows, PERSONA_ATTRIBUTE)
            ours, floor, counts = write_round(target, undo)
            apply.rounds.append(
                {"ours": ours.wall, "floor": floor.wall, "ratio": ours.wall / floor.wall}
            )
            report.round_line(
                "apply --force",
                f"{ours.wall:6.2f} s  " + ", ".join(f"{k} {v:,}" for k, v in counts.items()),
            )
            report.round_line("ldapmodify", f"{floor.wall:6.2f} s  ({len(rows):,} modifies)")
    return [plan, apply]


# --- main ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1, metavar="K", help="rounds (default 1)")
    parser.add_argument("--ldaps", action="store_true", help="LDAPS with the test CA for both")
    parser.add_argument("--samba", action="store_true", help="also bench a Samba AD DC")
    parser.add_argument("--samba-only", action="store_true", help="only the Samba AD DC")
    parser.add_argument("--samba-employees", type=int, default=2000)
    parser.add_argument("--samba-changes", type=int, default=1000)
    parser.add_argument(
        "--no-syncprov",
        action="store_true",
        help="slapd without syncprov: (d) reads by entryCSN and sweeps for deletions",
    )
    parser.add_argument(
        "--no-sessionlog",
        action="store_true",
        help="syncprov without a session log: (d)'s refresh has a present phase",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--only", choices=["plan"], help="only the full plan's rounds ((a) and (b), slapd)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="run the full plan under cProfile; print its top"
    )
    options = parser.parse_args()
    report = Report(options.json)
    # An installed package has its bytecode; a checkout under PYTHONDONTWRITEBYTECODE has
    # none, and every child would compile some 70 modules again (about 0.2 s each run).
    compileall.compile_dir(REPO / "persona_sync", quiet=1)
    report.facts["options"] = {k: v for k, v in vars(options).items() if k != "json"}
    report.line(
        f"ldap_bench            {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} at start"
    )
    with tempfile.TemporaryDirectory(prefix="persona-ldap-bench-") as temp:
        folder = Path(temp)
        if not options.samba_only:
            summarize(report, bench_slapd(options, report, folder), "")
        if options.samba or options.samba_only:
            summarize(report, bench_samba(options, report, folder), "samba ")
    report.facts["load_average_end"] = os.getloadavg()
    if options.json:
        print(json.dumps(report.facts, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
