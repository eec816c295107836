"""Checks shared by the deployment tests: the commands the examples run exist."""

from __future__ import annotations

from click.testing import CliRunner

from persona_sync.cli.main import cli


def accepts(args: list[str]) -> None:
    """The command and its options exist (checked with --help, which parses them)."""
    command = [a for a in args if not a.startswith("-") and "/" not in a][:1]
    options = [a.split("=")[0] for a in args if a.startswith("--") and a != "--config"]
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    for option in options:
        assert option in result.output, f"{option} is not an option of {command}"
