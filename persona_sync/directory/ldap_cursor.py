"""What the LDAP delta reads share: the directory's side, the cursor's checks, the sweep.

A cursor records, besides the mechanism's own position, where the read went (the bases,
scope and filter) and which attributes it read: a change to either needs a full read, in
words the run prints ("attributes not read before are needed (department): full read").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ldap3 import Connection

from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory import ldap_wire as wire
from persona_sync.directory.base import Cursor
from persona_sync.directory.ldap_conn import LdapLink
from persona_sync.directory.ldap_read import LdapReader
from persona_sync.dn import normalize_dn
from persona_sync.employee import Employee
from persona_sync.errors import DirectoryError


@dataclass(frozen=True)
class DeltaSource:
    """What a delta read needs of an :class:`~persona_sync.directory.ldap.LdapDirectory`."""

    link: LdapLink
    reading: LdapReader
    spec: LdapDirectoryConfig
    search_filter: str
    stable_attribute: str
    key: Callable[[Employee], str]


def usable(
    cursor: Cursor | None,
    kind: str,
    fields: Mapping[str, type],
    source: DeltaSource,
    wanted: Sequence[str],
) -> tuple[Mapping[str, Any] | None, str]:
    """The cursor's state when a delta read can continue from it, else (None, why not).

    ``fields`` are the mechanism's own entries of the state and their types.
    """
    if cursor is None:
        return None, "no cursor yet: full read"
    if cursor.kind != kind:
        return (
            None,
            f"the saved cursor cannot be used (a {cursor.kind!r} cursor, not {kind!r}): full read",
        )
    state = cursor.state
    required = {**fields, "scope": dict, "attributes": list}
    missing = [
        name
        for name, kind_of in required.items()
        if not isinstance(state.get(name), kind_of) or isinstance(state.get(name), bool)
    ]
    if missing:
        return None, f"the saved cursor cannot be used (no valid {', '.join(missing)}): full read"
    if state["scope"] != _scope(source):
        return None, (
            "the search scope changed since the saved cursor (base_dns, scope or filter): full read"
        )
    new = sorted(set(wanted) - {str(a) for a in state["attributes"]})
    if new:
        return None, f"attributes not read before are needed ({', '.join(new)}): full read"
    return state, ""


def make_cursor(
    kind: str, state: Mapping[str, Any], source: DeltaSource, wanted: Sequence[str], taken: str
) -> Cursor:
    """A cursor of ``kind`` holding ``state`` and the scope and attributes of this read."""
    return Cursor(kind, {**state, "scope": _scope(source), "attributes": list(wanted)}, taken)


def _scope(source: DeltaSource) -> dict[str, Any]:
    return {
        "bases": [normalize_dn(base) for base in source.spec.base_dns],
        "scope": source.spec.scope,
        "filter": source.search_filter,
    }


def now() -> str:
    """When a read begins (ISO 8601, UTC), for ``Cursor.taken``."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def server_of(connection: Connection) -> str:
    """host:port of the server a connection went to."""
    return f"{connection.server.host}:{connection.server.port}"


def attributes_of(item: Mapping[str, Any] | None) -> dict[str, list[bytes]]:
    """A base search's raw attributes (ldap3's item) by lower-case name."""
    raw = (item or {}).get("raw_attributes") or {}
    return {name.lower(): list(values) for name, values in raw.items()}


def texts(values: Sequence[bytes]) -> list[str]:
    return [v.decode("utf-8", "replace") for v in values]


def context_of(base: str, naming_contexts: Sequence[str]) -> str | None:
    """The naming context (a rootDSE namingContexts value) that holds ``base``."""
    key = normalize_dn(base)
    holding = [
        c for c in naming_contexts if key == normalize_dn(c) or key.endswith("," + normalize_dn(c))
    ]
    return max(holding, key=len) if holding else None


def sweep(
    source: DeltaSource,
    search_filter: str,
    what: str,
    bases: Sequence[str] | None = None,
    *,
    controls: Sequence[wire.Control] = (),
    subtree: bool | None = None,
) -> Iterator[str]:
    """The key of every entry matching ``search_filter`` (only the stable id is read).

    Under the configured bases this is the directory's own read (its lean decoder, resumed
    after a lost connection); elsewhere, or with controls, a paged search off the wire
    (``subtree`` None: the configured scope).
    """
    attribute = source.stable_attribute
    if bases is None and not controls:
        for employee in source.reading.search(search_filter, [attribute]):
            yield source.key(employee)
        return
    for base in bases if bases is not None else source.spec.base_dns:
        for entry in wire.paged(
            source.link,
            base,
            search_filter,
            [attribute],
            page_size=source.spec.page_size,
            subtree=source.spec.scope == "subtree" if subtree is None else subtree,
            controls=controls,
            what=what,
        ):
            yield source.key(source.reading.employee(entry.dn, entry.attributes))


def failure(link: LdapLink, base: str, exc: BaseException) -> DirectoryError:
    """A search for changes that went wrong, in words."""
    return DirectoryError(f"reading the changes under {base} failed: {link.reason(exc)}")
