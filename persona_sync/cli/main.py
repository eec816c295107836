"""Entry point: the command group with every command registered."""

from __future__ import annotations

from persona_sync.cli import (  # noqa: F401 - register commands
    demo_cmd,
    entra_cmds,
    report_cmds,
    rules_cmds,
    status_cmd,
    sync_cmds,
)
from persona_sync.cli.base import cli

__all__ = ["cli", "main"]


def main() -> None:
    """Console-script entry point (``persona-sync`` and ``python -m persona_sync``)."""
    cli.main(prog_name="persona-sync")
