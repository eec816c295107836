"""The README's first command: the bundled demo, run twice through the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_runs_then_finds_nothing_to_change(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "persona-sync"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "persona_sync"]
    first = subprocess.run([*command, "demo", "--dir", "demo"], cwd=tmp_path, capture_output=True,
                           text=True, check=False)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0] == ("plan: 2115 changes for 2115 employees (2352 in scope, 68 out of "
                        "scope, 237 unchanged, 3 foreign values left alone, 2 org-chart "
                        "problems (see the log))")
    assert lines[1] == ("personas (persona): plant-floor 611, knowledge-worker 404, engineer "
                        "374, frontline 337, field-sales 184, tech-support 162, clinician 116, "
                        "remote-worker 113, vip 51")
    # the HR export is joined: contractors and a few new hires have no row, two rows are
    # of people whose accounts are gone
    assert lines[2] == ("feed hr (hr-export.csv): 2271 rows; 83 employees in scope without "
                        "a row (ahernandez2, ahuber, akrause, akrol, amcloughlin, ...); 2 rows "
                        "matching no employee (elke.brandt@contoso.example at line 2271, "
                        "tomasz.wrobel@contoso.example at line 2272)")
    assert lines[4].startswith("run ")
    assert ": 2115 applied, 0 already set, 0 conflicts, 0 failed; journal " in lines[4]
    assert "HR export: demo/hr-export.csv" in lines
    second = subprocess.run([*command, "demo", "--dir", "demo"], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr
    assert "no changes: the directory already matches the rules" in second.stdout
    plan = json.loads((tmp_path / "demo" / "plan.json").read_text())
    assert plan["changes"] == []
    # a promotion HR knows and the directory's title does not: the grade makes a VIP
    explained = subprocess.run([*command, "explain", "anovak"], cwd=tmp_path / "demo",
                               capture_output=True, text=True, check=False)
    assert explained.returncode == 0, explained.stderr
    assert ("  seniority           = 9                        <- feed hr, hr-export.csv:71, "
            "column grade via capture /(\\d+)/ from 'G9'") in explained.stdout.splitlines()
    assert explained.stdout.rstrip().endswith(
        "=> vip: 'vip' is the only candidate (rule vip-executive)")
