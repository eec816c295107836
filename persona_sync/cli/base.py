"""The ``persona-sync`` command group, its global options and the one error handler.

Commands are thin: each parses options, calls a library function and renders its result.
Every :class:`PersonaSyncError` becomes one line on stderr and exit code 1; anything else
is a bug and says so, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click

from persona_sync import __version__
from persona_sync.errors import (
    LocatedError,
    PersonaSyncError,
    SafetyLimitExceeded,
    ValidationFailed,
)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_HELD = 4  # a safety limit held the run; nothing was written


class PersonaSyncGroup(click.Group):
    """Click group with persona-sync's exit codes.

    Commands return their exit code. Usage mistakes exit 1 (not click's 2, which
    ``plan`` uses for "changes pending"), library errors print one line each and exit 1.
    """

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> int:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            exc.show()
            code = EXIT_ERROR
        except click.Abort:
            click.echo("aborted", err=True)
            code = EXIT_ERROR
        else:
            code = result if isinstance(result, int) else EXIT_OK
        if standalone_mode:
            sys.exit(code)
        return code

    def invoke(self, ctx: click.Context) -> Any:
        debug = bool(ctx.find_root().params.get("debug"))
        return handled(lambda: super(PersonaSyncGroup, self).invoke(ctx), debug)


def handled(call: Callable[[], Any], debug: bool) -> Any:
    """``call()``'s result, or the exit code of the error it raised, said on stderr: one
    line per error (a ValidationFailed's each, then their count), a traceback only for a
    bug and only with ``debug``. Click's own exceptions pass through."""
    try:
        return call()
    except ValidationFailed as exc:
        for error in exc.errors:
            click.echo(error.message, err=True)
        count = len(exc.errors)
        click.echo(f"{count} error{'s' if count != 1 else ''}", err=True)
        return EXIT_ERROR
    except LocatedError as exc:
        click.echo(exc.message, err=True)  # already says where: path:line:col
        return EXIT_ERROR
    except SafetyLimitExceeded as exc:
        click.echo(f"held: {exc}", err=True)
        return EXIT_HELD
    except PersonaSyncError as exc:
        click.echo(f"error: {exc}", err=True)
        return EXIT_ERROR
    except (click.exceptions.Exit, click.ClickException, click.Abort):
        raise
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:
        # The reader went away (`persona-sync plan | head`): stop quietly, as Unix
        # tools do, and keep Python from complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the one place that catches everything
        if debug:
            traceback.print_exc()
        click.echo(
            f"unexpected error: {type(exc).__name__}: {exc}\n"
            "This is a bug in persona-sync; rerun with --debug for the traceback "
            "and include it in your report.",
            err=True,
        )
        return EXIT_ERROR


@click.group(cls=PersonaSyncGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="persona-sync")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
    envvar="PERSONA_SYNC_LOG_FORMAT",
    help="Logs on stderr: JSON lines for jobs, readable on a terminal (auto picks).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for unexpected errors.")
def cli(verbose: int, log_format: str, debug: bool) -> None:
    """Give every employee an IT service persona and write it into the directory.

    \b
    Rule authors:  validate, lint, test, explain, schema
    Admins:        check-connection, plan, apply, sync, runs, rollback
    Auditors:      plan --format json|csv|markdown, report, explain, runs
    Downstream:    catalog export (ITSM, device management, Entra groups)

    Start with `persona-sync demo` to see a full run on a bundled directory.
    """
    from persona_sync.logs import configure_logging

    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    configure_logging(level, log_format)  # type: ignore[arg-type]


def terminal_prompt() -> Callable[[str], str] | None:
    """A hidden-input prompt for secrets when a person is at the terminal, else None.

    Each question is asked once: a schedule (``--every``) opens a session every cycle,
    and asks nobody again."""
    if not sys.stdin.isatty():
        return None
    answers: dict[str, str] = {}

    def ask(label: str) -> str:
        if label not in answers:
            answers[label] = str(click.prompt(label, hide_input=True, err=True))
        return answers[label]

    return ask
