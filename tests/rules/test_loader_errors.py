"""Every kind of rule-file mistake gives its own located message, all in one pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from persona_sync.errors import ValidationFailed
from persona_sync.rules.loader import load_rules

Write = Callable[[str, str], Path]

FACTS = """
facts:
  role.title:
    from: title
  seniority:
    type: number
    from: grade
"""


def where(path: Path, needle: str, nth: int = 1, offset: int = 0) -> str:
    """``path:line:col`` of the nth occurrence of needle (plus offset) in the file."""
    text = path.read_text(encoding="utf-8")
    index = -1
    for _ in range(nth):
        index = text.index(needle, index + 1)
    index += offset
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"{path}:{line}:{column}"


def errors_of(*paths: Path) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        load_rules(list(paths))
    return [e.message for e in caught.value.errors]


def test_every_cross_reference_error_is_reported_at_once(write: Write) -> None:
    path = write(
        "a.yaml",
        FACTS
        + """
personas:
  - id: vip
    name: VIP
    precedence: 100
    rules:
      - id: vip-exec
        when:
          fact: seniorty
          gte: 9
      - id: vip-title
        when:
          fact: role.title
          matches: "(unclosed"
  - id: other
    name: Other
    precedence: 100
    default: true
    rules:
      - id: vip-exec
        when:
          fact: role.title
          gte: 3
  - id: third
    name: Third
    precedence: 50
    default: true
scenarios:
  - id: routing
    order: [vip, othr]
""",
    )
    regex = where(path, '"(unclosed')
    assert errors_of(path) == [
        f"{where(path, 'seniorty')}: unknown fact 'seniorty' (did you mean 'seniority'?)",
        f"{regex}: invalid regular expression '(unclosed': missing ), "
        "unterminated subpattern at position 0",
        f"{where(path, 'id: other')}: persona 'other' has precedence 100, like 'vip' "
        f"({where(path, 'id: vip')}): an employee matching both would be a coin toss; give "
        "them different precedences",
        f"{where(path, 'vip-exec', 2)}: duplicate rule id 'vip-exec' (first defined at "
        f"{where(path, 'id: vip-exec')})",
        f"{where(path, 'gte: 3', offset=5)}: 'gte' compares numbers, but fact 'role.title' "
        "is a string",
        f"{where(path, 'id: third')}: more than one default persona: 'third' and 'other' "
        f"({where(path, 'id: other')}); keep one default: true",
        f"{where(path, 'othr')}: unknown persona 'othr' (did you mean 'other'?)",
    ]


def test_schema_errors_and_cross_checks_in_one_pass(write: Write) -> None:
    path = write(
        "a.yaml",
        FACTS
        + """
personas:
  - id: vip
    name: VIP
    precedence: high
    colour: blue
  - id: typo
    name: Typo
    precedence: 2
    rules:
      - id: r1
        when:
          fact: role.titel
          equals: x
  - id: plain
    name: Plain
    precedence: 1
    default: true
    rules:
      - id: r2
        when: {fact: role.title}
      - id: r3
        when: {fatc: role.title, equals: x}
""",
    )
    assert errors_of(path) == [
        f"{where(path, 'high')}: precedence: input should be a valid integer, unable to "
        "parse string as an integer",
        f"{where(path, 'colour')}: unknown key 'colour'",
        f"{where(path, 'role.titel')}: unknown fact 'role.titel' (did you mean 'role.title'?)",
        f"{where(path, 'role.title}')}: a test of fact 'role.title' needs exactly one "
        "operator (equals, in, not_in, matches, starts_with, ends_with, contains, gt, gte, lt, "
        "lte, between, exists, missing, is); found: none",
        f"{where(path, '{fatc')}: a condition is a mapping with one of the keys: fact, all, "
        "any, not",
    ]


def test_unknown_key_suggests_the_near_one(write: Write) -> None:
    path = write("a.yaml", FACTS + "personas:\n  - id: x\n    name: X\n    precedense: 1\n")
    assert errors_of(path) == [
        f"{where(path, 'id: x')}: missing required key 'precedence'",
        f"{where(path, 'precedense')}: unknown key 'precedense' (did you mean 'precedence'?)",
    ]


@pytest.mark.parametrize(
    ("fact", "needle", "message"),
    [
        (
            "x:\n    type: number\n    from: a\n    flag: 2\n",
            "2\n",
            "flag gives true or false: use it on a fact of type boolean",
        ),
        (
            "x:\n    type: boolean\n    org_chart: {top: 5}\n",
            "{top",
            "org_chart gives a number: use it on a fact of type number",
        ),
        (
            "x:\n    from: '@nope'\n",
            "'@nope'",
            "unknown built-in attribute '@nope' (known: @direct_reports, @dn, @id, @org_depth)",
        ),
        (
            "x:\n    from: a\n    table:\n      - {match: '[', value: y}\n",
            "'['",
            "invalid regular expression '[': unterminated character set at position 0",
        ),
        (
            "x:\n    type: number\n    from: a\n    map: {a: high}\n",
            "high",
            "expected a number for a number fact, got 'high'",
        ),
        (
            "Bad-Name:\n    from: a\n",
            "Bad-Name",
            "invalid fact name 'Bad-Name': use lower-case words joined by '.' or '_', e.g. "
            "role.title",
        ),
        (
            "x:\n    type: string\n",
            "type",
            "a fact needs a source (from, value, org_chart or sources) or a default",
        ),
        (
            "x:\n    from: a\n    value: 1\n",
            "from: a",
            "a fact source needs exactly one of: from, value, org_chart; found: from, value",
        ),
    ],
)
def test_fact_mapping_errors(write: Write, fact: str, needle: str, message: str) -> None:
    path = write(
        "f.yaml",
        "personas:\n  - {id: d, name: D, precedence: 1, default: true}\nfacts:\n  " + fact,
    )
    assert errors_of(path) == [f"{where(path, needle)}: {message}"]


def test_empty_file_folder_and_missing_path(write: Write, tmp_path: Path) -> None:
    empty = write("empty.yaml", "")
    folder = tmp_path / "nothing"
    folder.mkdir()
    assert errors_of(empty, folder, tmp_path / "gone") == [
        f"{tmp_path / 'gone'}: no such file or folder",
        f"{folder}: no rule files (*.yaml, *.yml) in this folder",
        f"{empty}:1:1: file is empty: a rule file declares personas, facts, scope or scenarios",
    ]


def test_tab_and_bad_bytes_in_a_folder(write: Write, tmp_path: Path) -> None:
    write("rules/tab.yaml", "personas:\n\t- id: x\n")
    (tmp_path / "rules" / "bin.yaml").write_bytes(b"facts:\n  x:\n    from: \xff\n")
    folder = tmp_path / "rules"
    assert errors_of(folder) == [
        f"{folder}/bin.yaml:3:11: file is not valid UTF-8 (byte 0xff)",
        f"{folder}/tab.yaml:2:1: tab character in indentation: YAML indents with spaces only",
    ]


def test_duplicates_across_files(write: Write) -> None:
    first = write(
        "a.yaml", FACTS + "personas:\n  - {id: x, name: X, precedence: 1, default: true}\n"
    )
    second = write(
        "b.yaml",
        FACTS + "personas:\n  - {id: x, name: X2, precedence: 2}\nscope: {unmatched: leave}\n",
    )
    third = write("c.yaml", "scope: {unmatched: clear}\n")
    assert errors_of(first, second, third) == [
        f"{second}:2:3: duplicate fact 'role.title' (first defined at {first}:2:3)",
        f"{second}:4:3: duplicate fact 'seniority' (first defined at {first}:4:3)",
        f"{where(second, 'x, name: X2')}: duplicate persona id 'x' (first defined at "
        f"{where(first, '{id: x')})",
        f"{third}:1:1: scope is defined twice (first at {second}:9:1): keep one",
    ]


def test_no_default_persona_when_unmatched_get_the_default(write: Write) -> None:
    path = write("a.yaml", FACTS + "personas:\n  - {id: x, name: X, precedence: 1}\n")
    assert errors_of(path) == [
        f"{path}:8:5: no persona has default: true, but unmatched employees get the default "
        "persona: mark one persona default: true, or set scope.unmatched to leave or clear"
    ]


def test_no_personas_at_all(write: Write) -> None:
    path = write("a.yaml", FACTS)
    assert errors_of(path) == [f"{path}:1:1: no personas defined in {path}"]


def test_operand_type_errors(write: Write) -> None:
    path = write(
        "a.yaml",
        FACTS
        + """
  flag:
    type: boolean
    from: f
personas:
  - id: x
    name: X
    precedence: 1
    default: true
    rules:
      - id: a
        when: {fact: seniority, equals: high}
      - id: b
        when: {fact: flag, matches: yes}
      - id: c
        when: {fact: seniority, between: [9, 3]}
      - id: d
        when: {fact: role.title, is: true}
      - id: e
        when: {fact: role.title, equals: true}
""",
    )
    assert errors_of(path) == [
        f"{where(path, 'high')}: expected a number for a number fact, got 'high'",
        f"{where(path, 'yes')}: 'matches' tests text, but fact 'flag' is a boolean",
        f"{where(path, '[9, 3]')}: between needs [low, high] with low <= high, got [9, 3]",
        f"{where(path, 'true}')}: 'is' tests true/false, but fact 'role.title' is a string",
        f"{where(path, 'true}', 2)}: expected text for a string fact, got true",
    ]
