"""Commands for rule authors: validate, lint, test, explain, schema."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from persona_sync.cli.base import EXIT_ERROR, EXIT_OK, cli, terminal_prompt
from persona_sync.errors import ConfigError, ValidationFailed

if TYPE_CHECKING:  # the commands import the library when they run
    from persona_sync.rules.cases import Case
    from persona_sync.rules.explain import Explanation
    from persona_sync.rules.model import RuleSet

DEFAULT_RULES = Path("rules")

rules_option = click.option(
    "--rules",
    "rules_path",
    type=click.Path(path_type=Path),
    default=DEFAULT_RULES,
    show_default=True,
    help="Rule file or folder of rule files.",
)


def _load(paths: tuple[Path, ...] | list[Path]) -> RuleSet:
    from persona_sync.rules.loader import load_rules

    return load_rules(list(paths) or [DEFAULT_RULES])


@cli.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json prints {valid, errors: [{path, line, column, message}]} on stdout.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="A sync configuration: its rules (unless PATHS are given), and its feeds, whose "
    "files are read so that each feed column the rules name (hr.grade) is checked.",
)
def validate(paths: tuple[Path, ...], fmt: str, config_path: Path | None) -> int:
    """Check rule files and report every error, one per line as path:line:col: message.

    PATHS are rule files or folders (every *.yaml / *.yml directly inside); default: rules/
    (with --config: the config's rules). An attribute <feed>.<column> (hr.grade) reads a
    column of a feed: without --config such names are accepted as they are; with it, each
    must name a feed of the config and one of that feed's columns. Exit 0 when valid, 1
    when not.
    """
    try:
        rule_set = _load(paths) if config_path is None else _load_with_feeds(config_path, paths)
    except ValidationFailed as exc:
        if fmt == "json":
            click.echo(
                json.dumps(
                    {"valid": False, "errors": [_error_json(e) for e in exc.errors]}, indent=2
                )
            )
            return EXIT_ERROR
        raise
    if fmt == "json":
        click.echo(
            json.dumps({"valid": True, "errors": [], "checksum": rule_set.checksum}, indent=2)
        )
    else:
        click.echo(
            f"ok: {len(rule_set.files)} file(s), {len(rule_set.personas)} personas, "
            f"{len(rule_set.rules)} rules, {len(rule_set.facts)} facts, "
            f"{len(rule_set.scenarios)} scenario(s)"
        )
    return EXIT_OK


def _load_with_feeds(config_path: Path, paths: tuple[Path, ...]) -> RuleSet:
    """The rules (PATHS, else the config's), checked against the config's feeds."""
    from persona_sync.config import load_config
    from persona_sync.errors import LocatedError
    from persona_sync.feed_join import load_feeds

    config = load_config(config_path)
    rule_set = _load(paths or [config.rules_path])
    try:
        feeds = load_feeds(config)
    except LocatedError as exc:  # a bad feed file: reported like the rules' errors
        raise ValidationFailed([exc]) from None
    ValidationFailed.raise_if_any(feeds.problems(rule_set, unknown_feeds=True))
    return rule_set


def _error_json(error: object) -> dict[str, object]:
    location = getattr(error, "location", None)
    return {
        "path": location.path if location else None,
        "line": location.line if location else None,
        "column": location.column if location else None,
        "message": getattr(error, "text", str(error)),
    }


@cli.command("lint")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
def lint_cmd(paths: tuple[Path, ...]) -> int:
    """Warn about valid rules that are probably wrong.

    Unreachable personas, rules shadowed by a higher-precedence rule, facts mapped but
    never tested, more than ten personas. Exit 0 when clean, 1 when there are warnings
    (or errors), so it fits pre-commit hooks and CI.
    """
    from persona_sync.rules.lint import lint

    warnings = lint(_load(paths))
    for warning in warnings:
        click.echo(str(warning))
    if warnings:
        click.echo(f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}", err=True)
        return EXIT_ERROR
    click.echo("no warnings")
    return EXIT_OK


@cli.command("test")
@click.argument("cases", nargs=-1, type=click.Path(path_type=Path))
@rules_option
@click.option("-v", "--verbose", is_flag=True, help="One line per case, not one dot.")
def test_cmd(cases: tuple[Path, ...], rules_path: Path, verbose: bool) -> int:
    """Run rule tests: YAML cases of attributes and the persona each should get.

    CASES are case files or folders (default: the rules folder's cases/). Output is like
    pytest's; exit 1 when any case fails.
    """
    from persona_sync.rules.cases import load_cases, run_case
    from persona_sync.rules.engine import Engine
    from persona_sync.rules.loader import load_rules

    started = time.perf_counter()
    rule_set = load_rules([rules_path])
    engine = Engine(rule_set)
    loaded = load_cases(list(cases) or [rules_path / "cases"], rule_set)
    results = [run_case(engine, case) for case in loaded]
    by_file: dict[str, list[str]] = {}
    for result in results:
        mark = "." if result.passed else "F"
        if verbose:
            status = "PASSED" if result.passed else "FAILED"
            click.echo(f"{result.case.location} {result.case.name} {status}")
        else:
            by_file.setdefault(result.case.location.path, []).append(mark)
    for path, marks in by_file.items():
        click.echo(f"{path} {''.join(marks)}")
    failed = [r for r in results if not r.passed]
    if failed:
        click.echo("")
        for result in failed:
            for failure in result.failures:
                click.echo(f"FAILED {result.case.location} {result.case.name}: {failure}")
    passed = len(results) - len(failed)
    elapsed = time.perf_counter() - started
    click.echo(f"{passed} passed, {len(failed)} failed in {elapsed:.2f}s")
    return EXIT_ERROR if failed else EXIT_OK


@cli.command("explain")
@click.argument("employee_key", metavar="[EMPLOYEE]", required=False)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar="PERSONA_SYNC_CONFIG",
    help="With EMPLOYEE: the sync configuration whose directory and rules to use.",
)
@rules_option
@click.option(
    "--attr",
    "attrs",
    multiple=True,
    metavar="NAME=VALUE",
    help="An attribute of the employee (repeatable).",
)
@click.option(
    "--case",
    "case_file",
    type=click.Path(path_type=Path),
    help="Take the employee from a case file.",
)
@click.option("--name", "case_name", help="Which case (part of its name), if the file has several.")
@click.option("--id", "employee_id", help="Account name to show (and for rules reading @id).")
@click.option("--dn", help="DN to show (and for rules reading @dn).")
@click.option(
    "--org-depth", type=click.IntRange(min=0), help="Levels below the top of the manager chain."
)
@click.option("--direct-reports", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--read",
    "read_directory",
    is_flag=True,
    help="With EMPLOYEE: read the directory now instead of the snapshot the last plan or "
    "sync saved.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def explain_cmd(
    employee_key: str | None,
    config_path: Path | None,
    rules_path: Path,
    attrs: tuple[str, ...],
    case_file: Path | None,
    case_name: str | None,
    employee_id: str | None,
    dn: str | None,
    org_depth: int | None,
    direct_reports: int,
    read_directory: bool,
    fmt: str,
) -> int:
    """Show why an employee gets a persona.

    Prints each fact with where its value came from, every rule of every persona with
    the result of each condition, the candidates, and why the winner won. The employee
    comes from the configured directory (EMPLOYEE: id, sAMAccountName/uid, UPN, mail or
    DN; rules from the config), from a case file, or from --attr options. An EMPLOYEE is
    looked up in the snapshot the last plan or sync saved (no directory read; stderr says
    when it was read), else in the directory; --read always reads the directory. The
    config's feeds are read now and joined: a fact from a feed names its file, line and
    column (feed hr, hr-export.csv:17, column grade). --attr hr.grade=7 gives a feed
    column by hand.

    \b
    Examples:
      persona-sync explain jdoe
      persona-sync explain --attr title="Trauma Surgeon" --attr department=Surgery
      persona-sync explain --case rules/cases/default.yaml --name cashier
    """
    from persona_sync.employee import Employee
    from persona_sync.feed_join import load_feeds
    from persona_sync.rules.cases import load_cases
    from persona_sync.rules.engine import Engine
    from persona_sync.rules.explain import explain
    from persona_sync.rules.loader import load_rules
    from persona_sync.rules.orgchart import Position
    from persona_sync.session import find_employee, find_in_snapshot, open_session

    if employee_key is not None:
        if attrs or case_file:
            raise ConfigError("give EMPLOYEE, --case or --attr, not several")
        session = open_session(config_path, terminal_prompt())
        feeds = load_feeds(session.config)
        found = None if read_directory else find_in_snapshot(session, employee_key)
        if found is None:
            employee, position = find_employee(session, employee_key)
        else:
            employee, position = found.employee, found.position
            click.echo(
                f"explain: {employee.id} as read in {found.source} (--read reads the "
                "directory now)",
                err=True,
            )
        cells = feeds.cells(employee)
        _print_explanation(explain(session.engine, feeds.join(employee), position, cells), fmt)
        return EXIT_OK
    rule_set = load_rules([rules_path])
    engine = Engine(rule_set)
    if case_file is not None:
        if attrs:
            raise ConfigError("give either --case or --attr, not both")
        case = _pick_case(load_cases([case_file], rule_set), case_name, case_file)
        employee, position = case.employee, case.position
    elif attrs:
        employee = Employee(
            employee_id or "(from --attr)",
            dn or employee_id or "(from --attr)",
            _parse_attrs(attrs),
        )
        position = Position(org_depth, direct_reports) if org_depth is not None else None
    else:
        raise ConfigError("say which employee: EMPLOYEE, --attr NAME=VALUE ... or --case FILE")
    _print_explanation(explain(engine, employee, position), fmt)
    return EXIT_OK


def _print_explanation(result: Explanation, fmt: str) -> None:
    from persona_sync.rules.explain import as_dict, render_text

    if fmt == "json":
        click.echo(json.dumps(as_dict(result), indent=2, ensure_ascii=False))
    else:
        click.echo(render_text(result))


def _parse_attrs(attrs: tuple[str, ...]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for item in attrs:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--attr expects NAME=VALUE, got {item!r}")
        parsed[name.strip().lower()] = value
    return parsed


def _pick_case(cases: list[Case], name: str | None, path: Path) -> Case:
    if name is None:
        if len(cases) == 1:
            return cases[0]
        raise ConfigError(f"{path} has {len(cases)} cases: pick one with --name")
    wanted = name.casefold()
    found = [c for c in cases if wanted in c.name.casefold()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise ConfigError(f"no case in {path} has {name!r} in its name")
    names = "; ".join(c.name for c in found[:5])
    raise ConfigError(f"{len(found)} cases in {path} match {name!r}: {names}")


@cli.command("schema")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="Folder for the JSON Schema files.",
)
@click.option("--check", is_flag=True, help="Only check; exit 1 when a schema is stale.")
def schema_cmd(out: Path, check: bool) -> int:
    """Write JSON Schemas for rule files, case files and the sync configuration.

    Name the schema at the top of a YAML file so editors autocomplete and check it:
    `# yaml-language-server: $schema=../schemas/rules.schema.json`.
    """
    from persona_sync.schemas import stale_schemas, write_schemas

    if check:
        stale = stale_schemas(out)
        for name in stale:
            click.echo(f"stale: {out / name} (run `persona-sync schema` to update)", err=True)
        if not stale:
            click.echo(f"schemas in {out} are up to date")
        return EXIT_ERROR if stale else EXIT_OK
    changed = write_schemas(out)
    for path in changed:
        click.echo(f"wrote {path}")
    if not changed:
        click.echo(f"schemas in {out} are up to date")
    return EXIT_OK
