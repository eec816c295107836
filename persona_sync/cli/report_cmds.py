"""Commands for auditors and downstream teams: report, catalog export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from persona_sync.cli.base import EXIT_OK, cli, terminal_prompt
from persona_sync.errors import ConfigError, PersonaSyncError

if TYPE_CHECKING:  # the commands import the library when they run
    from persona_sync.plan import Plan
    from persona_sync.report import EmployeeReport, HistoryReport, PlanReport
    from persona_sync.report.population import PopulationRow

DEFAULT_REPORT = Path("persona-sync-report.html")
DEFAULT_RULES = Path("rules")

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="PERSONA_SYNC_CONFIG",
    help="Sync configuration [env PERSONA_SYNC_CONFIG].",
)


def _read_plan(path: Path) -> Plan:
    from persona_sync.plan import load_plan

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise PersonaSyncError(f"cannot read plan {path}: {reason}") from None
    return load_plan(text, str(path))


def _save(text: str, output: Path) -> None:
    try:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as exc:
        raise PersonaSyncError(f"cannot write {output}: {exc.strerror}") from None


def _population(
    plan: Plan, config_path: Path | None, group_by: tuple[str, ...], notes: list[str]
) -> list[PopulationRow]:
    from persona_sync.report import DEFAULT_DIMENSIONS
    from persona_sync.report.population import parse_dimension
    from persona_sync.report.source import plan_population
    from persona_sync.session import open_session

    session = open_session(config_path, terminal_prompt())
    dimensions = [parse_dimension(g) for g in group_by] or list(DEFAULT_DIMENSIONS)
    return plan_population(session, plan, dimensions, notes)


def _state_dir(config_path: Path | None, state_dir: Path | None) -> Path:
    from persona_sync.config import DEFAULT_CONFIG, load_config

    if state_dir is not None:
        return state_dir
    if config_path is None and not DEFAULT_CONFIG.exists():
        raise ConfigError("which journal? pass --config FILE (its state_dir) or --state-dir DIR")
    return load_config(config_path).state_dir


def _current_values(config_path: Path | None) -> dict[str, dict[str, int]]:
    from persona_sync.report import attribute_counts
    from persona_sync.session import open_session

    session = open_session(config_path, terminal_prompt())
    targets = dict(session.config.spec.targets)
    with session.directory() as directory:
        people = directory.read([a.lower() for a in targets.values()])
        counts = attribute_counts(people, targets)
    return {scenario: dict(c) for scenario, c in counts.items()}


@cli.command("report")
@click.argument("plan_file", required=False, type=click.Path(path_type=Path))
@config_option
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="Read the journal from this state folder instead of the config's state_dir.",
)
@click.option(
    "--employee",
    "employee_key",
    metavar="ID",
    help="One employee's persona history (id or DN), from the journal.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["html", "markdown"]), default="html", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help=f"Write here [default: stdout when piped; {DEFAULT_REPORT} for HTML on a terminal].",
)
@click.option(
    "--group-by",
    multiple=True,
    metavar="NAME=ATTR[,ATTR]",
    help="Group the distribution by these attributes instead of site, country and "
    "department (repeatable).",
)
@click.option("--no-directory", is_flag=True, help="Do not read the directory, even with a config.")
@click.option("--title", help="Heading of the report.")
def report_cmd(
    plan_file: Path | None,
    config_path: Path | None,
    state_dir: Path | None,
    employee_key: str | None,
    fmt: str,
    output: Path | None,
    group_by: tuple[str, ...],
    no_directory: bool,
    title: str | None,
) -> int:
    """Write a report of a plan, of the journal's history, or of one employee.

    \b
    persona-sync report plan.json -o plan.html            a plan (no directory read)
    persona-sync report plan.json --config sync.yaml      ... plus site, country, department
    persona-sync report -o history.html                   the journal: runs, personas over time
    persona-sync report --employee jdoe --format markdown one employee's persona journey

    HTML is one self-contained file: no network, charts as inline SVG, the change list
    searchable and filterable in the page. Markdown is for pasting into a change ticket.
    A plan report reads the directory only with --config (or PERSONA_SYNC_CONFIG), to
    group every in-scope employee; a journal report reads it to count back from the
    current values (else it shows net change), unless --no-directory.
    """
    from persona_sync.journal import JOURNAL_DIR, list_runs
    from persona_sync.logs import get_logger
    from persona_sync.report import (
        DEFAULT_DIMENSIONS,
        build_employee_report,
        build_history_report,
        build_plan_report,
        render_html,
        render_markdown,
    )
    from persona_sync.report.population import parse_dimension

    notes: list[str] = []
    report: PlanReport | HistoryReport | EmployeeReport
    if employee_key is not None:
        journal = _state_dir(config_path, state_dir)
        planned = _read_plan(plan_file).changes if plan_file is not None else ()
        runs = list_runs(journal)
        report = build_employee_report(
            runs, employee_key, str(journal / JOURNAL_DIR), planned, title
        )
        if not report.events and not report.planned:
            raise PersonaSyncError(
                f"no journalled or planned change for employee {employee_key!r} in "
                f"{journal / JOURNAL_DIR} ({len(runs)} runs; matched by id or DN)"
            )
    elif plan_file is not None:
        plan = _read_plan(plan_file)
        population = None
        if config_path is not None and not no_directory:
            population = _population(plan, config_path, group_by, notes)
        dimensions = [parse_dimension(g) for g in group_by] or list(DEFAULT_DIMENSIONS)
        report = build_plan_report(
            plan, population, dimensions, notes, title or "persona-sync plan report"
        )
    else:
        journal = _state_dir(config_path, state_dir)
        runs = list_runs(journal)
        if not runs:
            raise PersonaSyncError(f"no runs recorded yet in {journal / JOURNAL_DIR}")
        current = None
        if not no_directory and (config_path is not None or state_dir is None):
            current = _current_values(config_path)
        report = build_history_report(
            runs, str(journal / JOURNAL_DIR), current, notes, title or "persona-sync journal report"
        )
    text = render_html(report) if fmt == "html" else render_markdown(report)
    if output is None and fmt == "html" and sys.stdout.isatty():
        output = DEFAULT_REPORT
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        _save(text, output)
        click.echo(f"report: wrote {output} ({len(text.encode()) / 1024:,.0f} KiB)", err=True)
    get_logger(__name__).info("report_written", format=fmt, bytes=len(text.encode()))
    return EXIT_OK


@cli.group("catalog")
def catalog_group() -> None:
    """The persona catalog for help-desk, device-management and Entra ID tools."""


def _targets(
    attributes: tuple[str, ...], scenarios: list[str], config_path: Path | None
) -> dict[str, str]:
    if not attributes:
        if config_path is None:
            raise ConfigError(
                "entra-groups needs the attribute persona-sync writes: pass "
                "--attribute NAME (e.g. extensionAttribute10) or --config FILE"
            )
        from persona_sync.config import load_config

        return dict(load_config(config_path).spec.targets)
    targets: dict[str, str] = {}
    for item in attributes:
        scenario, sep, name = item.rpartition("=")
        if not sep:
            if len(scenarios) != 1:
                raise ConfigError(
                    f"the rules have scenarios {', '.join(scenarios)}: pass "
                    "--attribute SCENARIO=NAME for each"
                )
            scenario = scenarios[0]
        if scenario not in scenarios:
            raise ConfigError(
                f"--attribute {item}: no scenario {scenario!r} in the rules "
                f"(scenarios: {', '.join(scenarios)})"
            )
        targets[scenario] = name
    return targets


@catalog_group.command("export")
@click.option(
    "--rules",
    "rules_path",
    type=click.Path(path_type=Path),
    help="Rule file or folder [default: the config's rules, else rules/].",
)
@config_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv", "entra-groups"]),
    default="json",
    show_default=True,
)
@click.option(
    "--attribute",
    "attributes",
    multiple=True,
    metavar="[SCENARIO=]NAME",
    help="entra-groups: the attribute holding the persona, e.g. extensionAttribute10 "
    "or extension_<appId>_persona [default: the config's targets].",
)
@click.option(
    "--group-prefix",
    default="Persona",
    show_default=True,
    help="entra-groups: start of each group's display name and mail nickname.",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write here, not stdout.")
def catalog_export_cmd(
    rules_path: Path | None,
    config_path: Path | None,
    fmt: str,
    attributes: tuple[str, ...],
    group_prefix: str,
    output: Path | None,
) -> int:
    """Export personas with their service hints, or Entra ID dynamic groups.

    \b
    json          personas with queue, tier, priority, refresh cycle, work profile
    csv           the same, one flat row per persona (ITSM and MDM imports)
    entra-groups  one dynamic group per persona: displayName, mailNickname and the
                  membershipRule, e.g. user.extensionAttribute10 -eq "vip"
    """
    from persona_sync.catalog import (
        entra_groups,
        render_catalog_csv,
        render_catalog_json,
        render_entra_groups,
    )
    from persona_sync.config import load_config
    from persona_sync.rules.loader import load_rules

    if rules_path is None:
        rules_path = load_config(config_path).rules_path if config_path else DEFAULT_RULES
    rule_set = load_rules([rules_path])
    if fmt == "json":
        text = render_catalog_json(rule_set)
    elif fmt == "csv":
        text = render_catalog_csv(rule_set)
    else:
        targets = _targets(attributes, [s.id for s in rule_set.scenarios], config_path)
        text = render_entra_groups(entra_groups(rule_set, targets, group_prefix))
    if output is None:
        click.echo(text, nl=False)
    else:
        _save(text, output)
    return EXIT_OK
