"""Issue 10's figure (d) on its own: ``plan --delta`` after 100 changed entries, repeated.

    python bench/delta_bench.py                       # 100,000 employees, 3 delta rounds
    python bench/delta_bench.py --rounds 5 --cache /tmp/delta-cache
    python bench/delta_bench.py --profile             # the last round's child under cProfile
    python bench/delta_bench.py --importtime          # -X importtime of the last round's child

The set-up of ``ldap_bench.py`` (the demo company, the default rules' decisions, slapd with
syncprov and a session log, 10,000 pending changes), one full plan (not timed: it makes the
snapshot), then rounds of :func:`ldap_bench.delta_round`: an untimed delta plan that moves
the cursor, 100 titles changed, the timed ``plan --delta -o delta.json`` (its CLI wall time
and the time after the imports of ``ldap_bench.PLAN_IMPORTS``), the titles put back.

``--cache DIR`` keeps the generated and decided workload (about 30 s to make at 100,000)
in DIR for the next run; delete it when the rules or the generator change. The figure to
quote is ``ldap_bench.py``'s, whose rounds also time the full plan (a) it is a share of;
this script is for iterating on the delta path. Run it under ``flock
/tmp/persona-bench.lock`` like every bench.
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
from pathlib import Path

import ldap_bench as lb

# The timed child of ldap_bench, optionally under cProfile from after the imports.
_PROFILED_CHILD = """
import atexit, cProfile, importlib, runpy, sys
stats, modules = sys.argv[1], sys.argv[2].split(",")
for module in modules:
    importlib.import_module(module)
profiler = cProfile.Profile()
atexit.register(lambda: profiler.dump_stats(stats))
sys.argv = ["persona-sync", *sys.argv[3:]]
profiler.enable()
runpy.run_module("persona_sync", run_name="__main__", alter_sys=True)
"""


def workload(options: argparse.Namespace, folder: Path) -> lb.Workload:
    """The slapd workload, from the cache when there is one."""
    cached = (
        Path(options.cache) / f"workload-{options.employees}-{options.seed}.pickle"
        if options.cache
        else None
    )
    if cached is not None and cached.exists():
        loaded: lb.Workload = pickle.loads(cached.read_bytes())
        return loaded
    entries = lb.generate.generate_company(options.employees, options.seed)
    due, _ = lb.decide_personas(entries, folder)
    made = lb.slapd_workload(entries, due, lb.BenchSlapd.people_dn)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(pickle.dumps(made))
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache", help="keep the generated workload in this folder")
    parser.add_argument("--profile", action="store_true", help="profile the last round's child")
    parser.add_argument("--importtime", action="store_true", help="-X importtime of it")
    options = parser.parse_args()
    lb.compileall.compile_dir(lb.REPO / "persona_sync", quiet=1)
    with tempfile.TemporaryDirectory(prefix="persona-delta-bench-") as temp:
        folder = Path(temp)
        work = workload(options, folder)
        server = lb.BenchSlapd(options.employees)
        server.add_ldif(work.ldif.decode("utf-8"))
        with server:
            target = make_target(server, folder)
            full = lb.persona_sync(target.folder, target.env, "plan", "-q", "-o", "plan.json")
            print(f"full plan (snapshot made)  {full.wall:6.2f} s (cpu {full.cpu:5.2f} s)")
            walls, insides = [], []
            for number in range(1, options.rounds + 1):
                change = lb.retitle_ldif(work.retitle, f" (round {number})")
                restore = lb.retitle_ldif(work.retitle, "")
                ours, inside, said = lb.delta_round(target, change, restore)
                walls.append(ours.wall)
                insides.append(inside)
                print(
                    f"round {number}  plan --delta {ours.wall:6.2f} s (cpu {ours.cpu:5.2f} s)"
                    f"  inside {inside:6.2f} s  peak {ours.peak_mb:4.0f} MB  said: {said}"
                )
            print(
                f"median        plan --delta {statistics.median(walls):6.2f} s"
                f"         inside {statistics.median(insides):6.2f} s"
            )
            if options.profile or options.importtime:
                extra(options, target, work, folder)
    return 0


def make_target(server: lb.BenchSlapd, folder: Path) -> lb.Target:
    work = folder / "slapd"
    work.mkdir()
    (work / "persona-sync.yaml").write_text(
        lb.CONFIG.format(
            rules=lb.REPO / "rules", preset="openldap", url=server.url,
            tls="  allow_plaintext: true\n", user=server.service_dn, base=server.people_dn,
            extra="  auxiliary_class: personaHolder\n", target=lb.TARGET,
        )
    )  # fmt: skip
    env = {**os.environ, "PERSONA_SYNC_BIND_PASSWORD": server.service_password}
    return lb.Target(
        "slapd", server.url, server.service_dn, server.service_password, server.people_dn,
        "(objectClass=inetOrgPerson)", lb.TARGET, server.client_env, work, env,
        (server.admin_dn, server.admin_password),
    )  # fmt: skip


def extra(options: argparse.Namespace, target: lb.Target, work: lb.Workload, folder: Path) -> None:
    """One more delta round, its child under cProfile or -X importtime."""
    lb.persona_sync(target.folder, target.env, "plan", "--delta", "-q", "-o", "delta0.json")
    change = lb.retitle_ldif(work.retitle, " (profiled)")
    (target.folder / "retitle.ldif").write_text(change, encoding="utf-8")
    lb.timed(
        lb.ldap_tool(target, "ldapmodify", "-f", "retitle.ldif", admin=True),
        target.folder,
        target.tool_env,
    )
    args = ["plan", "--delta", "-o", "delta.json"]
    if options.profile:
        stats = folder / "delta.prof"
        child = [sys.executable, "-c", _PROFILED_CHILD, str(stats), ",".join(lb.PLAN_IMPORTS)]
        lb.timed([*child, *args], target.folder, target.env, ok=(0, 2))
        lb.print_profile(stats)
    else:
        done = lb.timed(
            [sys.executable, "-X", "importtime", "-m", "persona_sync", *args],
            target.folder,
            target.env,
            ok=(0, 2),
        )
        lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
        rows = sorted(lines[1:], key=lambda line: -int(line.split("|")[1]))
        print("\n".join(rows[:60]))


if __name__ == "__main__":
    sys.exit(main())
