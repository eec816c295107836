"""Hostile input for the loaders and the engine: strategies and the checks every outcome
must pass (issue 9, "Hostile input"). Used by test_hostile_quick.py (default suite, a few
examples each) and test_fuzz_inputs.py (marker slow, many).

The contract: whatever a rule file, case file, config, LDIF or CSV file or attribute value
holds, the answer is a result or PersonaSyncError; every error message is one line and
says where (``path:line`` or ``path:line:col``, an environment variable, or the key).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from persona_sync.directory.csvfile import parse_csv
from persona_sync.directory.ldif import parse_ldif
from persona_sync.employee import Employee
from persona_sync.errors import PersonaSyncError, ValidationFailed
from persona_sync.rules.engine import Engine
from persona_sync.rules.loader import load_rules
from tests.conftest import DEFAULT_RULES
from tests.rules.agreement import assert_agrees

# --- hostile text ---------------------------------------------------------------------

CONTROL = [chr(c) for c in (*range(0, 32), 127, 0x85, 0xA0, 0x2028, 0x2029, 0x200B, 0x202E)]
PIECES = [
    *'*()\\,=+#";<> ',
    "\x00",
    "\\2C",
    "\\,",
    "\\\\",
    "\\00",
    "\\",
    "*)(uid=*",
    ")(|(objectClass=*))",
    "CN=Smith\\2C Jr.,OU=People,DC=example",
    "cn=Smith\\, Jr.",
    "#04024869",
    "é",
    "ß",
    "İ",
    "\U0001f600",
    "\ufffd",
    "\ufeff",
    "Chief Executive Officer",
    "Registered Nurse",
    "a" * 40 + "!",
]
BIG = ["x" * 100_000, "é" * 50_000, "\\," * 50_000, "(" * 100_000, "a" * 99_999 + "!"]

hostile_text = st.one_of(
    st.text(max_size=20),  # any code point but lone surrogates
    st.text(alphabet=st.sampled_from([*CONTROL, *"abc =,\\"]), max_size=20),
    st.lists(st.sampled_from(PIECES), max_size=8).map("".join),
    st.sampled_from(BIG),
)
# Employees are built in memory, where a lone surrogate can appear (a backend decoding
# with errors='surrogateescape', a test); files cannot hold one.
hostile_value = st.one_of(hostile_text, st.sampled_from(["\ud800", "a\udfffb", "\udc80" * 3]))
hostile_bytes = st.one_of(
    hostile_text.map(lambda t: t.encode("utf-8")),
    st.binary(max_size=40),
    st.sampled_from([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r", b"\xef\xbb\xbf"]),
)


def _mutate(text: bytes, edits: Sequence[tuple[int, int, bytes]]) -> bytes:
    """Apply (where, how many bytes to drop, what to insert) edits, positions wrapped."""
    data = bytearray(text)
    for where, drop, insert in edits:
        at = where % (len(data) + 1)
        data[at : at + drop] = insert
    return bytes(data)


def mutations(originals: Sequence[bytes], pieces: st.SearchStrategy[bytes]) -> Any:
    """A well-formed file with a few random bytes dropped, doubled or replaced."""
    edits = st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 12), pieces), min_size=1, max_size=4
    )
    return st.builds(_mutate, st.sampled_from(list(originals)), edits)


# --- YAML: rule files, case files, configs --------------------------------------------

KEYS = [
    "personas", "facts", "scope", "scenarios", "id", "name", "precedence", "default",
    "rules", "when", "unless", "fact", "all", "any", "not", "equals", "in", "matches",
    "gte", "between", "from", "table", "map", "sources", "type", "match", "value",
    "org_chart", "flag", "capture", "include", "exclude", "unmatched", "order", "service",
    "queue", "tier", "case_sensitive", "description",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 200),
    st.floats(allow_nan=True),
    st.sampled_from(["vip", "role.title", "string", "number", "boolean", "leave", "(a+)+$"]),
    st.sampled_from(["[a-", "(a)\\1", "(?=x)", "\\b(x)\\b", "a{2000}", "*)(uid=*", ""]),
    hostile_text,
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), hostile_text), inner, max_size=5),
    ),
    max_leaves=30,
)
YAML_TOKENS = [
    "\n", "  ", "    ", "- ", ": ", ":", "? ", "&a ", "*a", "&b ", "*b", "!!int ", "!!float ",
    "!!binary ", "!!timestamp ", "!!python/object:os.system ", "!x ", "!<tag:x> ", "[", "]",
    "{", "}", ", ", "'", '"', "\\", "\\x00", "\\ud800", "# c", "---\n", "...\n", "%YAML 1.1\n",
    "%TAG ! tag:x,2000:\n", "|\n", ">-\n", "\t", "\ufeff", "\x85", "\u2028", "personas",
    "facts", "id", "name", "precedence", "from", "table", "match", "matches", "vip", "9" * 5000,
    "<<", "~", "null", ".inf", "0x1F", "007",
]  # fmt: skip
yaml_soup = st.lists(st.sampled_from(YAML_TOKENS), max_size=60).map(
    lambda tokens: "".join(tokens).encode("utf-8")
)
RULE_FILES = [p.read_bytes() for p in sorted(DEFAULT_RULES.glob("*.yaml"))]
yaml_pieces = st.one_of(st.sampled_from([t.encode("utf-8") for t in YAML_TOKENS]), hostile_bytes)


def dump(tree: object) -> bytes:
    return yaml.safe_dump(tree, allow_unicode=True).encode("utf-8")


rule_files = st.one_of(
    trees.map(dump),
    yaml_soup,
    mutations(RULE_FILES, yaml_pieces),
    hostile_bytes,
)

CONFIG_KEYS = [
    "rules", "directory", "targets", "safety", "state_dir", "type", "path", "persona",
    "urls", "bind", "base_dn", "filter", "max_changes", "max_change_percent", "persona_limits",
    "tenant_id", "client_id", "person_classes",
]  # fmt: skip
configs = st.dictionaries(
    st.one_of(st.sampled_from(CONFIG_KEYS), hostile_text),
    st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.sampled_from(CONFIG_KEYS), inner, max_size=4),
        ),
        max_leaves=12,
    ),
    max_size=6,
)
CONFIG = (
    b"rules: rules\ndirectory:\n  type: file\n  path: company.ldif\n"
    b"targets:\n  persona: employeeType\nsafety:\n  max_changes: 50\n  max_change_percent: 100\n"
    b"state_dir: state\n"
)
config_files = st.one_of(
    configs.map(lambda c: dump({"rules": "rules", **c})),
    mutations([CONFIG], yaml_pieces),
)
environments = st.dictionaries(
    st.sampled_from(
        ["PERSONA_SYNC_DIRECTORY__PATH", "PERSONA_SYNC_SAFETY__MAX_CHANGES", "PERSONA_SYNC_X",
         "PERSONA_SYNC_TARGETS__PERSONA", "PERSONA_SYNC_", "PERSONA_SYNC___", "PERSONA_SYNC_RULES"]
    ),
    hostile_text,
    max_size=3,
)  # fmt: skip

# --- LDIF and CSV -----------------------------------------------------------------------

LDIF = b"""\
version: 1

# An export as ldifde writes it
dn: CN=Boss,OU=People,DC=example,DC=com
changetype: add
objectClass: user
cn: Boss
sAMAccountName: boss
title: Chief Executive Officer

dn: CN=Smith\\, John,OU=People,DC=example,DC=com
objectClass: user
cn: Smith, John
sAMAccountName: jsmith
title: Registered Nurse
manager: CN=Boss,OU=People,DC=example,DC=com
description: folded over
  two lines

dn:: Q049TcO8bGxlclwsIErDtnJnLE9VPVBlb3BsZSxEQz1leGFtcGxlLERDPWNvbQ==
objectClass: user
cn:: TcO8bGxlciwgSsO2cmc=
sAMAccountName: jmuller
title: Software Engineer
"""
LDIF_TOKENS = [
    "dn: ", "dn:: ", "dn: cn=x\n", "title: ", "title:: ", "cn:< file:///etc/passwd", ": ",
    "::", ":", "\n", "\n\n", "\r\n", " ", "  ", "#", "-\n", "changetype: modify\n",
    "changetype: add\n", "version: 1\n", "objectClass: user\n", "Zm9v", "====", "\t", "=",
    ",", "\\", "\\2C", "é", "\x00",
]  # fmt: skip


def _b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


@st.composite
def ldif_records(draw: st.DrawFn) -> bytes:
    """Records with hostile DNs and values, plain where LDIF allows, else base64."""
    out = [b"version: 1\n\n"] if draw(st.booleans()) else []
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))
    for _ in range(draw(st.integers(1, 4))):
        dn = draw(hostile_bytes)
        lines = [b"dn:: " + _b64(dn) if draw(st.booleans()) else b"dn: " + dn.split(b"\n")[0]]
        for name in draw(st.lists(st.sampled_from(["title", "cn", "manager", "objectClass"]))):
            value = draw(hostile_bytes)
            if draw(st.booleans()):
                lines.append(name.encode() + b":: " + _b64(value))
            else:
                lines.append(name.encode() + b": " + value)
        record = newline.join(lines)
        if draw(st.booleans()):  # fold at a random width, as ldapsearch does at 76
            width = draw(st.integers(2, 80))
            record = (newline + b" ").join(
                record[i : i + width] for i in range(0, len(record), width)
            )
        out.append(record + newline + newline)
    return b"".join(out)


ldif_files = st.one_of(
    ldif_records(),
    mutations([LDIF], st.one_of(st.sampled_from([t.encode() for t in LDIF_TOKENS]), hostile_bytes)),
    st.lists(st.sampled_from(LDIF_TOKENS), max_size=60).map(lambda t: "".join(t).encode()),
)

CSV = (
    b'"sAMAccountName","title","manager","employeeType"\r\n'
    b'"boss","Chief Executive Officer","",""\r\n'
    b'"jsmith","Registered Nurse, ""night""","CN=Boss,OU=People",""\r\n'
)
CSV_TOKENS = ['"', '""', ",", "\n", "\r\n", "\r", "\ufeff", "#TYPE x\n", "a", " ", "é", "\x00"]


@st.composite
def csv_rows(draw: st.DrawFn) -> bytes:
    """A header and rows of hostile fields, quoted as Export-Csv does, or where needed."""
    width = draw(st.integers(1, 4))
    quote_all = draw(st.booleans())
    newline = draw(st.sampled_from([b"\n", b"\r\n"]))

    def field(raw: bytes) -> bytes:
        if quote_all or any(c in raw for c in b'",\r\n') or not raw:
            return b'"' + raw.replace(b'"', b'""') + b'"'
        return raw

    header = [b"sAMAccountName", b"title", b"manager", b"employeeType"][:width]
    rows = [header] + [
        [draw(hostile_bytes) for _ in range(width)] for _ in range(draw(st.integers(0, 4)))
    ]
    return newline.join(b",".join(field(f) for f in row) for row in rows) + newline


csv_files = st.one_of(
    csv_rows(),
    mutations([CSV], st.one_of(st.sampled_from([t.encode() for t in CSV_TOKENS]), hostile_bytes)),
    st.lists(st.sampled_from(CSV_TOKENS), max_size=80).map(lambda t: "".join(t).encode()),
)


def directory_files(kind: str) -> st.SearchStrategy[bytes]:
    return ldif_files if kind == "ldif" else csv_files


# --- employees ----------------------------------------------------------------------------

ATTRIBUTES = ["title", "jobtitle", "department", "employeetype", "useraccountcontrol",
              "physicaldeliveryofficename", "seniorityLevel".lower(), "customerfacing",
              "manager", "samaccountname"]  # fmt: skip
employees = st.builds(
    Employee,
    id=hostile_value,
    dn=hostile_value,
    attributes=st.dictionaries(st.sampled_from(ATTRIBUTES), hostile_value, max_size=6),
)

# --- checks -----------------------------------------------------------------------------

_PLACE = re.compile(r"(?P<line>\d+)(?::(?P<column>\d+))?: \S")
_KEY = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+|\[\d+\])*: \S")


def assert_reported(exc: BaseException, *paths: str) -> None:
    """Only PersonaSyncError escapes; each message is one line that says where."""
    assert isinstance(exc, PersonaSyncError), f"{type(exc).__name__} escaped: {exc}"
    errors = exc.errors if isinstance(exc, ValidationFailed) else [exc]
    for error in errors:
        text = str(error)
        assert text and "\n" not in text and "\r" not in text, f"not one line: {text!r}"
        assert _located(text, paths), f"not located: {text!r}"


def _located(text: str, paths: Sequence[str]) -> bool:
    for path in paths:
        if text.startswith(path + ":") and _PLACE.match(text, len(path) + 1):
            return True
    return text.startswith("environment variable PERSONA_SYNC_") or bool(_KEY.match(text))


def outcome(action: Callable[[], Any], *paths: str) -> Any:
    """The action's result, or None after checking the error it raised."""
    try:
        return action()
    except Exception as exc:  # noqa: BLE001 - the check says what escaped
        assert_reported(exc, *paths)
        return None


def check_rule_file(path: Path, raw: bytes) -> None:
    path.write_bytes(raw)
    rule_set = outcome(lambda: load_rules([path]), str(path))
    if rule_set is not None:  # whatever loads must also decide, without an error
        engine = Engine(rule_set)
        person = Employee("jdoe", "cn=x", {"title": "a" * 40 + "!", "department": "\x00"})
        assert_agrees(engine, person, None)


def check_ldif(raw: bytes, value: str) -> None:
    document = outcome(lambda: parse_ldif(raw, "f.ldif"), "f.ldif")
    if document is None:
        return
    assert document.serialize() == raw
    wanted = {"title", "cn", "manager", "objectclass"}
    for index, record in enumerate(document.records):
        assert isinstance(record.dn, str) and record.line >= 1
        for name in wanted:
            record.values(name)
            record.raw_values(name)
        assert set(record.first_values(wanted)) <= wanted
        record.attribute_names()
        document.set_value(index, "title", value)
    again = parse_ldif(document.serialize(), "f.ldif")
    assert [r.dn for r in again.records] == [r.dn for r in document.records]
    assert [r.values("title") for r in again.records] == [[value]] * len(document.records)


def check_csv(raw: bytes, value: str) -> None:
    document = outcome(lambda: parse_csv(raw, "f.csv"), "f.csv")
    if document is None:
        return
    assert document.serialize() == raw
    for row in document.rows:
        for column in document.columns:
            row.get(column)
    if not document.has_column("employeeType"):
        document.add_column("employeeType")
    for index in range(len(document.rows)):
        document.set_value(index, "employeeType", value)
    again = parse_csv(document.serialize(), "f.csv")
    assert [r.get("employeeType") for r in again.rows] == [value] * len(document.rows)


DEFAULT_ENGINE = Engine(load_rules([DEFAULT_RULES]))
HOSTILE_RULES = """\
facts:
  role.title: {from: [title, jobTitle]}
  code: {from: title, capture: '(?P<value>(\\w+\\s?)+)$'}
  nested: {from: department, table: [{match: '(a+)+$', value: x}, {match: '^(.*,)*z', value: y}]}
  site: {from: physicalDeliveryOfficeName, map: {"\\x00": nul, "": empty}}
  dn: {from: '@dn', capture: '^(?:cn|CN)=((?:[^,\\\\]|\\\\.)*)'}
  flags: {type: boolean, from: userAccountControl, flag: 2}
  level: {type: number, from: seniorityLevel, default: 0}
personas:
  - id: a
    name: A
    precedence: 30
    rules:
      - id: a1
        when: {any: [{fact: code, matches: '(x|x)*y'}, {fact: dn, contains: '\\\\'}]}
  - id: b
    name: B
    precedence: 20
    rules:
      - id: b1
        when: {all: [{fact: nested, in: [x, y]}, {fact: level, between: [-1, 1e308]}]}
  - id: c
    name: C
    precedence: 10
    default: true
    unless: [{fact: flags, is: true}]
"""


def hostile_engine(tmp_path: Path) -> Engine:
    path = tmp_path / "hostile.yaml"
    path.write_text(HOSTILE_RULES, encoding="utf-8")
    return Engine(load_rules([path]))


def check_decide(engines: Sequence[Engine], people: Sequence[Employee]) -> None:
    """Every engine decides for everyone; generated code and explain's trace agree."""
    for engine in engines:
        personas = set(engine.rule_set.personas) | {None}
        for person in people:
            assert_agrees(engine, person, None)  # generated code and explain agree
            decisions = engine.decide(person)
            assert all(d.persona in personas for d in decisions)
        list(engine.decide_all(people))  # with the org chart, when the rules use one
