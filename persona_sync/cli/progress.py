"""Progress on stderr for long reads and writes: only on a terminal, only after a second."""

from __future__ import annotations

import sys
import time

import click


class Progress:
    def __init__(self, label: str, quiet: bool = False) -> None:
        self.label = label
        self.enabled = not quiet and sys.stderr.isatty()
        self.started = time.monotonic()
        self.shown = False

    def count(self, done: int, total: int | None = None) -> None:
        if not self.enabled or time.monotonic() - self.started < 1.0:
            return
        text = f"{done:,}" if total is None else f"{done:,}/{total:,}"
        click.echo(f"\r{self.label}: {text}", nl=False, err=True)
        self.shown = True

    def done(self) -> None:
        if self.shown:
            click.echo("", err=True)
