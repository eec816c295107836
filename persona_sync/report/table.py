"""Long lists (plan changes, journal writes) as compact JSON for the page's own script.

A 100,000-change plan must stay well under 10 MB of HTML, so rows are arrays, values
that repeat (scenario, persona, rule, the facts a rule read, the parent of a DN) are
stored once in a string table and referenced by index, and a DN is split into its first
RDN (unique, inline) and its parent (shared). When the rows still exceed the byte
budget, the page keeps the first rows and says how many it left out; the counts and
charts elsewhere in the report always cover everything.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["text", "ref", "dn"]

#: Bytes of row data one page may embed; the rest of a report is far smaller.
DEFAULT_BUDGET = 7_000_000


@dataclass(frozen=True, slots=True)
class Column:
    """``text``: stored inline; ``ref``: via the string table; ``dn``: RDN + shared parent."""

    key: str
    label: str
    kind: Kind = "ref"
    filter: bool = False


@dataclass(frozen=True, slots=True)
class EncodedTable:
    json: str  # safe to place inside <script type="application/json">
    total: int
    embedded: int

    @property
    def truncated(self) -> bool:
        return self.embedded < self.total


def split_dn(dn: str) -> tuple[str, str]:
    """First RDN and the rest, at the first comma that is not escaped."""
    escaped = False
    for index, char in enumerate(dn):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            return dn[:index], dn[index + 1 :]
    return dn, ""


def script_json(value: Any) -> str:
    """JSON that cannot end a <script> element or open a comment inside it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def encode_table(
    columns: Sequence[Column],
    rows: Iterable[Sequence[str]],
    total: int,
    budget: int = DEFAULT_BUDGET,
) -> EncodedTable:
    """Encode rows (one string per column) until the byte budget is spent."""
    strings: dict[str, int] = {}
    used = 0

    def ref(value: str) -> int:
        nonlocal used
        index = strings.get(value)
        if index is None:
            index = strings[value] = len(strings)
            used += len(script_json(value).encode()) + 1
        return index

    parts: list[str] = []
    for row in rows:
        cells: list[Any] = []
        for column, value in zip(columns, row, strict=True):
            if column.kind == "text":
                cells.append(value)
            elif column.kind == "ref":
                cells.append(ref(value))
            else:
                rdn, parent = split_dn(value)
                cells.append(rdn)
                cells.append(ref(parent) if parent else -1)
        text = script_json(cells)
        used += len(text.encode()) + 1
        if used > budget:
            break
        parts.append(text)
    table = {
        "columns": [{"key": c.key, "label": c.label, "kind": c.kind, "filter": c.filter}
                    for c in columns],
        "strings": list(strings),
        "total": total,
    }
    head = script_json(table)
    body = head[:-1] + ',"rows":[' + ",".join(parts) + "]}"
    return EncodedTable(body, total, len(parts))
