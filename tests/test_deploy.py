"""The deployment examples stay true: valid YAML, real options, env overrides that work."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import yaml
from click.testing import CliRunner

from persona_sync.cli.main import cli
from persona_sync.config import load_config
from tests.conftest import DEFAULT_RULES, REPO

DEPLOY = REPO / "deploy"


def _accepts(args: list[str]) -> None:
    """The command and options exist (checked with --help, which parses them)."""
    command = [a for a in args if not a.startswith("-") and "/" not in a][:1]
    options = [a for a in args if a.startswith("--") and a != "--config"]
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    for option in options:
        assert option in result.output, f"{option} is not an option of {command}"


def test_kubernetes_cronjob(tmp_path: Path) -> None:
    job = yaml.safe_load((DEPLOY / "kubernetes" / "cronjob.yaml").read_text())
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    _accepts(container["args"])
    env = {e["name"]: e.get("value", "from-secret") for e in container["env"]}
    config = tmp_path / "persona-sync.yaml"
    config.write_text(f"rules: {DEFAULT_RULES}\ndirectory: {{type: file, path: x.ldif}}\n"
                      "targets: {persona: msDS-cloudExtensionAttribute1}\n")
    loaded = load_config(config, env)
    assert loaded.state_dir == Path(env["PERSONA_SYNC_STATE_DIR"])


def test_systemd_units() -> None:
    service = configparser.ConfigParser(strict=False, interpolation=None)
    service.read(DEPLOY / "systemd" / "persona-sync.service")
    exec_start = shlex.split(service["Service"]["ExecStart"])
    assert exec_start[0].endswith("/persona-sync")
    _accepts(exec_start[1:])
    assert service["Service"]["SuccessExitStatus"] == "3"  # done with conflicts
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(DEPLOY / "systemd" / "persona-sync.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* 02:30:00"
