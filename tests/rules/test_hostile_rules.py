"""Hostile rule files (issue 9, point 14): rule files come in pull requests and `validate`
runs in CI on them, so no file may make persona-sync hang, recurse without end or crash.

The CLI runs in a subprocess with a generous timeout: a regression fails the test instead
of hanging the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from persona_sync.config import load_config
from persona_sync.errors import RuleError, ValidationFailed
from persona_sync.rules.cases import load_cases
from persona_sync.rules.loader import load_rules
from persona_sync.yamlsource import MAX_ALIAS_VALUES, MAX_DEPTH, parse_yaml
from tests.conftest import DEFAULT_RULES

Write = Callable[[str, str], Path]
RunCli = Callable[..., Result]
TIMEOUT = 120  # seconds; each run takes about one
TITLE = "a" * 40 + "!"  # 41 characters: minutes of backtracking for (a+)+$ in Python's re
LINEAR = (
    "which has no linear-time match: rule patterns keep to what RE2 can run "
    "(https://github.com/google/re2/wiki/Syntax)"
)


def persona_sync(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persona_sync", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )


def alias_bomb() -> str:
    """Nine levels of nine aliases: 387,420,489 strings once expanded."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    for level in range(1, 10):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_alias_bomb_is_refused_at_the_alias_that_crosses_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(), encoding="utf-8")
    done = persona_sync("validate", str(path))
    # a1: 9 x 10 values, a2: 9 x 91, a3: 9 x 820 = 8,289 so far; the first *a3 in a4 adds
    # 7,381 more.
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"{path}:5:10: alias *a3 makes the aliases in this file expand to more than "
        "10,000 values\n1 error\n",
    )


def test_5000_deep_list_is_refused_where_it_crosses_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("personas: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    done = persona_sync("validate", str(path))
    # The mapping is level 1, so the 64th '[' (column 74) opens level 65.
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"{path}:1:74: values nested more than 64 levels deep\n1 error\n",
    )


def test_the_config_and_case_files_have_the_same_bounds(tmp_path: Path) -> None:
    config = tmp_path / "persona-sync.yaml"
    config.write_text(alias_bomb(), encoding="utf-8")
    with pytest.raises(RuleError) as caught:
        load_config(config, {})
    assert str(caught.value) == (
        f"{config}:5:10: alias *a3 makes the aliases in this file expand to more than 10,000 values"
    )
    cases = tmp_path / "cases.yaml"
    cases.write_text("cases: " + "[" * 100 + "]" * 100 + "\n", encoding="utf-8")
    with pytest.raises(ValidationFailed) as caught_cases:
        load_cases([cases], load_rules([DEFAULT_RULES]))
    assert str(caught_cases.value) == f"{cases}:1:71: values nested more than 64 levels deep"


def test_deep_block_list_and_deep_mapping_are_refused() -> None:
    with pytest.raises(RuleError) as caught:
        parse_yaml("- " * 5000 + "x\n", "f.yaml")
    assert str(caught.value) == "f.yaml:1:129: values nested more than 64 levels deep"
    with pytest.raises(RuleError) as caught:
        parse_yaml("{a: " * 5000 + "x" + "}" * 5000, "f.yaml")
    assert str(caught.value) == "f.yaml:1:257: values nested more than 64 levels deep"


def test_the_bounds_leave_room_for_real_files() -> None:
    deepest = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_yaml(deepest, "f.yaml").data is not None
    many = "base: &base {queue: desk, tier: 2}\n" + "".join(
        f"p{i}: *base\n" for i in range(MAX_ALIAS_VALUES // 5)
    )
    doc = parse_yaml(many, "f.yaml")
    assert doc.data["p0"] == {"queue": "desk", "tier": 2}
    assert len(doc.data) == MAX_ALIAS_VALUES // 5 + 1


def test_control_characters_in_a_quoted_key_keep_the_message_on_one_line(
    tmp_path: Path, run_cli: RunCli
) -> None:
    path = tmp_path / "r.yaml"
    path.write_text('"per\\nsonas\\x00": []\n', encoding="utf-8")
    done = run_cli("validate", str(path))
    assert (done.exit_code, done.stdout, done.stderr) == (
        1,
        "",
        f"{path}:1:1: no personas defined in {path}\n"
        f"{path}:1:1: unknown key 'per\\nsonas\\x00' (did you mean 'personas'?)\n2 errors\n",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &a [1, *a]\n", "f.yaml:1:11: alias *a is inside the value it names"),
        ("a: &a {b: {c: *a}}\n", "f.yaml:1:15: alias *a is inside the value it names"),
        (
            "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 24 + "*a" + "]" * 24 + "\n",
            "f.yaml:2:28: alias *a nests values more than 64 levels deep",
        ),
        ("a: *nothing\n", "f.yaml:1:4: invalid YAML: found undefined alias 'nothing'"),
        (
            "a: &x 1\nb: &x 2\n",
            "f.yaml:2:4: invalid YAML: found duplicate anchor 'x' (first at line 1)",
        ),
    ],
)
def test_alias_cycles_and_depth_through_aliases_are_refused(text: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_yaml(text, "f.yaml")
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "precedence: " + "9" * 5000 + "\n",
            "f.yaml:1:13: invalid value: cannot read '999999999999999999999999999999999999999"
            "... (5,000 characters) as an integer",
        ),
        ("a: !!float abc\n", "f.yaml:1:4: invalid value: cannot read 'abc' as a number"),
        ("a: !!int abc\n", "f.yaml:1:4: invalid value: cannot read 'abc' as an integer"),
        ("a: !!int\n", "f.yaml:1:4: invalid value: cannot read '' as an integer"),
        ("a: !!bool maybe\n", "f.yaml:1:4: invalid value: cannot read 'maybe' as true or false"),
        (
            "a: !!timestamp noon\n",
            "f.yaml:1:4: invalid value: cannot read 'noon' as a date and time",
        ),
        (
            "a: !!python/object:os.system ls\n",
            "f.yaml:1:4: invalid value: could not determine a constructor for the tag "
            "'tag:yaml.org,2002:python/object:os.system'",
        ),
        (
            'a: "\\ud800"\n',
            "f.yaml:1:4: invalid value: an escape gives half of a UTF-16 surrogate pair, not a "
            "character",
        ),
        ("? !!int x\n: 1\n", "f.yaml:1:3: invalid value: cannot read 'x' as an integer"),
    ],
)
def test_hostile_scalars_are_located_errors(text: str, message: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse_yaml(text, "f.yaml")
    assert str(caught.value) == message


FACTS = """\
facts:
  role.title:
    from: title
"""
PERSONAS = """\
personas:
  - id: staff
    name: Staff
    precedence: 10
    default: true
  - id: hostile
    name: Hostile
    precedence: 20
    rules:
      - id: hostile-rule
        when: {when}
"""
# (a+)+$ in each place a rule can supply a pattern.
PLACES = {
    "table": (
        FACTS + "  role.kind:\n    from: title\n    table:\n"
        "      - {match: '(a+)+$', value: hostile}\n    default: other\n",
        "{fact: role.kind, equals: hostile}",
        "  role.kind   = 'other'                  <- default",
    ),
    "capture": (
        FACTS + "  role.kind:\n    from: title\n    capture: '(a+)+$'\n",
        "{fact: role.kind, exists: true}",
        "  role.kind   = (missing)                <- no source had a value",
    ),
    "matches": (
        FACTS,
        "{fact: role.title, matches: '(a+)+$'}",
        "      [no ] role.title matches /(a+)+$/  (is 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!')",
    ),
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_nested_quantifiers_answer_at_once(write: Write, place: str) -> None:
    facts, when, line = PLACES[place]
    rules = write("rules/r.yaml", facts + PERSONAS.format(when=when))
    done = persona_sync("explain", "--rules", str(rules.parent), "--attr", f"title={TITLE}")
    assert (done.returncode, done.stderr) == (0, "")
    assert line in done.stdout.splitlines()
    assert "  => staff: no persona matched: the default persona 'staff' applies" in (
        done.stdout.splitlines()
    )


def test_plan_over_a_directory_of_hostile_titles_answers(write: Write, tmp_path: Path) -> None:
    facts, when, _ = PLACES["table"]
    write("rules/r.yaml", facts + PERSONAS.format(when=when))
    entries = "".join(
        f"dn: cn=User {i},ou=People,dc=example,dc=com\nobjectClass: top\nobjectClass: person\n"
        f"objectClass: organizationalPerson\nobjectClass: inetOrgPerson\ncn: User {i}\n"
        f"sn: User\nuid: user{i}\ntitle: {'a' * (30 + i)}!\n\n"
        for i in range(50)
    )
    write("company.ldif", "version: 1\n\n" + entries)
    write(
        "persona-sync.yaml",
        "rules: rules\ndirectory: {type: file, path: company.ldif}\n"
        "targets: {persona: employeeType}\nsafety: {max_changes: 500, max_change_percent: 100}\n"
        "state_dir: state\n",
    )
    done = persona_sync("plan", "--format", "csv", "-q", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, "")
    assert len([line for line in done.stdout.splitlines() if ",staff," in line]) == 50


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        ("(a)\\\\1", "a backreference to group 1"),
        ("(?=a)a", "a lookahead (?=...)"),
        ("(?<!x)a", "a negative lookbehind (?<!...)"),
    ],
)
def test_patterns_without_a_linear_time_match_are_refused_with_their_location(
    write: Write, run_cli: RunCli, pattern: str, construct: str
) -> None:
    path = write(
        "r.yaml",
        FACTS + PERSONAS.format(when=f'{{fact: role.title, matches: "{pattern}"}}'),
    )
    written = pattern.replace("\\\\", "\\")
    done = run_cli("validate", str(path))  # refused at load: in process is safe
    assert (done.exit_code, done.stdout, done.stderr) == (
        1,
        "",
        f"{path}:14:43: regular expression {written!r} uses {construct}, {LINEAR}\n1 error\n",
    )
