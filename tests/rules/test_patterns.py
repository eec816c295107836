"""Rule patterns: Python's syntax and meaning, searched in linear time (Python's re when
backtracking is bounded, RE2 otherwise), unsupported constructs refused by name."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import re2
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from persona_sync.errors import ValidationFailed
from persona_sync.rules.loader import load_rules
from persona_sync.rules.patterns import PatternError, _unicode_class, compile_pattern, translate
from tests.conftest import DEFAULT_RULES

LINEAR = (
    "which has no linear-time match: rule patterns keep to what RE2 can run "
    "(https://github.com/google/re2/wiki/Syntax)"
)


def _re2(pattern: str, *, ignore_case: bool) -> re2._Regexp:
    options = re2.Options()
    options.log_errors = False
    return re2.compile(translate(pattern, ignore_case=ignore_case), options)


def test_the_default_catalog_keeps_pythons_re_and_hostile_patterns_get_re2() -> None:
    rule_set = load_rules([DEFAULT_RULES])
    patterns = [p for f in rule_set.facts.values() for s in f.sources for p, _ in s.table or ()]
    assert patterns and {p.engine for p in patterns} == {"re"}
    for hostile in ["(a+)+$", "(a|a)*b", "^.*x", "(\\w+\\s?)*$", "a{0,9}" * 8, "(a|aa)" * 12]:
        assert compile_pattern(hostile, ignore_case=True).engine == "re2", hostile
    assert compile_pattern(r"\b(senior|sr\.?)\b", ignore_case=True).engine == "re"


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"(a)\1", "a backreference to group 1"),
        (r"(?P<x>a)(?P=x)", "a backreference to group 1"),
        (r"a(?=b)", "a lookahead (?=...)"),
        (r"a(?!b)", "a negative lookahead (?!...)"),
        (r"(?<=a)b", "a lookbehind (?<=...)"),
        (r"(?<!a)b", "a negative lookbehind (?<!...)"),
        (r"(a)?(?(1)b|c)", "a conditional group (?(...)...)"),
        (r"(?>ab)", "an atomic group (?>...)"),
        (r"a++", "a possessive quantifier (*+, ++, ?+)"),
        (r"a{1001}", "a repetition count above 1000 ({1001})"),
        (r"a{2,5000}", "a repetition count above 1000 ({2,5000})"),
    ],
)
def test_constructs_without_a_linear_time_match_are_refused_by_name(
    pattern: str, construct: str
) -> None:
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern, ignore_case=True)
    assert str(caught.value) == f"regular expression {pattern!r} uses {construct}, {LINEAR}"


def test_other_refusals_say_why() -> None:
    with pytest.raises(PatternError) as caught:
        compile_pattern("(unclosed", ignore_case=True)
    assert str(caught.value) == (
        "invalid regular expression '(unclosed': missing ), unterminated subpattern at position 0"
    )
    with pytest.raises(PatternError) as caught:
        compile_pattern("(a{1000}){1000}", ignore_case=True)
    assert str(caught.value) == (  # RE2 bounds nested counts by their product
        "regular expression '(a{1000}){1000}' is too large for linear-time matching "
        "(RE2: invalid repetition size: {1000})"
    )
    deep = "(?:" * 5000 + "a" + ")" * 5000
    with pytest.raises(PatternError) as caught:
        compile_pattern(deep, ignore_case=True)
    assert str(caught.value) == (
        f"invalid regular expression {deep[:60]!r}... (20,001 characters): groups are nested "
        "too deeply"
    )


@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")
def test_python_syntax_that_re2_spells_differently_keeps_its_meaning() -> None:
    cases = [
        (r"(?x) senior \s+ manager  # verbose, with a comment", "senior  manager", True),
        (r"ab\Z", "xab", True),
        (r"ab\Z", "ab\n", False),
        (r"\u00e9t\N{LATIN SMALL LETTER E WITH ACUTE}", "été", True),
        (r"^a{,2}$", "aa", True),
        (r"x{", "x{", True),  # a brace that opens no count is a literal
        (r"[[:alpha:]]", ":]", True),  # Python reads a set of '[', ':', 'a', ... then ']'
        (r"(?i:ab)(?-i:c)", "ABc", True),
        (r"(?i:ab)(?-i:c)", "ABC", False),
        (r"(?a)\w+$", "é", False),
        (r"^\w+$", "Müller", True),
        (r"^\d+$", "١٢٣", True),  # Arabic-Indic digits are digits to Python
        (r"^\s$", "\u2003", True),
        (r"^\s$", "\v", True),  # RE2's own \s lacks \v
        (r"^[^\W\d_]+$", "Zoë", True),
        (r"^[^\W\d_]+$", "Zoë2", False),
        (r"x$", "x\n", True),  # $ before a final newline, as in Python
        (r"(?m)^b$", "a\nb\nc", True),
        (r"a.c", "a\nc", False),
        (r"(?s)a.c", "a\nc", True),
    ]
    for pattern, text, found in cases:
        python = re.search(pattern, text)
        assert (python is not None) == found, (pattern, text)
        ported = _re2(pattern, ignore_case=False).search(text)
        assert (ported is not None) == found, (pattern, text)


def test_captures_keep_their_groups_on_both_engines() -> None:
    for pattern in [r"(?P<value>\d+)-(\w+)", r"(\d+)-(?P<value>\w+)+"]:
        compiled = compile_pattern(pattern, ignore_case=True)
        python = re.compile(pattern, re.IGNORECASE)
        assert (compiled.groups, dict(compiled.groupindex)) == (python.groups, python.groupindex)
        match = compiled.search("id 42-Zoë!")
        assert match is not None
        assert [match.group(i) for i in (0, 1, 2, "value")] == [
            python.search("id 42-Zoë!").group(i)  # type: ignore[union-attr]
            for i in (0, 1, 2, "value")
        ]


def test_the_classes_are_pythons_on_every_tested_code_point() -> None:
    points = [*range(0, 0x3000), *range(0x3000, 0x110000, 97)]
    text = "".join(chr(c) for c in points if not 0xD800 <= c <= 0xDFFF)
    for shorthand in ["\\d", "\\w", "\\s", "\\D", "\\W", "\\S", "[^\\W\\d_]", "[\\d\\s]"]:
        expected = re.findall(shorthand, text)
        assert _re2(shorthand, ignore_case=False).findall(text) == expected, shorthand


@pytest.mark.parametrize(
    ("kind", "member"),
    [
        ("DIGIT", str.isdecimal),
        ("SPACE", str.isspace),
        ("WORD", lambda c: c.isalnum() or c == "_"),
    ],
)
def test_the_unicode_classes_hold_exactly_the_str_methods_code_points(
    kind: str, member: Callable[[str], bool]
) -> None:
    expected = [code for code in range(0x110000) if member(chr(code))]
    built = [code for low, high in _unicode_class(kind) for code in range(low, high + 1)]
    assert built == expected


def test_documented_difference_word_boundary_is_ascii_on_re2() -> None:
    # Python's \b sees 'é' as a letter; RE2's \b does not.
    python = compile_pattern(r"\bdirector\b", ignore_case=True)
    ported = compile_pattern(r"\bdirector\b.*", ignore_case=True)
    assert (python.engine, ported.engine) == ("re", "re2")
    assert python.search("Directoré") is None
    assert ported.search("Directoré") is not None
    assert ported.search("Sub-director of sales") is not None


def test_lone_surrogates_in_a_value_do_not_break_re2() -> None:
    compiled = compile_pattern(r"(a+)+b", ignore_case=True)
    assert compiled.engine == "re2"
    match = compiled.search("x\ud800aab")
    assert match is not None and match.group(0) == "aab"


# Differential check: random patterns (no \b and no $, the two documented differences)
# give the same matches and groups on RE2 as on Python's re.
_atoms = st.sampled_from(
    ["a", "b", "é", "É", " ", "\\.", ".", "[a-c]", "[^a]", "\\d", "\\w", "\\s", "\\W", "[é-ë]"]
)


def _combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, st.sampled_from(["*", "+", "?", "{1,2}", "*?", "+?", "??"])).map("".join),
        st.lists(inner, min_size=2, max_size=3).map("".join),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: "(" + "|".join(xs) + ")"),
        inner.map(lambda x: f"(?:{x})"),
        inner.map(lambda x: f"(?P<value>{x})"),
    )


_patterns = st.tuples(
    st.sampled_from(["", "^", "\\A"]), st.recursive(_atoms, _combine, max_leaves=6)
).map("".join)
_texts = st.text(alphabet="abcéÉ .1\n_x", max_size=12)


@settings(max_examples=300, deadline=None, derandomize=True)  # same draws every CI run
@given(_patterns, _texts, st.booleans())
def test_re2_spelling_agrees_with_python(pattern: str, text: str, ignore_case: bool) -> None:
    try:
        compiled = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error:  # e.g. a group name used twice
        assume(False)
    python = compiled.search(text)
    try:
        ported = _re2(pattern, ignore_case=ignore_case).search(text)
    except PatternError:  # a possessive quantifier, such as a*+
        assume(False)
    assert (ported is None) == (python is None)
    if python is not None and ported is not None:
        assert ported.span() == python.span()
        assert ported.groups() == python.groups()


def test_rule_patterns_give_located_errors(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(
        "facts:\n  role.title:\n    from: title\n    capture: '(?<=x)y'\n"
        "personas:\n  - {id: p, name: P, precedence: 1, default: true}\n",
        encoding="utf-8",
    )
    with pytest.raises(ValidationFailed) as caught:
        load_rules([path])
    assert str(caught.value) == (
        f"{path}:4:14: regular expression '(?<=x)y' uses a lookbehind (?<=...), {LINEAR}"
    )


def test_patterns_compare_like_pythons_by_text_and_flags() -> None:
    first, again = (compile_pattern("(a+)+$", ignore_case=True) for _ in range(2))
    assert first == again and hash(first) == hash(again)
    assert first != compile_pattern("(a+)+$", ignore_case=False)
