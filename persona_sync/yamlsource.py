"""Load YAML while remembering where every value came from.

Rule files, case files and the sync configuration are read here. The result is plain
Python data plus a map from each value's path (``("personas", 0, "precedence")``) to its
:class:`~persona_sync.errors.Location`, so that validation errors found later, by pydantic
or by cross-reference checks, can point into the file as ``path:line:col``.

Scalars follow YAML 1.2's core schema, not PyYAML's YAML 1.1 defaults: ``NO`` (Norway),
``on``, ``yes`` and ``01:30`` stay strings, dates stay strings, and only ``true``/``false``
are booleans. An identity admin writing a country list should never get ``False``.
Numbers with a leading zero (``007``, postal and site codes) stay strings too, where
YAML would read them as octal.

Rule files arrive in pull requests, so the loader bounds what a file can make it do: values
nest at most :data:`MAX_DEPTH` levels deep, and aliases (``*name``) may add at most
:data:`MAX_ALIAS_VALUES` values to a document in all (each alias counts every value it
copies, nested aliases included), so nine levels of nine aliases, an "alias bomb" of
387 million values, is refused at the alias that crosses the bound. An alias inside the
value it names (a cycle) is refused too. Each is a located error, found while the file is
read, before anything is expanded.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from persona_sync.errors import Location, RuleError

try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml: the pure-Python loader only
    CParser = None  # type: ignore[assignment, misc]

PathKey = tuple[str | int, ...]
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Text libyaml reads otherwise than PyYAML: it takes tabs, byte-order marks and control
#: characters that PyYAML refuses, and counts other line breaks. Such files (rare: editors
#: indent with spaces), and files without a final newline, are read by PyYAML alone.
_LIBYAML_DIFFERS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff]")

MAX_DEPTH = 64  # nested lists and mappings; rule files need about a dozen
MAX_ALIAS_VALUES = 10_000  # values that aliases may add to one document


class _Refused(Exception):
    """The document exceeds a bound; ``mark`` says where."""

    def __init__(self, mark: Any, text: str) -> None:
        super().__init__(text)
        self.mark = mark
        self.text = text


class _Bounded(yaml.composer.Composer):
    """Bounded composition.

    ``compose_node`` is PyYAML's recursive step; wrapping it tracks the depth (enclosing
    lists and mappings), and for each node its expanded size and height (aliases included),
    so bounds are checked at the node or alias that crosses them, in time linear in the file.
    """

    def _start_bounds(self) -> None:
        self._depth = 0
        self._open_anchors: set[str] = set()
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, height)
        self._alias_values = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent):
            return self._alias(parent, index, event)
        if self._depth >= MAX_DEPTH and not isinstance(event, yaml.ScalarEvent):
            raise _Refused(event.start_mark, f"values nested more than {MAX_DEPTH} levels deep")
        anchor = event.anchor
        if anchor is not None:
            self._open_anchors.add(anchor)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.discard(anchor)
        if node is not None:
            self._sizes[id(node)] = self._measure(node)
        return node

    def _alias(self, parent: yaml.Node | None, index: int, event: Any) -> yaml.Node | None:
        name = event.anchor
        if name in self._open_anchors:
            raise _Refused(event.start_mark, f"alias *{name} is inside the value it names")
        node = super().compose_node(parent, index)  # an unknown alias is PyYAML's error
        values, height = self._sizes.get(id(node), (1, 0))
        self._alias_values += values
        if self._alias_values > MAX_ALIAS_VALUES:
            raise _Refused(
                event.start_mark,
                f"alias *{name} makes the aliases in this file expand to more than "
                f"{MAX_ALIAS_VALUES:,} values",
            )
        if self._depth + height > MAX_DEPTH:
            raise _Refused(
                event.start_mark,
                f"alias *{name} nests values more than {MAX_DEPTH} levels deep",
            )
        return node

    def _measure(self, node: yaml.Node) -> tuple[int, int]:
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            return (1, 0)
        values, height = 1, 0
        for child in children:
            child_values, child_height = self._sizes.get(id(child), (1, 0))
            values += child_values
            height = max(height, child_height)
        return (values, height + 1)


class _CoreSchemaLoader(_Bounded, yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema implicit typing and bounded composition."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._start_bounds()


_CoreSchemaLoader.yaml_implicit_resolvers = {}
_CoreSchemaLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_CoreSchemaLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9]*))$"),
    list("-+0123456789"),
)
_CoreSchemaLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*|[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+)"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_CoreSchemaLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)

if CParser is not None:

    class _LibyamlLoader(
        _Bounded, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver
    ):
        """The same loader on libyaml's parser: the events come from C (PyYAML's own
        scanner and parser take 0.05-0.06 s of every plan for the default rules' 10 kB;
        libyaml about 3 ms), the composition with its bounds, the typing and the values are
        :class:`_CoreSchemaLoader`'s. libyaml places some empty values elsewhere than
        PyYAML, so its locations are not used (see :func:`parse_yaml`)."""

        yaml_implicit_resolvers = _CoreSchemaLoader.yaml_implicit_resolvers

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            self._start_bounds()


@dataclass
class LocatedDocument:
    """A YAML document as plain data, with the location of every value and key.

    A document read by libyaml holds libyaml's locations but those of empty values,
    which libyaml places elsewhere than PyYAML: asked for one of those, the document
    takes every location from PyYAML (``_locations``), as a file read by PyYAML has them.
    """

    path: str
    data: Any
    values: dict[PathKey, Location] = field(default_factory=dict)
    keys: dict[PathKey, Location] = field(default_factory=dict)
    _locations: Callable[[], LocatedDocument] | None = field(default=None, compare=False)
    _empty: set[PathKey] = field(default_factory=set, compare=False)

    def _pyyaml(self, path: PathKey) -> None:
        if self._locations is not None and (path in self._empty or path not in self.values):
            located, self._locations = self._locations(), None
            self.values, self.keys = located.values, located.keys

    def locate(self, path: PathKey, *, key: bool = False) -> Location:
        """Location of the value at ``path``, or of its key when ``key`` is true.

        Falls back to the nearest enclosing value that was recorded, so an error about a
        missing field points at the mapping that lacks it.
        """
        self._pyyaml(tuple(path))
        if key and path in self.keys:
            return self.keys[path]
        probe = tuple(path)
        while probe:
            if probe in self.values:
                return self.values[probe]
            probe = probe[:-1]
        return self.values.get((), Location(self.path, 1, 1))

    def error(self, path: PathKey, text: str, *, key: bool = False) -> RuleError:
        return RuleError(self.locate(path, key=key), text)


def read_text(path: Path, display: str | None = None) -> str:
    """Read a UTF-8 file (BOM allowed); undecodable bytes become a located error."""
    shown = display or str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RuleError(None, f"{shown}: no such file") from None
    except IsADirectoryError:
        raise RuleError(None, f"{shown}: is a directory, expected a file") from None
    except OSError as exc:
        raise RuleError(None, f"{shown}: cannot read: {exc.strerror}") from None
    return decode_utf8(raw, shown)


def decode_utf8(raw: bytes, shown: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise RuleError(
            Location(shown, line, column), f"file is not valid UTF-8 (byte 0x{bad})"
        ) from None


def load_yaml(path: Path, display: str | None = None) -> LocatedDocument:
    """Read one YAML file into a :class:`LocatedDocument`.

    Raises :class:`RuleError` for unreadable files, syntax errors, tabs used for
    indentation, duplicate keys and multiple documents in one file.
    """
    shown = display or str(path)
    return parse_yaml(read_text(path, shown), shown)


def parse_yaml(text: str, shown: str) -> LocatedDocument:
    if CParser is not None and text.endswith("\n") and not _LIBYAML_DIFFERS.search(text):
        try:
            read = _parse_yaml(text, shown, _LibyamlLoader)
        except Exception:  # whatever it is, PyYAML reads the file again and says so
            pass
        else:
            read._locations = lambda: _parse_yaml(text, shown, _CoreSchemaLoader)
            return read
    return _parse_yaml(text, shown, _CoreSchemaLoader)


def _parse_yaml(text: str, shown: str, make: Callable[[str], Any]) -> LocatedDocument:
    try:
        loader = make(text)
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, shown, text) from None
    try:
        node = loader.get_single_node()
    except yaml.reader.ReaderError as exc:
        raise _reader_error(exc, shown, text) from None
    except _Refused as exc:
        raise RuleError(_location(shown, exc.mark), exc.text) from None
    except yaml.MarkedYAMLError as exc:
        raise _syntax_error(exc, shown, text) from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML raises marked errors
        raise RuleError(Location(shown, 1, 1), f"invalid YAML: {exc}") from None
    finally:
        if "loader" in locals():
            loader.dispose()
    doc = LocatedDocument(shown, None)
    if node is None:
        return doc
    doc.data = _build(node, (), doc, loader)
    return doc


def _location(shown: str, mark: Any) -> Location:
    return Location(shown, mark.line + 1, mark.column + 1)


def _reader_error(exc: yaml.reader.ReaderError, shown: str, text: str) -> RuleError:
    """A character YAML does not allow (NUL, most control characters), located."""
    position = max(0, min(exc.position, len(text)))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    char = exc.character if isinstance(exc.character, str) else chr(exc.character)
    return RuleError(
        Location(shown, line, column), f"character U+{ord(char):04X} is not allowed in YAML"
    )


def _syntax_error(exc: yaml.MarkedYAMLError, shown: str, text: str) -> RuleError:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else 1
    column = mark.column + 1 if mark else 1
    problem = exc.problem or "invalid YAML"
    if "'\\t'" in problem or _tab_in_indent(text, line):
        return RuleError(
            Location(shown, line, column),
            "tab character in indentation: YAML indents with spaces only",
        )
    if "expected a single document" in problem or "but found another document" in problem:
        return RuleError(
            Location(shown, line, column),
            "more than one YAML document ('---') in one file: put each in its own file",
        )
    if problem == "second occurrence" and exc.context and exc.context_mark:
        # PyYAML words a duplicate anchor back to front
        anchor = exc.context.removesuffix("; first occurrence")
        return RuleError(
            Location(shown, line, column),
            f"invalid YAML: {anchor} (first at line {exc.context_mark.line + 1})",
        )
    detail = problem
    if exc.context:
        detail = f"{problem} ({exc.context})"
    return RuleError(Location(shown, line, column), f"invalid YAML: {detail}")


def _tab_in_indent(text: str, line: int) -> bool:
    lines = text.splitlines()
    if not 0 < line <= len(lines):
        return False
    current = lines[line - 1]
    indent = current[: len(current) - len(current.lstrip(" \t"))]
    return "\t" in indent


def _build(node: yaml.Node, path: PathKey, doc: LocatedDocument, loader: Any) -> Any:
    doc.values[path] = Location(doc.path, node.start_mark.line + 1, node.start_mark.column + 1)
    if not node.value:
        doc._empty.add(path)  # an empty value, list or mapping: libyaml may place it otherwise
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        seen: dict[str, Location] = {}
        for key_node, value_node in node.value:
            key_loc = Location(
                doc.path, key_node.start_mark.line + 1, key_node.start_mark.column + 1
            )
            if not isinstance(key_node, yaml.ScalarNode):
                raise RuleError(key_loc, "a key must be a plain value, not a list or mapping")
            key = str(_scalar(key_node, key_loc, loader))
            if key in seen:
                first = seen[key]
                raise RuleError(
                    key_loc, f"duplicate key '{key}' (first given at line {first.line})"
                )
            seen[key] = key_loc
            doc.keys[(*path, key)] = key_loc
            result[key] = _build(value_node, (*path, key), doc, loader)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc, loader) for i, item in enumerate(node.value)]
    return _scalar(node, doc.values[path], loader)


_TAG_PREFIX = "tag:yaml.org,2002:"
_TAG_KINDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "timestamp": "a date and time",
}


def _scalar(node: yaml.Node, location: Location, loader: Any) -> Any:
    """A scalar's value; whatever a hostile one makes PyYAML raise becomes a located error."""
    try:
        value = loader.construct_object(node)
    except yaml.constructor.ConstructorError as exc:
        raise RuleError(location, f"invalid value: {exc.problem}") from None
    # PyYAML's constructors let these through for ill-formed values ('!!int abc',
    # '!!bool maybe', '!!timestamp x') and Python refuses integers over 4,300 digits.
    except (ValueError, TypeError, LookupError, AttributeError, OverflowError):
        tag = node.tag.removeprefix(_TAG_PREFIX)
        kind = _TAG_KINDS.get(tag, f"!!{tag}")
        raise RuleError(
            location, f"invalid value: cannot read {_shown(node.value)} as {kind}"
        ) from None
    if isinstance(value, str) and _SURROGATE.search(value):
        raise RuleError(
            location,
            "invalid value: an escape gives half of a UTF-16 surrogate pair, not a character",
        )
    return value


def _shown(text: object) -> str:
    shown = repr(text)
    if len(shown) <= 60:
        return shown
    return f"{shown[:40]}... ({len(str(text)):,} characters)"
