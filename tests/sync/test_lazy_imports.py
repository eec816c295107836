"""Start-up cost: registering the commands imports no library, and a command imports only
what it uses (checked by the modules loaded in a fresh interpreter, not by timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from persona_sync.cli.sync_cmds import PLAN_FORMATS
from persona_sync.render import RENDERERS
from tests.sync.conftest import Workspace

# Loaded by `persona-sync` before any command runs: click and the CLI's own small modules.
HEAVY = (
    "pydantic",
    "yaml",
    "ldap3",
    "structlog",
    "prometheus_client",
    "sqlite3",
    "persona_sync.config",
    "persona_sync.plan",
    "persona_sync.rules.engine",
    "persona_sync.workflow",
    "persona_sync.render",
    "persona_sync.report",
)
# What a plan of a file directory has no use for (structlog: nothing it logs at the
# default level, warnings, is logged by this plan).
NOT_FOR_A_PLAN = (
    "structlog",
    "asyncio",
    "prometheus_client",
    "ldap3",
    "persona_sync.report",
    "persona_sync.demo",
    "persona_sync.catalog",
    "persona_sync.doctor",
    "persona_sync.schemas",
    "persona_sync.status",
    "persona_sync.rules.cases",
    "persona_sync.rules.explain",
    "persona_sync.rules.lint",
    "persona_sync.directory.ldap",
    "persona_sync.directory.entra",
)

# Runs persona-sync ARGS in this interpreter and writes the loaded modules' names to OUT.
CHILD = """
import atexit, json, runpy, sys
out = sys.argv[1]
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["persona-sync", *sys.argv[2:]]
runpy.run_module("persona_sync", run_name="__main__", alter_sys=True)
"""


def loaded_by(folder: Path, *args: str) -> set[str]:
    out = folder / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 2), done.stderr
    return set(json.loads(out.read_text()))


def under(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


def test_help_imports_no_library(tmp_path: Path) -> None:
    modules = loaded_by(tmp_path, "--help")
    assert "persona_sync.cli.sync_cmds" in modules  # the commands were registered
    assert under(modules, HEAVY) == []


def test_plan_imports_only_what_it_uses(workspace: Workspace) -> None:
    modules = loaded_by(workspace.root, "plan", "-q", "-o", "plan.json")
    assert (workspace.root / "plan.json").exists()
    assert "persona_sync.workflow" in modules
    assert under(modules, NOT_FOR_A_PLAN) == []


def test_a_plan_that_logs_loads_structlog_and_logs(workspace: Workspace) -> None:
    out = workspace.root / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(out), "--log-format", "json", "-v", "plan", "-q"],
        cwd=workspace.root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "structlog" in json.loads(out.read_text())
    events = [json.loads(line)["event"] for line in done.stderr.splitlines()]
    assert "plan_computed" in events


def test_plan_formats_are_the_renderers() -> None:
    assert list(PLAN_FORMATS) == sorted(RENDERERS)


def test_only_the_logging_set_up_imports_structlog() -> None:
    """Every module logs through persona_sync.logs.get_logger: one that imported structlog
    itself would log with structlog's defaults while the CLI's configuration waits for the
    first message worth printing."""
    package = Path(__file__).resolve().parents[2] / "persona_sync"
    users = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "structlog" in path.read_text(encoding="utf-8")
    )
    assert users == ["logs.py"]
