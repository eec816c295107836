"""Entry point: the command group with every command registered."""

from __future__ import annotations

from persona_sync.cli import rules_cmds  # noqa: F401 - registers the rule commands
from persona_sync.cli.base import cli

__all__ = ["cli", "main"]


def main() -> None:
    """Console-script entry point (``persona-sync`` and ``python -m persona_sync``)."""
    cli.main(prog_name="persona-sync")
