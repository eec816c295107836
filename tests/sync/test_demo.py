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
    assert lines[0] == ("plan: 2114 changes for 2114 employees (2352 in scope, 68 out of "
                        "scope, 238 unchanged, 3 foreign values left alone, 2 org-chart "
                        "problems (see the log))")
    assert lines[3].startswith("run ")
    assert ": 2114 applied, 0 already set, 0 conflicts, 0 failed; journal " in lines[3]
    second = subprocess.run([*command, "demo", "--dir", "demo"], cwd=tmp_path,
                            capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stderr
    assert "no changes: the directory already matches the rules" in second.stdout
    plan = json.loads((tmp_path / "demo" / "plan.json").read_text())
    assert plan["changes"] == []
