"""``persona-sync demo``: a full plan/apply on the bundled company, no server needed."""

from __future__ import annotations

from pathlib import Path

import click

from persona_sync.cli.base import EXIT_OK, cli, terminal_prompt


@cli.command("demo")
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path),
    default=Path("persona-sync-demo"),
    show_default=True,
    help="Working folder for the demo's directory file, rules, plan and journal.",
)
@click.option("--reset", is_flag=True, help="Start again from the bundled directory.")
def demo_cmd(folder: Path, reset: bool) -> int:
    """Run a sync on a bundled company directory (about 2,400 employees, LDIF).

    The first run copies the directory, its HR export (joined as the feed hr: the
    rules read hr.grade) and the default rules into --dir, plans, and
    applies (forced: populating an empty attribute exceeds the safety limit by design).
    Run it again: the second run finds nothing to change. Then try the other commands
    in that folder, e.g. `persona-sync plan` or `persona-sync explain EMPLOYEE`.
    """
    from persona_sync.cli.progress import Progress
    from persona_sync.demo.workspace import prepare_workspace
    from persona_sync.render import feed_lines, headline, render_json_bytes, run_summary
    from persona_sync.session import open_session
    from persona_sync.workflow import apply_plan, make_plan

    config_path, fresh = prepare_workspace(folder, reset)
    session = open_session(config_path, terminal_prompt())
    progress = Progress("reading employees")
    with session.directory() as directory:
        plan = make_plan(session, directory, progress.count)
        progress.done()
        click.echo(f"plan: {headline(plan)}")
        plan_file = folder / "plan.json"
        plan_file.write_bytes(render_json_bytes(plan) + b"\n")
        for scenario, data in plan.summary["scenarios"].items():
            shown = ", ".join(
                f"{k} {v}" for k, v in sorted(data["personas"].items(), key=lambda kv: -kv[1])
            )
            click.echo(f"personas ({scenario}): {shown}")
        for line in feed_lines(plan):
            click.echo(line)
        if plan.changes:
            if fresh:
                click.echo(
                    "applying with --force: the first run fills an empty attribute, which "
                    "exceeds the safety limits on purpose"
                )
            outcome = apply_plan(session, plan, directory, force=True, command="demo")
            assert outcome.report is not None
            click.echo(run_summary(outcome.report))
        else:
            click.echo("no changes: the directory already matches the rules")
    click.echo("")
    click.echo(f"directory: {folder / 'company.ldif'}")
    click.echo(f"HR export: {folder / 'hr-export.csv'}")
    click.echo(f"rules:     {folder / 'rules'}")
    click.echo(f"plan:      {plan_file}")
    click.echo(f"journal:   {session.config.state_dir / 'journal'}")
    click.echo(
        f"next: cd {folder} && persona-sync plan    (run `persona-sync demo` again: no changes)"
    )
    return EXIT_OK
