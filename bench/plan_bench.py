"""Plan over a large LDIF directory: time and peak memory, first run and no-change run.

    python bench/plan_bench.py                  # 100,000 employees (the issue's target)
    python bench/plan_bench.py --employees 20000

Generates the demo company at the requested size (seeded, not timed), then, each in a
fresh process so peak memory is the run's own:
  1. `persona-sync plan` on the untouched file (many changes),
  2. `persona-sync apply --force` of that plan (timed, for reference),
  3. `persona-sync plan` again (no changes: must be no slower than the first).
Targets (issue 3): plan under 10 s and under 500 MB on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CONFIG = """\
rules: {rules}
directory:
  type: file
  path: company.ldif
targets:
  persona: msDS-cloudExtensionAttribute1
state_dir: state
"""


_CHILD = """
import atexit, resource, runpy, sys
peak_file = sys.argv[1]
def report():
    with open(peak_file, "w") as out:
        out.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
atexit.register(report)
sys.argv = ["persona-sync", *sys.argv[2:]]
runpy.run_module("persona_sync", run_name="__main__")
"""


def run(folder: Path, *args: str) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run persona-sync in a fresh process; return wall seconds and its own peak RSS (MB)."""
    peak_file = folder / "peak.txt"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(peak_file), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PERSONA_SYNC_LOG_FORMAT": "json"},
    )
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 2):
        sys.exit(f"persona-sync {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed, int(peak_file.read_text()) / 1024, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--employees", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()
    sys.path.insert(0, str(REPO))
    # persona-sync children run this tree's code, not what the interpreter's site-packages
    # point at (an editable install of another worktree, say)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, (str(REPO), os.environ.get("PYTHONPATH")))
    )
    from persona_sync.demo.generate import generate_company, ldif_bytes

    with tempfile.TemporaryDirectory(prefix="persona-plan-bench-") as temp:
        folder = Path(temp)
        started = time.perf_counter()
        data = ldif_bytes(generate_company(options.employees, options.seed))
        (folder / "company.ldif").write_bytes(data)
        (folder / "persona-sync.yaml").write_text(CONFIG.format(rules=REPO / "rules"))
        print(
            f"directory            {options.employees:,} employees, {len(data) / 1e6:.1f} MB LDIF "
            f"(generated in {time.perf_counter() - started:.1f} s, not timed)"
        )
        first, first_mb, done = run(folder, "plan", "-q", "-o", "plan.json")
        changes = json.loads((folder / "plan.json").read_text())["summary"]["changes"]
        print(
            f"plan (first run)     {first:6.2f} s   peak {first_mb:5.0f} MB   {changes:,} changes"
        )
        applied, applied_mb, _ = run(folder, "apply", "-q", "--force", "plan.json")
        print(f"apply --force        {applied:6.2f} s   peak {applied_mb:5.0f} MB   (reference)")
        second, second_mb, done = run(folder, "plan", "-q", "--format", "json")
        changes = json.loads(done.stdout)["summary"]["changes"]
        print(
            f"plan (no changes)    {second:6.2f} s   peak {second_mb:5.0f} MB   {changes:,} changes"
        )
        ok = first < 10 and second < 10 and max(first_mb, second_mb) < 500 and changes == 0
        verdict = "met" if ok else "NOT met"
        print(
            f"targets              < 10 s and < 500 MB per plan, second run no slower: {verdict}"
            f" (second/first = {second / first:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
