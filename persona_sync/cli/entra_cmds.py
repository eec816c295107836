"""Commands for Entra ID set-up: the directory extension that holds the persona."""

from __future__ import annotations

from pathlib import Path

import click

from persona_sync.cli.base import EXIT_OK, cli, terminal_prompt
from persona_sync.errors import ConfigError


@cli.group("entra")
def entra_group() -> None:
    """Entra ID set-up helpers."""


@entra_group.command("create-extension")
@click.argument("name")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="PERSONA_SYNC_CONFIG",
    help="Sync configuration (directory type entra).",
)
@click.option("--dry-run", is_flag=True, help="Only say whether it would be created.")
def create_extension_cmd(name: str, config_path: Path | None, dry_run: bool) -> int:
    """Create the directory extension NAME on persona-sync's app registration, if missing.

    Graph names it extension_<appId without dashes>_NAME; use that full name as the
    target attribute. Needs Application.ReadWrite.OwnedBy (the app must own itself).
    """
    from persona_sync.directory.entra import EntraDirectory
    from persona_sync.session import open_session

    session = open_session(config_path, terminal_prompt())
    with session.directory() as directory:
        if not isinstance(directory, EntraDirectory):
            raise ConfigError("entra create-extension needs a config with directory type entra")
        full, created = directory.ensure_extension(name, dry_run)
    if not created:
        click.echo(f"{full} already exists")
    elif dry_run:
        click.echo(f"would create {full} (String, on users); run again without --dry-run")
    else:
        click.echo(f"created {full}; use it as the target attribute")
    return EXIT_OK
