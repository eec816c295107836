"""The demo: a bundled company directory, its HR export, the default rules and a config.

``persona-sync demo`` copies them into a working folder (once), so a first-time user can
see plan, apply and a no-op second run without any server.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from persona_sync.errors import PersonaSyncError

CONFIG_NAME = "persona-sync.yaml"
DIRECTORY_NAME = "company.ldif"
HR_EXPORT_NAME = "hr-export.csv"

CONFIG_TEXT = """\
# yaml-language-server: $schema=https://persona-sync.dev/schemas/config.schema.json
#
# persona-sync demo configuration: the bundled company directory as an LDIF file.
rules: rules
directory:
  type: file
  path: company.ldif
targets:
  persona: msDS-cloudExtensionAttribute1
safety:
  max_changes: 500
  max_change_percent: 10
  persona_limits:
    vip:                  # P1 support: a rule slip must not swamp the VIP desk
      max_gain: 50
      max_gain_percent: 2
feeds:
  # The HR system's report (persona_sync/demo/hr.py), joined on the work email: the rules
  # read its columns as hr.<column>; seniority takes hr.grade (G1-G10) first.
  hr: {path: hr-export.csv, key: work_email, matches: mail}
state_dir: .persona-sync
"""


def prepare_workspace(folder: Path, reset: bool = False) -> tuple[Path, bool]:
    """Create the demo folder if needed; return its config path and whether it is new."""
    config = folder / CONFIG_NAME
    if config.exists() and not reset:
        return config, False
    try:
        if reset and folder.exists():
            for name in (
                CONFIG_NAME,
                DIRECTORY_NAME,
                HR_EXPORT_NAME,
                "rules",
                ".persona-sync",
                "plan.json",
            ):
                target = folder / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        package = resources.files("persona_sync")
        (folder / DIRECTORY_NAME).write_bytes(package.joinpath("demo", DIRECTORY_NAME).read_bytes())
        (folder / HR_EXPORT_NAME).write_bytes(package.joinpath("demo", HR_EXPORT_NAME).read_bytes())
        rules = folder / "rules"
        rules.mkdir(exist_ok=True)
        (rules / "cases").mkdir(exist_ok=True)
        source = package.joinpath("default_rules")
        for item in source.iterdir():
            if item.name.endswith(".yaml"):
                (rules / item.name).write_bytes(item.read_bytes())
        for item in source.joinpath("cases").iterdir():
            if item.name.endswith(".yaml"):
                (rules / "cases" / item.name).write_bytes(item.read_bytes())
        config.write_text(CONFIG_TEXT, encoding="utf-8")
    except OSError as exc:
        raise PersonaSyncError(f"cannot set up the demo in {folder}: {exc.strerror}") from None
    return config, True
