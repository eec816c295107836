"""Commands for admins and auditors: plan, apply, sync, runs, rollback.

Thin adapters over :mod:`persona_sync.workflow`: parse options, install the signal
handlers, call the workflow, render what it returns. Each command imports the library
inside its function, so that registering the commands (every run does) costs nothing and
a run loads only what it uses.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from persona_sync.cli.base import EXIT_ERROR, EXIT_OK, cli, handled, terminal_prompt
from persona_sync.errors import PersonaSyncError, SafetyLimitExceeded

if TYPE_CHECKING:
    from persona_sync.apply import RunReport
    from persona_sync.directory.base import Cancel
    from persona_sync.metrics import RunMetrics
    from persona_sync.plan import Plan
    from persona_sync.recovery import Settled
    from persona_sync.session import Session, Sessions
    from persona_sync.workflow import Outcome, RunInterrupted

#: the names of persona_sync.render.RENDERERS (a test keeps them equal)
PLAN_FORMATS = ("csv", "json", "markdown", "table")
EXIT_CHANGES = 2
EXIT_CONFLICTS = 3
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="PERSONA_SYNC_CONFIG",
    help="Sync configuration [default: ./persona-sync.yaml; env PERSONA_SYNC_CONFIG].",
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress, no summary line.")
metrics_option = click.option(
    "--metrics-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="PERSONA_SYNC_METRICS_FILE",
    help="Write Prometheus metrics here when done, even on failure (for the node exporter's "
    "textfile collector; name it *.prom).",
)
delta_option = click.option(
    "--delta",
    is_flag=True,
    help="Read only what changed in the directory since the last run (its change "
    "tracking: USN on AD, entryCSN on OpenLDAP, /users/delta on Entra ID), against the "
    "snapshot in the state folder. Reads in full, and says why, when there is no snapshot "
    "or cursor yet, the cursor cannot be used, or the last full read is older than "
    "snapshot.full_read_every_hours (24).",
)
force_option = click.option(
    "--force",
    is_flag=True,
    help="Write even when the run changes more employees than a safety limit allows, or "
    "a feed has shrunk more than its max_shrink_percent since the last run.",
)


class Interval(click.ParamType):  # type: ignore[type-arg]
    """A duration: 90, 30s, 5m, 1h (seconds, minutes, hours)."""

    name = "duration"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        if isinstance(value, float):
            return value
        from persona_sync.schedule import parse_interval

        try:
            return parse_interval(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


every_option = click.option(
    "--every",
    type=Interval(),
    help="Run again and again in this process, a cycle every DURATION (30s, 5m, 1h) "
    "from the first, until SIGINT/SIGTERM (between cycles: exit 0; during one: after it, "
    "with its exit code). Each cycle reads the config and the rules again. A first cycle "
    "that fails or is held ends the command; later ones are reported and the next cycle "
    "tries again. Not with --force.",
)
cycles_option = click.option(
    "--cycles",
    type=click.IntRange(min=1),
    help="With --every: stop after this many cycles (exit code: the last one's).",
)
plan_force_option = click.option(
    "--force",
    is_flag=True,
    help="Plan even when a feed has shrunk more than its max_shrink_percent since the "
    "last run (the plan then takes its size as the new baseline).",
)


_schedule_stop: Cancel | None = None  # the running schedule's stop request (stoppable)


@contextlib.contextmanager
def interruptible() -> Iterator[Cancel]:
    """SIGINT/SIGTERM ask the running workflow to stop; a second one stops at once.

    On the first signal no new write is sent; answers in flight are awaited (each within
    the backend's timeout), the journal records everything, and the command exits 130 /
    143. The next run settles whatever is left unconfirmed. Inside a schedule the request
    is the schedule's own: the signal also ends the schedule after this cycle, and one
    that came earlier in the cycle counts as the first (no write is sent).
    """
    from persona_sync.directory.base import Cancel

    cancel = _schedule_stop or Cancel()

    def handler(number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if cancel.requested:
            raise KeyboardInterrupt
        cancel.request(name)
        click.echo(
            f"{name}: stopping after the writes in flight (send it again to stop at once)",
            err=True,
        )

    with _handling(handler):
        yield cancel


def scheduled(once: Callable[[], int], every: float | None, cycles: int | None, force: bool) -> int:
    """``once()``, or with ``every`` a cycle of it every ``every`` seconds (see
    :mod:`persona_sync.schedule`): each cycle's errors are said as a single run's are; a
    reader gone from stdout (``plan --every 1m | head``) ends the schedule."""
    if every is None:
        if cycles is not None:
            raise click.UsageError("--cycles needs --every")
        return once()
    if force:
        raise click.UsageError(
            "--force cannot be combined with --every: a limit overridden once would stay "
            "overridden for every later cycle; run once with --force, then start the schedule"
        )
    from persona_sync.schedule import repeat

    debug = bool(click.get_current_context().find_root().params.get("debug"))
    with stoppable() as stop:

        def guarded() -> int:
            try:
                return once()
            except BrokenPipeError:
                stop.request("stdout closed")
                raise

        return repeat(lambda _number: handled(guarded, debug), every, stop, cycles=cycles)


@contextlib.contextmanager
def stoppable() -> Iterator[Cancel]:
    """SIGINT/SIGTERM end a schedule: between cycles at once, during one after it; a
    second one stops at once. A sync in a cycle shares the request (:func:`interruptible`):
    its own handler then says no new write is sent, and the schedule ends after the cycle."""
    global _schedule_stop
    from persona_sync.directory.base import Cancel

    stop = Cancel()

    def handler(number: int, frame: FrameType | None) -> None:
        name = signal.Signals(number).name
        if stop.requested:
            raise KeyboardInterrupt
        stop.request(name)
        click.echo(f"{name}: stopping after this cycle (send it again to stop at once)", err=True)

    _schedule_stop = stop
    try:
        with _handling(handler):
            yield stop
    finally:
        _schedule_stop = None


@contextlib.contextmanager
def _handling(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM while inside (left alone off the main thread)."""
    previous = {}
    try:
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, handler)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


@contextlib.contextmanager
def recording(command: str, path: Path | None) -> Iterator[RunMetrics]:
    """Collect a command's metrics and write them at the end, however it ends."""
    from persona_sync.metrics import RunMetrics

    metrics = RunMetrics(command)
    failed = True
    try:
        yield metrics
        failed = False
    except SafetyLimitExceeded:
        metrics.held = True
        raise
    finally:
        if path is not None:
            try:
                metrics.write(path)
            except PersonaSyncError:
                if not failed:
                    raise  # else the error that ended the command is the one to show


def _plan(session: Session, quiet: bool, delta: bool, force: bool = False) -> Plan:
    from persona_sync.cli.progress import Progress, notices
    from persona_sync.render import feed_lines, read_line
    from persona_sync.workflow import make_plan

    progress = Progress("reading employees", quiet)
    with notices(quiet, progress), session.directory() as directory:
        plan = make_plan(session, directory, progress.count, delta=delta, force=force)
    progress.done()
    if not quiet:
        if delta:
            click.echo(read_line(plan), err=True)
        for line in feed_lines(plan):
            click.echo(line, err=True)
    return plan


def _write_output(text: str | bytes, output: Path | None) -> None:
    """The plan on stdout or in ``output`` (a renderer's text, or the bytes of one in
    UTF-8). A regular file (or a new one) is replaced whole, so that a reader (a
    schedule's, the next apply) never finds half a plan; anything else (a symlink,
    /dev/stdout, a pipe, a file this user may not replace) is written through, as before."""
    if output is None:
        click.echo(text)  # bytes as they are; a text as the terminal wants it
        return
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    if not data.endswith(b"\n"):
        data += b"\n"  # a plan's text runs to megabytes: one copy, here
    if _replaceable(output):
        from persona_sync.directory.atomic import atomic_write

        atomic_write(output, data)
        return
    try:
        with output.open("wb") as file:
            file.write(data)
    except OSError as exc:
        raise PersonaSyncError(f"cannot write {output}: {exc.strerror}") from None


def _replaceable(path: Path) -> bool:
    """Whether writing ``path`` may replace it by another file: a regular file of one link
    that this user may write, or none yet, in a folder this user may write."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        found = None
    except OSError:
        return False
    if found is not None and not (
        stat.S_ISREG(found.st_mode) and found.st_nlink == 1 and os.access(path, os.W_OK)
    ):
        return False
    return os.access(path.parent, os.W_OK | os.X_OK)


@cli.command("plan")
@config_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(PLAN_FORMATS),
    help="table on a terminal; json when piped or saved with -o.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Save the plan here (JSON unless --format says otherwise); apply it later.",
)
@delta_option
@plan_force_option
@quiet_option
@metrics_option
@every_option
@cycles_option
def plan_cmd(
    config_path: Path | None,
    fmt: str | None,
    output: Path | None,
    delta: bool,
    force: bool,
    quiet: bool,
    metrics_file: Path | None,
    every: float | None,
    cycles: int | None,
) -> int:
    """Show what a sync would change, without writing anything.

    For each employee whose persona attribute would change: who, where, old and new
    value, the persona and the rule that decided; then counts per persona and per
    transition. Save it with -o plan.json, review it, then `persona-sync apply plan.json`.
    It writes nothing in the directory; it saves what it read in the state folder's
    snapshot, which `--delta`, `explain` and `status` use.

    With feeds in the config (HR exports joined to the employees), stderr says per feed
    how many employees in scope have no row and how many rows match no employee. A feed
    with fewer rows than at the last run by more than its max_shrink_percent stops the
    plan (exit 4) unless --force.

    With --every it keeps the plan current, as a staging server does: `plan --delta
    --every 5m -o plan.json` replaces plan.json after each cycle (whole, never half
    written) and writes nothing in the directory.

    \b
    Exit codes (like terraform plan -detailed-exitcode):
      0  no changes    2  changes pending    1  error    4  held: a feed shrank
    """
    from persona_sync.render import RENDERERS, headline
    from persona_sync.session import Sessions

    # once: each question is asked once, and unchanged files are parsed once, whatever
    # the cycles
    sessions = Sessions(config_path, terminal_prompt(), resident=every is not None)

    def once() -> int:
        with recording("plan", metrics_file) as metrics:
            session = sessions.open()
            plan = metrics.plan = _plan(session, quiet, delta, force)
            chosen = fmt or ("json" if output is not None or not sys.stdout.isatty() else "table")
            _write_output(RENDERERS[chosen](plan), output)
            if not quiet:
                where = f"; saved to {output}" if output else ""
                click.echo(f"plan: {headline(plan)}{where}", err=True)
            metrics.ok = True
        return EXIT_CHANGES if plan.changes else EXIT_OK

    return scheduled(once, every, cycles, force)


def _recovered(settled: Settled) -> None:
    click.echo(f"recovered: {settled.describe()}", err=True)


def _finish(outcome: Outcome, quiet: bool, metrics: RunMetrics | None = None) -> int:
    from persona_sync.render import conflict_lines, run_summary

    report = outcome.report
    if metrics is not None:
        metrics.report = report
    if report is None:
        if metrics is not None:
            metrics.ok = True
        return EXIT_OK
    for line in conflict_lines(report):
        click.echo(line, err=True)
    if report.status == "aborted":
        click.echo(f"stopped: {report.reason}", err=True)
    if report.status == "interrupted":
        click.echo(f"interrupted by {report.reason}: {run_summary(report)}", err=True)
        return EXIT_SIGNAL.get(report.reason, EXIT_ERROR)
    if not quiet:
        click.echo(run_summary(report), err=True)
    code = _exit_code(report)
    if metrics is not None:
        metrics.ok = code in (EXIT_OK, EXIT_CONFLICTS)
    return code


def _exit_code(report: RunReport) -> int:
    counts = report.counts
    if report.status != "complete" or counts["failed"] or counts["unknown"] or counts["skipped"]:
        return EXIT_ERROR
    return EXIT_CONFLICTS if counts["conflict"] else EXIT_OK


def _interrupted(exc: RunInterrupted) -> int:
    click.echo(f"{exc}; the next run starts afresh", err=True)
    return EXIT_SIGNAL.get(exc.reason, EXIT_ERROR)


@cli.command("apply")
@click.argument("plan_file", type=click.Path(path_type=Path))
@config_option
@force_option
@quiet_option
@metrics_option
def apply_cmd(
    plan_file: Path,
    config_path: Path | None,
    force: bool,
    quiet: bool,
    metrics_file: Path | None,
) -> int:
    """Apply exactly the changes of a saved plan.

    Refuses a plan that was edited after `plan` wrote it (its checksum covers the whole
    file), or that was made for other rules, another config or another directory. Each
    change is compare-and-swap: a value someone changed since the plan is reported as a
    conflict and left alone. Every write goes to the journal (see `persona-sync runs`).
    A run that died earlier is settled first: its unconfirmed writes are read back.

    \b
    Exit codes: 0 all applied, 3 done with conflicts, 1 error or failed writes,
    4 held by a safety limit (nothing written),
    130 / 143 interrupted by SIGINT / SIGTERM (what was sent is journalled).
    """
    with recording("apply", metrics_file) as metrics:
        return _apply(plan_file, config_path, force, quiet, metrics)


def _apply(
    plan_file: Path, config_path: Path | None, force: bool, quiet: bool, metrics: RunMetrics
) -> int:
    from persona_sync.cli.progress import Progress, notices
    from persona_sync.plan import load_plan
    from persona_sync.session import open_session
    from persona_sync.workflow import apply_plan

    try:
        text = plan_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise PersonaSyncError(f"cannot read plan {plan_file}: {reason}") from None
    plan = metrics.plan = load_plan(text, str(plan_file))
    session = open_session(config_path, terminal_prompt())
    progress = Progress("writing", quiet)
    with notices(quiet, progress), interruptible() as cancel, session.directory() as directory:
        outcome = apply_plan(
            session,
            plan,
            directory,
            force=force,
            progress=progress.count,
            cancel=cancel,
            on_settled=_recovered,
        )
    progress.done()
    return _finish(outcome, quiet, metrics)


@cli.command("sync")
@config_option
@delta_option
@force_option
@quiet_option
@metrics_option
@every_option
@cycles_option
def sync_cmd(
    config_path: Path | None,
    delta: bool,
    force: bool,
    quiet: bool,
    metrics_file: Path | None,
    every: float | None,
    cycles: int | None,
) -> int:
    """Plan and apply in one step, for scheduled jobs.

    Holds the lock from the read to the last write: a second sync on the same state
    folder stops at once with a message. Settles a run that died earlier first. Stops
    before writing when the run would change more employees than a safety limit allows
    (the total, or one persona's), or when a feed has fewer rows than at the last run by
    more than its max_shrink_percent, unless --force. With --delta it reads only what
    changed since the last run; the snapshot and its cursor are saved once the writes
    are journalled, so a run killed in between reads those changes again.

    With --every it is its own scheduler: `sync --delta --every 5m` runs a cycle every
    five minutes in one process (no interpreter start per run), each cycle a whole sync
    with its own lock, safety limits and journal, until SIGINT/SIGTERM.

    \b
    Exit codes: 0 done (or nothing to do), 3 done with conflicts, 1 error,
    4 held by a safety limit (nothing written),
    130 / 143 interrupted by SIGINT / SIGTERM (what was sent is journalled).
    """

    from persona_sync.session import Sessions

    # once: each question is asked once, and unchanged files are parsed once, whatever
    # the cycles
    sessions = Sessions(config_path, terminal_prompt(), resident=every is not None)

    def once() -> int:
        with recording("sync", metrics_file) as metrics:
            return _sync(sessions, delta, force, quiet, metrics)

    return scheduled(once, every, cycles, force)


def _sync(
    sessions: Sessions, delta: bool, force: bool, quiet: bool, metrics: RunMetrics
) -> int:
    from persona_sync.cli.progress import Progress, notices
    from persona_sync.render import feed_lines, headline, read_line
    from persona_sync.workflow import RunInterrupted, sync

    session = sessions.open()
    reading = Progress("reading employees", quiet)
    writing = Progress("writing", quiet)

    def planned(plan: Plan) -> None:
        metrics.plan = plan
        reading.done()
        if not quiet:
            if delta:
                click.echo(read_line(plan), err=True)
            for line in feed_lines(plan):
                click.echo(line, err=True)
            click.echo(f"plan: {headline(plan)}", err=True)

    try:
        with (
            notices(quiet, reading, writing),
            interruptible() as cancel,
            session.directory() as directory,
        ):
            outcome = sync(
                session,
                directory,
                force=force,
                delta=delta,
                read_progress=reading.count,
                progress=writing.count,
                cancel=cancel,
                on_plan=planned,
                on_settled=_recovered,
            )
    except RunInterrupted as exc:
        return _interrupted(exc)
    writing.done()
    return _finish(outcome, quiet, metrics)


@cli.command("runs")
@config_option
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def runs_cmd(config_path: Path | None, fmt: str) -> int:
    """List past runs from the journal: when, what, how many writes, and rollbacks."""
    from persona_sync.config import load_config
    from persona_sync.journal import list_runs

    config = load_config(config_path)  # no rules needed: a broken rule file must not hide the log
    runs = list_runs(config.state_dir)
    rolled_back = {
        r.header.get("rollback_of"): r.run_id for r in runs if r.header.get("rollback_of")
    }
    rows = [
        {
            "run_id": r.run_id,
            "started": r.header["time"],
            "command": r.header["command"],
            "status": r.status,
            "applied": r.count("applied"),
            "unchanged": r.count("unchanged"),
            "conflicts": r.count("conflict"),
            "failed": r.count("failed"),
            "unconfirmed": len(r.unresolved()),
            "rollback_of": r.header.get("rollback_of"),
            "rolled_back_by": rolled_back.get(r.run_id),
        }
        for r in runs
    ]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        click.echo(f"no runs yet in {config.state_dir}")
        return EXIT_OK
    click.echo(
        f"{'RUN':<26} {'STARTED':<30} {'COMMAND':<9} {'STATUS':<11} "
        f"{'APPLIED':>7} {'CONFLICTS':>9} {'FAILED':>6}  NOTE"
    )
    for row in rows:
        notes = []
        if row["rollback_of"]:
            notes.append(f"rollback of {row['rollback_of']}")
        elif row["rolled_back_by"]:
            notes.append(f"rolled back by {row['rolled_back_by']}")
        if row["unchanged"]:
            notes.append(f"{row['unchanged']} already set")
        if row["unconfirmed"]:
            notes.append(f"{row['unconfirmed']} unconfirmed")
        note = "; ".join(notes)
        click.echo(
            f"{row['run_id']:<26} {row['started']:<30} {row['command']:<9} "
            f"{row['status']:<11} {row['applied']:>7} {row['conflicts']:>9} "
            f"{row['failed']:>6}  {note}".rstrip()
        )
    return EXIT_OK


@cli.command("rollback")
@click.argument("run_id")
@config_option
@quiet_option
def rollback_cmd(run_id: str, config_path: Path | None, quiet: bool) -> int:
    """Restore the values a run replaced, newest first.

    Compare-and-swap again: an attribute changed since that run (by a person or a later
    run) is reported as a conflict and kept; a value the run found already there is not
    touched. The rollback is itself a run in the journal. Needs the config, not the rules.

    \b
    Exit codes: 0 all restored, 3 some kept because of later changes, 1 error.
    """
    from persona_sync.cli.progress import Progress, notices
    from persona_sync.config import load_config
    from persona_sync.directory import open_directory
    from persona_sync.workflow import rollback

    config = load_config(config_path)  # no rules: a broken rule commit must not block this
    progress = Progress("restoring", quiet)
    with (
        notices(quiet, progress),
        interruptible() as cancel,
        open_directory(config, terminal_prompt()) as directory,
    ):
        outcome = rollback(
            run_id,
            config,
            directory,
            progress=progress.count,
            cancel=cancel,
            on_settled=_recovered,
        )
    progress.done()
    return _finish(outcome, quiet)


@cli.command("check-connection")
@config_option
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def check_connection_cmd(config_path: Path | None, fmt: str) -> int:
    """Check the directory before the first sync; writes nothing.

    What it checks depends on the directory type in the config:

    \b
    file   the LDIF or CSV file exists; it and its folder are writable.
    ldap   binds (and says whether TLS protects the bind), reads the server's
           rootDSE (server, naming context), checks that each target attribute
           is in the schema and single-valued, and probes on one employee in
           scope that the account may write it: it deletes a value nobody has,
           which the server refuses as "no such value" (may write) or
           "insufficient access" (may not); nothing changes.
    entra  gets a token (app, tenant), lists the application permissions in it
           (writing needs User.ReadWrite.All), and checks that an extension
           target is registered on this app (else: entra create-extension).
           Graph has no harmless write probe: the first write shows it.

    \b
    Then, on every backend: reads the employees, counts those in scope, and
    warns (WARN) when a target attribute already holds values that are not
    persona ids, with how many and a few examples: another product may keep
    its data in that attribute.

    \b
    Exit codes: 0 every check passed (warnings do not count), 1 a check failed.
    """
    from persona_sync.doctor import diagnose
    from persona_sync.session import open_session

    session = open_session(config_path, terminal_prompt())
    with session.directory() as directory:
        findings = list(diagnose(session, directory))
    if fmt == "json":
        click.echo(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        for finding in findings:
            label = "FAIL" if not finding.ok else "WARN" if finding.warning else "ok"
            click.echo(f"{label:<5} {finding.check:<13} {finding.detail}")
    return EXIT_OK if findings and all(f.ok for f in findings) else EXIT_ERROR
