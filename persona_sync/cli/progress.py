"""Progress on stderr for long reads and writes: only on a terminal, only after a second.
Notices (a long wait and why) go to stderr on their own line, terminal or not."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

import click

from persona_sync.notices import notices_to


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
            self.shown = False


@contextlib.contextmanager
def notices(quiet: bool, *lines: Progress) -> Iterator[None]:
    """Show the library's notices made in the block on stderr, each on its own line (a
    progress line being drawn is ended first); none under --quiet."""

    def show(text: str) -> None:
        for line in lines:
            line.done()
        click.echo(text, err=True)

    with notices_to(None if quiet else show):
        yield
