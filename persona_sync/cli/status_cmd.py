"""`persona-sync status`: where a deployment stands, from the state folder alone."""

from __future__ import annotations

import json
from pathlib import Path

import click

from persona_sync.cli.base import EXIT_OK, cli


@cli.command("status")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="PERSONA_SYNC_CONFIG",
    help="Sync configuration [default: ./persona-sync.yaml; env PERSONA_SYNC_CONFIG].",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def status_cmd(config_path: Path | None, fmt: str) -> int:
    """Show the last run, how the last read went, and the snapshot; reads only the state
    folder (no directory connection, no rules).

    \b
    last run   the last run that wrote (sync, apply, rollback, demo): status,
               applied, conflicts, failed
    last read  full or delta, and why a read was full (no cursor, another DC,
               an expired token, the scheduled full read)
    cursor     each source's change-tracking position and its age
    snapshot   employees held, how many have changes pending, its size

    `--format json` prints the same as one JSON object for scripts and monitoring.
    """
    from persona_sync.config import load_config
    from persona_sync.status import render_status, status

    config = load_config(config_path)
    result = status(config.state_dir)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(render_status(result))
    return EXIT_OK
