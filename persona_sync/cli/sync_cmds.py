"""Commands for admins and auditors: plan, apply, sync, runs, rollback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from persona_sync.apply import RunReport, apply_plan, check_safety, rollback, run_changes
from persona_sync.cli.base import EXIT_ERROR, EXIT_OK, cli, terminal_prompt
from persona_sync.cli.progress import Progress
from persona_sync.errors import PersonaSyncError
from persona_sync.journal import list_runs
from persona_sync.lock import RunLock
from persona_sync.plan import Plan, compute_plan, load_plan
from persona_sync.render import RENDERERS, conflict_lines, headline, run_summary
from persona_sync.session import Session, open_session

EXIT_CHANGES = 2
EXIT_CONFLICTS = 3

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="PERSONA_SYNC_CONFIG",
    help="Sync configuration [default: ./persona-sync.yaml; env PERSONA_SYNC_CONFIG].",
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress, no summary line.")
force_option = click.option(
    "--force",
    is_flag=True,
    help="Write even when the run changes more employees than the safety limit.",
)


def _plan(session: Session, quiet: bool) -> Plan:
    progress = Progress("reading employees", quiet)
    with session.directory() as directory:
        plan = compute_plan(session.config, session.engine, directory, progress.count)
    progress.done()
    return plan


def _write_output(text: str, output: Path | None) -> None:
    if output is None:
        click.echo(text)
        return
    try:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        raise PersonaSyncError(f"cannot write {output}: {exc.strerror}") from None


@cli.command("plan")
@config_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(sorted(RENDERERS)),
    help="table on a terminal; json when piped or saved with -o.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Save the plan here (JSON unless --format says otherwise); apply it later.",
)
@quiet_option
def plan_cmd(config_path: Path | None, fmt: str | None, output: Path | None, quiet: bool) -> int:
    """Show what a sync would change, without writing anything.

    For each employee whose persona attribute would change: who, where, old and new
    value, the persona and the rule that decided; then counts per persona and per
    transition. Save it with -o plan.json, review it, then `persona-sync apply plan.json`.

    \b
    Exit codes (like terraform plan -detailed-exitcode):
      0  no changes    2  changes pending    1  error
    """
    session = open_session(config_path, terminal_prompt())
    plan = _plan(session, quiet)
    chosen = fmt or ("json" if output is not None or not sys.stdout.isatty() else "table")
    _write_output(RENDERERS[chosen](plan), output)
    if not quiet:
        where = f"; saved to {output}" if output else ""
        click.echo(f"plan: {headline(plan)}{where}", err=True)
    return EXIT_CHANGES if plan.changes else EXIT_OK


def _finish(report: RunReport, quiet: bool) -> int:
    for line in conflict_lines(report):
        click.echo(line, err=True)
    if not quiet:
        click.echo(run_summary(report), err=True)
    counts = report.counts
    if counts["failed"] or counts["skipped"]:
        return EXIT_ERROR
    return EXIT_CONFLICTS if counts["conflict"] else EXIT_OK


@cli.command("apply")
@click.argument("plan_file", type=click.Path(path_type=Path))
@config_option
@force_option
@quiet_option
def apply_cmd(plan_file: Path, config_path: Path | None, force: bool, quiet: bool) -> int:
    """Apply exactly the changes of a saved plan.

    Refuses a plan made for other rules, another config or another directory. Each
    change is compare-and-swap: a value someone changed since the plan is reported as a
    conflict and left alone. Every write goes to the journal (see `persona-sync runs`).

    \b
    Exit codes: 0 all applied, 3 done with conflicts, 1 error or failed writes.
    """
    try:
        text = plan_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise PersonaSyncError(f"cannot read plan {plan_file}: {reason}") from None
    plan = load_plan(text, str(plan_file))
    session = open_session(config_path, terminal_prompt())
    progress = Progress("writing", quiet)
    with session.directory() as directory:
        report = apply_plan(
            plan, session.config, session.rules_checksum, directory, force, progress.count
        )
    progress.done()
    return _finish(report, quiet)


@cli.command("sync")
@config_option
@force_option
@quiet_option
def sync_cmd(config_path: Path | None, force: bool, quiet: bool) -> int:
    """Plan and apply in one step, for scheduled jobs.

    Holds the lock from the read to the last write. Stops before writing when the run
    would change more employees than the safety limit, unless --force.

    \b
    Exit codes: 0 done (or nothing to do), 3 done with conflicts, 1 error.
    """
    session = open_session(config_path, terminal_prompt())
    with RunLock(session.config.state_dir, "sync"):
        plan = _plan(session, quiet)
        if not quiet:
            click.echo(f"plan: {headline(plan)}", err=True)
        if not plan.changes:
            return EXIT_OK
        check_safety(plan, session.config.spec.safety, force)
        progress = Progress("writing", quiet)
        with session.directory() as directory:
            report = run_changes(
                directory,
                [c.to_change() for c in plan.changes],
                session.config.state_dir,
                "sync",
                progress.count,
                plan_checksum=plan.checksum,
            )
        progress.done()
    return _finish(report, quiet)


@cli.command("runs")
@config_option
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def runs_cmd(config_path: Path | None, fmt: str) -> int:
    """List past runs from the journal: when, what, how many writes, and rollbacks."""
    session = open_session(config_path, terminal_prompt())
    runs = list_runs(session.config.state_dir)
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
            "conflicts": r.count("conflict"),
            "failed": r.count("failed"),
            "rollback_of": r.header.get("rollback_of"),
            "rolled_back_by": rolled_back.get(r.run_id),
        }
        for r in runs
    ]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        click.echo(f"no runs yet in {session.config.state_dir}")
        return EXIT_OK
    click.echo(
        f"{'RUN':<26} {'STARTED':<30} {'COMMAND':<9} {'STATUS':<11} "
        f"{'APPLIED':>7} {'CONFLICTS':>9} {'FAILED':>6}  NOTE"
    )
    for row in rows:
        note = ""
        if row["rollback_of"]:
            note = f"rollback of {row['rollback_of']}"
        elif row["rolled_back_by"]:
            note = f"rolled back by {row['rolled_back_by']}"
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
    run) is reported as a conflict and kept. The rollback is itself a run in the journal.

    \b
    Exit codes: 0 all restored, 3 some kept because of later changes, 1 error.
    """
    session = open_session(config_path, terminal_prompt())
    progress = Progress("restoring", quiet)
    with session.directory() as directory:
        report = rollback(run_id, session.config, directory, progress.count)
    progress.done()
    return _finish(report, quiet)


@cli.command("check-connection")
@config_option
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def check_connection_cmd(config_path: Path | None, fmt: str) -> int:
    """Check the directory before the first sync; writes nothing.

    Binds, reads the server's rootDSE, checks that each target attribute exists in the
    schema and is single-valued, counts the employees in scope, and probes that the
    bound account may write the target attribute (without changing any value).
    Exit 0 when every check passes, 1 otherwise.
    """
    from persona_sync.doctor import diagnose

    session = open_session(config_path, terminal_prompt())
    with session.directory() as directory:
        findings = list(diagnose(session, directory))
    if fmt == "json":
        click.echo(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        for finding in findings:
            click.echo(f"{'ok' if finding.ok else 'FAIL':<5} {finding.check:<13} {finding.detail}")
    return EXIT_OK if findings and all(f.ok for f in findings) else EXIT_ERROR
