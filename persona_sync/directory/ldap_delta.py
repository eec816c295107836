"""Incremental reads on OpenLDAP and Active Directory: the entries changed since a cursor.

Each directory's own change tracking: on OpenLDAP entryCSN, or syncrepl where slapd offers
it (:mod:`~persona_sync.directory.ldap_csn`); on Active Directory uSNChanged on one domain
controller (:mod:`~persona_sync.directory.ldap_usn`). What they share (the cursor's checks,
the sweep of keys) is in :mod:`~persona_sync.directory.ldap_cursor`.

The next cursor is always taken before the query (contextCSN, highestCommittedUSN) or from
what the query returned (the highest entryCSN), so a change made during a read is read
again next time rather than lost. When the connection was reopened on another server
during the read, no cursor is returned: the next read is a full one.

An OU renamed or moved carries its entries along without changing them (their entryCSN /
uSNChanged stay): every mode also reads the employees under the containers changed since
the cursor (:mod:`~persona_sync.directory.ldap_moves`), which covers an OU moved into the
scope too; those moved out are found by the sweep or syncrepl's present phase.
"""

from __future__ import annotations

from collections.abc import Sequence

from persona_sync.directory import ldap_csn, ldap_usn
from persona_sync.directory.base import Cursor, DeltaRead
from persona_sync.directory.ldap_cursor import DeltaSource

__all__ = ["DeltaSource", "read_delta"]


def read_delta(source: DeltaSource, attributes: Sequence[str], cursor: Cursor | None) -> DeltaRead:
    """The entries changed since ``cursor`` (all of them when it cannot be used, with the
    reason), and a ``finish`` giving the next cursor and the keys removed or present.

    ``attributes`` must include the id and stable id attributes.
    """
    wanted = sorted({a.lower() for a in attributes})
    if source.spec.preset == "ad":
        return ldap_usn.read_delta(source, wanted, cursor)
    return ldap_csn.read_delta(source, wanted, cursor)
