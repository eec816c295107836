"""Active Directory delta reads ("usn" cursors): uSNChanged on the same domain controller.

The rootDSE's highestCommittedUSN and dnsHostName and the DC's invocationId (on its NTDS
Settings object, named by dsServiceName) are read before the query, then
``(uSNChanged>=N+1)`` on the same DC. USNs are local to a DC: another DC answering, or a
new invocationId (the DC was restored from a backup and its USNs were reused), means a
full read, and the reason says which.

Deletions and moves out of scope: when the account can read CN=Deleted Objects (the
show-deleted control; by default only administrators can), the users changed since N
anywhere in the naming context, tombstones included, that are not in scope now are
``removed``: a cost that follows the changes. Otherwise (the least-privilege default) a
sweep of every objectGUID gives the keys ``present``, and the run's notes say how to
avoid it. Whether the account can is seen by listing one deleted user; in a domain where
nothing was ever deleted (or all tombstones expired) the sweep is used.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from ldap3.core import exceptions as ldap_errors

from persona_sync.directory import ldap_wire as wire
from persona_sync.directory.base import Cursor, DeltaEnd, DeltaRead
from persona_sync.directory.ldap_cursor import (
    DeltaSource,
    attributes_of,
    context_of,
    failure,
    make_cursor,
    now,
    sweep,
    texts,
    usable,
)
from persona_sync.directory.ldap_moves import moved_entries
from persona_sync.employee import Employee
from persona_sync.errors import DirectoryError
from persona_sync.logs import get_logger

log = get_logger(__name__)

KIND = "usn"
SHOW_DELETED = "1.2.840.113556.1.4.417"
DELETED_OBJECTS_GUID = "18e2ea80684f11d2b9aa00c04f79f805"  # well-known GUID, every domain


def read_delta(source: DeltaSource, wanted: list[str], cursor: Cursor | None) -> DeltaRead:
    """Entries changed since ``cursor`` on Active Directory (all when it cannot be used)."""
    return _ActiveDirectory(source, wanted).read(cursor)


@dataclass(frozen=True)
class _Dc:
    usn: int
    host: str
    invocation_id: str
    naming_contexts: list[str]


class _ActiveDirectory:
    def __init__(self, source: DeltaSource, wanted: list[str]) -> None:
        self.source = source
        self.wanted = wanted
        self.link = source.link

    def _dc(self) -> _Dc:
        """Read before the query: the DC's highest USN, name and database identity."""
        root = attributes_of(
            self.link.entry(
                "",
                ["highestCommittedUSN", "dnsHostName", "dsServiceName", "namingContexts"],
                "reading the rootDSE",
            )
        )
        names = ("highestcommittedusn", "dnshostname", "dsservicename")
        usn, host, settings = (texts(root.get(name, []))[:1] for name in names)
        if not (usn and host and settings and usn[0].isdigit()):
            raise DirectoryError(
                "the server's rootDSE has no highestCommittedUSN, dnsHostName or dsServiceName: "
                "is it an Active Directory domain controller (preset: ad)?"
            )
        item = self.link.entry(
            settings[0], ["invocationId"], "reading the domain controller's invocationId"
        )
        raw = attributes_of(item).get("invocationid", [b""])[0]
        if len(raw) != 16:
            raise DirectoryError(f"{settings[0]} has no invocationId the account may read")
        contexts = texts(root.get("namingcontexts", []))
        return _Dc(int(usn[0]), host[0], str(uuid.UUID(bytes_le=raw)), contexts)

    def read(self, cursor: Cursor | None) -> DeltaRead:
        taken = now()
        connection = self.link.reader
        dc = self._dc()
        fields = {"usn": int, "dc": str, "invocation_id": str}
        state, reason = usable(cursor, KIND, fields, self.source, self.wanted)
        if state is not None:
            if state["dc"].casefold() != dc.host.casefold():
                reason = (
                    f"another domain controller answered ({dc.host}, not {state['dc']}): full read"
                )
            elif state["invocation_id"].lower() != dc.invocation_id:
                reason = (
                    "the domain controller's database was restored (invocationId changed): "
                    "full read"
                )
        mark = {"usn": dc.usn, "dc": dc.host, "invocation_id": dc.invocation_id}
        next_cursor = make_cursor(KIND, mark, self.source, self.wanted, taken)

        def end(result: DeltaEnd) -> DeltaEnd:
            if (
                self.link.reader is not connection
                and self._dc().host.casefold() != dc.host.casefold()
            ):
                log.warning("ldap_delta_dc_changed", was=dc.host)
                return DeltaEnd(None, result.removed, result.present)
            return DeltaEnd(next_cursor, result.removed, result.present)

        if reason:
            log.info("ldap_delta_full", reason=reason)
            everything = self.source.reading.search(self.source.search_filter, self.wanted)
            return DeltaRead(everything, lambda: end(DeltaEnd(None)), full=True, reason=reason)
        since = int(state["usn"]) + 1 if state is not None else 0
        contexts = {context_of(b, dc.naming_contexts) for b in self.source.spec.base_dns}
        readable = [c for c in sorted(x for x in contexts if x) if self._deleted_readable(c)]
        tombstones = bool(readable) and len(readable) == len(contexts)
        notes = (
            []
            if tombstones
            else [
                "the account cannot read CN=Deleted Objects: deletions and moves out of scope are "
                f"found by a sweep of every entry's {self.source.stable_attribute} (grant it List "
                "Contents and Read Property on Deleted Objects to make delta reads cheaper)"
            ]
        )
        given: set[str] = set()
        changed = f"(&{self.source.search_filter}(uSNChanged>={since}))"

        def entries() -> Iterator[Employee]:
            for employee in itertools.chain(
                self.source.reading.search(changed, self.wanted),
                moved_entries(self.source, self.wanted, f"(uSNChanged>={since})"),
            ):
                given.add(self.source.key(employee))
                yield employee

        def finish() -> DeltaEnd:
            if not tombstones:
                present = sweep(self.source, self.source.search_filter, "sweeping the entries")
                return end(DeltaEnd(None, present=set(present)))
            users = f"(&(objectClass=user)(uSNChanged>={since}))"
            left: set[str] = set()
            for context in readable:
                left.update(
                    sweep(
                        self.source,
                        users,
                        f"reading the users changed in {context}",
                        [context],
                        controls=[(SHOW_DELETED, True, None)],
                        subtree=True,
                    )
                )
            left -= set(sweep(self.source, changed, "reading the entries changed in scope"))
            return end(DeltaEnd(None, removed=left - given))

        return DeltaRead(entries(), finish, full=False, notes=notes)

    def _deleted_readable(self, context: str) -> bool:
        """Whether the account sees deleted users (tombstones) and their uSNChanged: by
        default only administrators do. Unknowable in a domain without any: then no."""
        base = f"<WKGUID={DELETED_OBJECTS_GUID},{context}>"
        try:
            messages = list(
                wire.search(  # to the end: a search left half-read spends the link
                    self.link,
                    base,
                    "(&(objectClass=user)(uSNChanged>=1))",
                    ["objectGUID"],
                    subtree=False,
                    controls=[(SHOW_DELETED, True, None)],
                    size_limit=1,
                )
            )
        except ldap_errors.LDAPException as exc:
            raise failure(self.link, base, exc) from None
        return any(isinstance(m, wire.Entry) for m in messages)
