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
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, Literal

Kind = Literal["text", "ref", "refs", "dn"]
Cell = str | Sequence[str]  # a sequence only in "refs" columns

#: Bytes of row data one page may embed: with the rest of a report (tables capped at a
#: few hundred rows) the page stays under 10 MB.
DEFAULT_BUDGET = 8_500_000


@dataclass(frozen=True, slots=True)
class Column:
    """How a column's values are stored.

    ``text``: inline (unique values such as account names); ``ref``: an index into the
    string table (repeating values); ``refs``: a list of such indexes, shown joined with
    "; " (the facts a rule read, one "name=value" each); ``dn``: the first RDN inline and
    an index for the parent.
    """

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


_FIRST_RDN = re.compile(r"(?:[^\\,]|\\.)*", re.DOTALL)


def split_dn(dn: str) -> tuple[str, str]:
    """First RDN and the rest, at the first comma that is not escaped."""
    end = _FIRST_RDN.match(dn).end()  # type: ignore[union-attr]  # always matches
    if end < len(dn) and dn[end] == ",":
        return dn[:end], dn[end + 1 :]
    return dn, ""


def script_json(value: Any) -> str:
    """JSON that cannot end a <script> element or open a comment inside it."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _encode(
    columns: Sequence[Column], values: Sequence[Sequence[Cell]], count: int
) -> tuple[list[list[Any]], list[str]]:
    """Column by column, then zipped into rows.

    The string table is ordered by use, most used first, so the indexes that fill most
    rows are the shortest: count first, then map each column in one pass.
    """
    uses: Counter[str] = Counter()
    prepared: list[tuple[str, Sequence[Any]]] = []
    for column, column_values in zip(columns, values, strict=True):
        kept = column_values[:count]
        if column.kind == "text":
            prepared.append(("text", kept))
        elif column.kind == "ref":
            prepared.append(("ref", kept))
            uses.update(kept)  # type: ignore[arg-type]
        elif column.kind == "refs":
            prepared.append(("refs", kept))
            uses.update(chain.from_iterable(kept))
        else:
            parts = [split_dn(v) for v in kept]  # type: ignore[arg-type]
            parents = [parent for _, parent in parts]
            prepared.append(("text", [rdn for rdn, _ in parts]))
            prepared.append(("parent", parents))
            uses.update(p for p in parents if p)
    strings = [s for s, _ in sorted(uses.items(), key=lambda item: -item[1])]
    index = {s: i for i, s in enumerate(strings)}
    lookup = index.__getitem__
    parent_lookup = {**index, "": -1}.__getitem__
    encoded: list[Sequence[Any]] = []
    for kind, data in prepared:
        if kind == "text":
            encoded.append(data)
        elif kind == "ref":
            encoded.append(list(map(lookup, data)))
        elif kind == "refs":
            encoded.append([list(map(lookup, many)) for many in data])
        else:
            encoded.append(list(map(parent_lookup, data)))
    return [list(row) for row in zip(*encoded, strict=True)], strings


def encode_table(
    columns: Sequence[Column],
    values: Sequence[Sequence[Cell]],
    total: int,
    budget: int = DEFAULT_BUDGET,
) -> EncodedTable:
    """Encode a table given column by column (``values[i]`` holds column i's cells).

    Keeps the first rows that fit the byte budget.
    """
    count = min((len(v) for v in values), default=0)
    head = {
        "columns": [
            {"key": c.key, "label": c.label, "kind": c.kind, "filter": c.filter} for c in columns
        ],
        "total": total,
    }
    while True:
        rows, strings = _encode(columns, values, count)
        text = script_json({**head, "strings": strings, "rows": rows})
        size = len(text.encode())
        if size <= budget or count == 0:
            return EncodedTable(text, total, count)
        # Rows cost about the same each: cut in proportion, a little under.
        count = min(count - 1, int(count * budget / size * 0.98))
