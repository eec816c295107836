"""Regular expressions from rule files, matched in time linear in the text.

Rule files arrive in pull requests, so a pattern is untrusted input. Python's ``re``
backtracks: ``(a+)+$`` takes minutes on a 41-character title, and even ``.*x`` is quadratic
on a 100 KB attribute value. Every pattern a rule supplies (a fact table's ``match``, a
``capture``, the ``matches`` operator) therefore gets a search whose time is linear in the
text:

- A pattern whose backtracking is bounded (no ``*``, ``+`` or ``{n,}``, and at most
  :data:`MAX_BACKTRACKING` steps per start position: alternatives, ``?`` and small counts,
  which is what keyword tables are) is searched by Python's ``re``, exactly as before and
  about five times faster per call than RE2 through its Python binding.
- Any other pattern is searched by RE2 (google-re2), which never backtracks.

Authors write Python syntax either way: the pattern is parsed by Python's own parser (so
syntax errors read as they always did), and the parse tree is written out again in RE2
syntax. That keeps Python's meaning for what rules use: search anywhere in the value,
``IGNORECASE``, named and numbered groups (``capture`` reads ``value``, else group 1),
verbose ``(?x)`` and comments, ``{,n}``, ``\\Z``, and ``\\d``, ``\\w``, ``\\s`` as Python's
Unicode classes (exactly: they are built from ``str.isdecimal``, ``isalnum`` and
``isspace``). On RE2, ``$`` also matches before a final newline, as in Python (RE2 cannot
look ahead, so that newline joins the match).

Two differences remain on RE2: ``\\b`` and ``\\B`` are ASCII word boundaries (RE2 has no
Unicode one: on RE2, ``\\bdirector\\b`` would also match in ``directoré``), and case
folding is Unicode simple folding. What RE2 cannot do in linear time is refused for every
pattern when the rules load, naming the construct: backreferences, lookahead and lookbehind,
conditional groups, atomic groups, possessive quantifiers, and repetition counts above
1,000. The
engine depends on the pattern alone, never on the text, and every pattern stays portable
to RE2.
"""

from __future__ import annotations

import array
import functools
import importlib
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import re2

# Python's regex parser; private but stable since 3.11 (the deprecated ``sre_parse``).
_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")

MAX_REPEAT = 1000  # RE2's largest repetition count
MAX_BACKTRACKING = 1_000  # steps per start position up to which Python's re is used
_OVER = MAX_BACKTRACKING + 1
_IGNORECASE = _c.SRE_FLAG_IGNORECASE
_MULTILINE = _c.SRE_FLAG_MULTILINE
_DOTALL = _c.SRE_FLAG_DOTALL
_ASCII = _c.SRE_FLAG_ASCII
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNICODE_MAX = 0x10FFFF

Ranges = tuple[tuple[int, int], ...]


class PatternMatch(Protocol):
    def group(self, index: int | str, /) -> str | None: ...


class PatternError(ValueError):
    """A pattern Python cannot parse or RE2 cannot run; the text says which and why."""


@dataclass(frozen=True, slots=True, eq=False)
class RulePattern:
    """A compiled rule pattern: ``search`` finds it anywhere in a text, or returns None.

    ``pattern`` is the text as the author wrote it (for messages and explain); ``groups``
    and ``groupindex`` describe its capture groups as Python's ``re`` does; ``engine`` says
    which engine searches.
    """

    pattern: str
    ignore_case: bool
    search: Callable[[str], PatternMatch | None]
    groups: int
    groupindex: Mapping[str, int]
    engine: str  # "re" (bounded backtracking) or "re2"

    def __eq__(self, other: object) -> bool:  # as re.Pattern: same text, same flags
        if not isinstance(other, RulePattern):
            return NotImplemented
        return (self.pattern, self.ignore_case) == (other.pattern, other.ignore_case)

    def __hash__(self) -> int:
        return hash((self.pattern, self.ignore_case))


def compile_pattern(pattern: str, *, ignore_case: bool) -> RulePattern:
    """Check ``pattern`` with Python's parser, then compile it for a linear-time search.

    Raises :class:`PatternError` with a one-line reason when Python rejects the pattern,
    or when it uses a construct that has no linear-time match.
    """
    python, translated, bounded = _prepare(pattern, ignore_case)
    options = re2.Options()
    options.log_errors = False
    try:
        compiled = re2.compile(translated, options)  # also for bounded ones: same refusals
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args else "rejected"
        raise PatternError(
            f"regular expression {_shown(pattern)} is too large for linear-time matching "
            f"(RE2: {reason})"
        ) from None
    return RulePattern(
        pattern,
        ignore_case,
        python.search if bounded else _searcher(compiled.search),
        python.groups,
        dict(python.groupindex),
        "re" if bounded else "re2",
    )


def translate(pattern: str, *, ignore_case: bool) -> str:
    """``pattern`` in RE2 syntax with Python's meaning (see above); PatternError if none."""
    return _prepare(pattern, ignore_case)[1]


def _prepare(pattern: str, ignore_case: bool) -> tuple[re.Pattern[str], str, bool]:
    """Python's compiled pattern, its RE2 spelling, and whether its backtracking is bounded."""
    flags = re.IGNORECASE if ignore_case else 0
    shown = _shown(pattern)
    try:
        with warnings.catch_warnings():  # "possible nested set": the tree keeps today's meaning
            warnings.simplefilter("ignore", FutureWarning)
            python = re.compile(pattern, flags)
            tree = _parser.parse(pattern, flags)
            translated = _Writer(tree.state.groupdict).write(tree, tree.state.flags)
            bounded = _backtracking(tree) <= MAX_BACKTRACKING
    except re.error as exc:
        raise PatternError(f"invalid regular expression {shown}: {exc}") from None
    except RecursionError:
        raise PatternError(
            f"invalid regular expression {shown}: groups are nested too deeply"
        ) from None
    except _Unsupported as exc:
        raise PatternError(
            f"regular expression {shown} uses {exc}, which has no linear-time match: rule "
            "patterns keep to what RE2 can run (https://github.com/google/re2/wiki/Syntax)"
        ) from None
    return python, translated, bounded


def _backtracking(items: Any) -> int:
    """An upper bound on the steps Python's ``re`` may take at one start position.

    Paths through the pattern (alternatives, optional parts, counts of a bounded
    repetition) times the longest path. Unbounded repetition (``*``, ``+``, ``{n,}``) has
    no bound; anything over the limit is as good as unbounded, so counting stops there.
    """
    paths, length = _paths(items)
    return min(paths * max(length, 1), _OVER)


def _paths(items: Any) -> tuple[int, int]:
    """(number of paths, longest path in steps) through a sequence, capped at the limit."""
    paths, length = 1, 0
    for op, av in items:
        if op is _c.BRANCH:
            alternatives = [_paths(branch) for branch in av[1]]
            item = (sum(p for p, _ in alternatives), max(n for _, n in alternatives))
        elif op is _c.SUBPATTERN:
            item = _paths(av[3])
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            low, high, inner = av
            if high is _c.MAXREPEAT or high == _c.MAXREPEAT:
                return (_OVER, 1)
            each, steps = _paths(inner)
            ways, power = 0, 1  # sum of each**count for count in low..high
            for count in range(high + 1):
                if count >= low:
                    ways += power
                power = min(power * each, _OVER)
                if ways >= _OVER:
                    break
            item = (min(ways, _OVER), min(steps * high, _OVER))
        else:
            item = (1, 1)
        paths = min(paths * item[0], _OVER)
        length = min(length + item[1], _OVER)
    return paths, length


def _shown(pattern: str) -> str:
    """The pattern for a message: quoted, and cut short when it is long."""
    if len(pattern) <= 80:
        return repr(pattern)
    return f"{pattern[:60]!r}... ({len(pattern):,} characters)"


def _searcher(
    search: Callable[[str], PatternMatch | None],
) -> Callable[[str], PatternMatch | None]:
    def find(text: str) -> PatternMatch | None:
        try:
            return search(text)
        except UnicodeEncodeError:  # lone surrogates have no UTF-8 form: match U+FFFD
            return search(_SURROGATE.sub("\ufffd", text))

    return find


class _Unsupported(Exception):
    """A construct RE2 has no linear-time match for; the text names it."""


class _Writer:
    """Writes a Python regex parse tree back out in RE2 syntax, meaning kept."""

    def __init__(self, names: Mapping[str, int]) -> None:
        self.names = {index: name for name, index in names.items()}

    def write(self, items: Any, flags: int) -> str:
        prefix = "(?i)" if flags & _IGNORECASE else ""
        return prefix + self._sequence(items, flags)

    def _sequence(self, items: Any, flags: int) -> str:
        return "".join(self._item(op, av, flags) for op, av in items)

    def _item(self, op: Any, av: Any, flags: int) -> str:  # noqa: C901 - one branch per op
        if op is _c.LITERAL:
            return _char(av)
        if op is _c.NOT_LITERAL:
            return "[^" + _char(av) + "]"
        if op is _c.ANY:
            return "(?s:.)" if flags & _DOTALL else "[^\\n]"
        if op is _c.IN:
            return _char_class(av, flags)
        if op is _c.BRANCH:
            return "(?:" + "|".join(self._sequence(b, flags) for b in av[1]) + ")"
        if op is _c.SUBPATTERN:
            return self._group(av, flags)
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            return self._repeat(av, flags, lazy=op is _c.MIN_REPEAT)
        if op is _c.AT:
            return _anchor(av, flags)
        if op is _c.GROUPREF:
            raise _Unsupported(f"a backreference to group {av}")
        if op is _c.GROUPREF_EXISTS:
            raise _Unsupported("a conditional group (?(...)...)")
        if op is _c.ASSERT:
            raise _Unsupported("a lookahead (?=...)" if av[0] == 1 else "a lookbehind (?<=...)")
        if op is _c.ASSERT_NOT:
            raise _Unsupported(
                "a negative lookahead (?!...)" if av[0] == 1 else "a negative lookbehind (?<!...)"
            )
        if op is _c.ATOMIC_GROUP:
            raise _Unsupported("an atomic group (?>...)")
        if op is _c.POSSESSIVE_REPEAT:
            raise _Unsupported("a possessive quantifier (*+, ++, ?+)")
        if op is _c.CATEGORY:
            return _char_class([(op, av)], flags)
        raise _Unsupported(f"the construct {op}")  # pragma: no cover - Python 3.11 has no more

    def _group(self, av: Any, flags: int) -> str:
        group, add, remove, items = av
        inner_flags = (flags | add) & ~remove
        inner = self._sequence(items, inner_flags)
        if (add | remove) & _IGNORECASE:
            inner = ("(?i:" if inner_flags & _IGNORECASE else "(?-i:") + inner + ")"
        if group is None:
            return "(?:" + inner + ")"
        name = self.names.get(group)
        return ("(?P<" + name + ">" if name else "(") + inner + ")"

    def _repeat(self, av: Any, flags: int, *, lazy: bool) -> str:
        low, high, items = av
        unbounded = high is _c.MAXREPEAT or high == _c.MAXREPEAT
        if low > MAX_REPEAT or (not unbounded and high > MAX_REPEAT):
            shown = f"{{{low}}}" if low == high else f"{{{low},{'' if unbounded else high}}}"
            raise _Unsupported(f"a repetition count above {MAX_REPEAT} ({shown})")
        if (low, unbounded) == (0, True):
            quantifier = "*"
        elif (low, unbounded) == (1, True):
            quantifier = "+"
        elif unbounded:
            quantifier = f"{{{low},}}"
        elif (low, high) == (0, 1):
            quantifier = "?"
        elif low == high:
            quantifier = f"{{{low}}}"
        else:
            quantifier = f"{{{low},{high}}}"
        return "(?:" + self._sequence(items, flags) + ")" + quantifier + ("?" if lazy else "")


def _anchor(at: Any, flags: int) -> str:
    if at is _c.AT_BEGINNING:
        return "(?m:^)" if flags & _MULTILINE else "\\A"
    if at is _c.AT_BEGINNING_STRING:
        return "\\A"
    if at is _c.AT_END:
        # Python's $ also matches before a final newline; RE2 cannot look ahead.
        return "(?m:$)" if flags & _MULTILINE else "(?:\\n?\\z)"
    if at is _c.AT_END_STRING:
        return "\\z"
    if at is _c.AT_BOUNDARY:
        return "\\b"
    if at is _c.AT_NON_BOUNDARY:
        return "\\B"
    raise _Unsupported(f"the anchor {at}")  # pragma: no cover - the parser makes no other


def _char(code: int) -> str:
    if code < 128 and (chr(code).isalnum() or chr(code) in " _"):
        return chr(code)
    if 0xD800 <= code <= 0xDFFF:  # a surrogate never occurs in text RE2 sees
        return "\\x{FFFD}"
    return f"\\x{{{code:X}}}"


def _char_class(items: Any, flags: int) -> str:
    """A Python character set as one explicit RE2 class of code-point ranges."""
    negate = False
    ranges: list[tuple[int, int]] = []
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            ranges.append((av, av))
        elif op is _c.RANGE:
            ranges.append((av[0], av[1]))
        elif op is _c.CATEGORY:
            ranges.extend(_category(av, ascii_only=bool(flags & _ASCII)))
    merged = _merge(ranges)
    if negate:
        merged = _complement(merged)
    merged = _without_surrogates(merged)
    if not merged:
        return "[^\\x{0}-\\x{10FFFF}]"  # an empty set: matches nothing
    return "[" + "".join(_span(low, high) for low, high in merged) + "]"


def _span(low: int, high: int) -> str:
    if low == high:
        return f"\\x{{{low:X}}}"
    return f"\\x{{{low:X}}}-\\x{{{high:X}}}"


def _category(category: Any, *, ascii_only: bool) -> Ranges:
    name = str(category)
    negated = "_NOT_" in name
    kind = name.rsplit("_", 1)[1]  # DIGIT, SPACE or WORD
    ranges = _ascii_class(kind) if ascii_only else _unicode_class(kind)
    return _complement(ranges) if negated else ranges


def _ascii_class(kind: str) -> Ranges:
    if kind == "DIGIT":
        return ((0x30, 0x39),)
    if kind == "SPACE":
        return ((0x09, 0x0D), (0x20, 0x20))
    return ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))


@functools.cache
def _unicode_class(kind: str) -> Ranges:
    """Python's ``\\d``, ``\\s`` or ``\\w`` on str, as code-point ranges (built once).

    Python's ``re`` finds the runs of its own class in a string of every code point: the
    same set as testing ``str.isdecimal``, ``isspace`` or ``isalnum`` (and ``_``) code
    point by code point, in 0.03 s instead of the loop's 0.2 s, which every command that
    loads rules with ``\\d`` paid.
    """
    runs = re.compile(_RUNS[kind])
    return tuple((found.start(), found.end() - 1) for found in runs.finditer(_every_code_point()))


_RUNS = {"DIGIT": r"\d+", "SPACE": r"\s+", "WORD": r"\w+"}


def _every_code_point() -> str:
    codes = array.array("I", range(_UNICODE_MAX + 1))
    if codes.itemsize != 4:  # pragma: no cover - 4 bytes on every platform Python builds for
        return "".join(map(chr, range(_UNICODE_MAX + 1)))
    encoding = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"
    return codes.tobytes().decode(encoding, "surrogatepass")


def _merge(ranges: list[tuple[int, int]]) -> Ranges:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return tuple(merged)


def _complement(ranges: Ranges) -> Ranges:
    result: list[tuple[int, int]] = []
    next_low = 0
    for low, high in _merge(list(ranges)):
        if low > next_low:
            result.append((next_low, low - 1))
        next_low = high + 1
    if next_low <= _UNICODE_MAX:
        result.append((next_low, _UNICODE_MAX))
    return tuple(result)


def _without_surrogates(ranges: Ranges) -> Ranges:
    result: list[tuple[int, int]] = []
    for low, high in ranges:
        if low < 0xD800:
            result.append((low, min(high, 0xD7FF)))
        if high > 0xDFFF:
            result.append((max(low, 0xE000), high))
    return tuple(result)
