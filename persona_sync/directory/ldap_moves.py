"""Entries an OU carried along: renaming or moving a container changes only the container.

Its entries get a new DN without a new entryCSN (OpenLDAP, measured with and without
syncprov) or uSNChanged (AD), so no change tracking returns them, and the snapshot would
keep their old DNs until the next full read. A delta read therefore also asks for the
containers changed since its cursor (OUs, containers, organizations, localities, domains:
one small search) and reads the employees under each again. A container edited in another
way (a description, a GPO link) costs a read of its employees, who then come back as no
change. The bases themselves are left out: a base cannot move without a config change,
and an edit to one would re-read the whole scope.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from persona_sync.directory import ldap_wire as wire
from persona_sync.directory.ldap_cursor import DeltaSource
from persona_sync.dn import normalize_dn
from persona_sync.employee import Employee

CONTAINERS = (
    "(|(objectClass=organizationalUnit)(objectClass=container)(objectClass=organization)"
    "(objectClass=locality)(objectClass=domain))"
)


def moved_entries(source: DeltaSource, wanted: Sequence[str], changed: str) -> Iterator[Employee]:
    """The employees under every container changed since the cursor (``changed``: its
    change-tracking filter, e.g. ``(entryCSN>=...)``), outermost containers only."""
    if source.spec.scope != "subtree":
        return  # one level below a base: a container there holds nobody in scope
    bases = {normalize_dn(base) for base in source.spec.base_dns}
    found: dict[str, str] = {}
    for base in source.spec.base_dns:
        for entry in wire.paged(
            source.link,
            base,
            f"(&{CONTAINERS}{changed})",
            ["1.1"],
            page_size=source.spec.page_size,
            what=f"reading the containers changed under {base}",
        ):
            key = normalize_dn(entry.dn)
            if key not in bases:
                found.setdefault(key, entry.dn)
    outermost: list[str] = []
    for key in sorted(found, key=len):
        if not any(key.endswith("," + outer) for outer in outermost):
            outermost.append(key)
    for key in outermost:
        for entry in wire.paged(
            source.link,
            found[key],
            source.search_filter,
            wanted,
            page_size=source.spec.page_size,
            what=f"reading the entries under {found[key]}",
        ):
            yield source.reading.employee(entry.dn, entry.attributes)
