"""Every `persona-sync` command the README shows exists, with the options it is shown with.

Commands are taken from the README's code blocks (fenced or indented) and from inline code
that starts with `persona-sync `. Each is resolved through the command groups (`entra
create-extension`), and each option must be one of that command's, with a value among the
choices when the option has choices. Nothing is run: the commands need a directory.
"""

from __future__ import annotations

import re
import shlex

import click
import pytest

from persona_sync.cli.main import cli
from tests.conftest import REPO

README = REPO / "README.md"
GUIDE = "## The admin's guide"


def shown_commands(text: str) -> list[str]:
    """The persona-sync command lines of a Markdown text, in order."""
    lines: list[str] = []
    fenced = False
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
            continue
        code = fenced or line.startswith("    ")
        if pending:
            stripped = pending + " " + stripped
            pending = ""
        if code and stripped.startswith("persona-sync "):
            if stripped.endswith("\\"):
                pending = stripped[:-1].strip()
                continue
            lines.append(stripped)
        elif not code:
            lines.extend(re.findall(r"`(persona-sync [^`]+)`", line))
    return lines


def words(command: str) -> list[str]:
    """The arguments after `persona-sync`, without comments, redirections or brackets."""
    command = re.split(r"\s(?:#|>|\||&&|;)", command, maxsplit=1)[0]
    return [w.strip("[]") for w in shlex.split(command)[1:] if w.strip("[]")]


def check(args: list[str]) -> None:
    command: click.Command = cli
    rest = list(args)
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    assert not isinstance(command, click.Group), f"no command in {args}"
    options = {o: p for p in command.params if isinstance(p, click.Option) for o in p.opts}
    positional = 0
    while rest:
        word = rest.pop(0)
        if not word.startswith("-"):
            positional += 1
            continue
        name, _, inline = word.partition("=")
        assert name in options, f"{name} is not an option of {command.name} ({args})"
        option = options[name]
        if option.is_flag:
            continue
        value = inline or (rest.pop(0) if rest else "")
        if isinstance(option.type, click.Choice) and not value.isupper():  # not a placeholder
            assert value in option.type.choices, f"{name} {value}: not one of its choices"
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    most = sum(999 if a.nargs == -1 else a.nargs for a in arguments)
    assert positional <= most, f"{command.name} takes at most {most} arguments ({args})"


ALL = shown_commands(README.read_text(encoding="utf-8"))


def test_the_guide_shows_commands() -> None:
    guide = README.read_text(encoding="utf-8").split(GUIDE, 1)[1].split("\n## ", 1)[0]
    shown = [" ".join(words(c)[:1]) for c in shown_commands(guide)]
    assert {
        "check-connection",
        "plan",
        "report",
        "explain",
        "apply",
        "runs",
        "rollback",
        "sync",
    } <= set(shown)


@pytest.mark.parametrize("command", ALL)
def test_readme_command_exists(command: str) -> None:
    check(words(command))


@pytest.mark.parametrize(
    "command",
    [
        "persona-sync aply plan.json",
        "persona-sync apply --forse plan.json",
        "persona-sync plan --format yaml",
        "persona-sync entra create-extension persona --dry",
        "persona-sync rollback A B",
    ],
)
def test_a_wrong_command_is_caught(command: str) -> None:
    with pytest.raises(AssertionError):
        check(words(command))
