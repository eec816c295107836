"""Reading employees over LDAP: paged searches streamed page by page.

The pages are read and decoded by :mod:`~persona_sync.directory.ldap_stream` (a lean
decoder on ldap3's socket: ten times faster than ldap3's own). A connection lost mid-read
is reopened and the search resumed from the start of that base; entries already given are
not given twice. Only one page is held at a time, whatever the directory's size. Entries
become :class:`~persona_sync.employee.Employee` values: first value of each attribute,
UTF-8 text only (binary values such as photos and SIDs are not facts), objectGUID as a
UUID string. Referrals (other domains) are not followed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence

from ldap3 import LEVEL, SUBTREE
from ldap3.core import exceptions as ldap_errors

from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory.ldap_conn import RECONNECTS, LdapLink, clean
from persona_sync.directory.ldap_stream import (
    Converters,
    Entry,
    PagedStream,
    SearchFailed,
    StreamLost,
)
from persona_sync.dn import normalize_dn
from persona_sync.employee import Employee
from persona_sync.errors import ConfigError, DirectoryError
from persona_sync.logs import get_logger

log = get_logger(__name__)


def _guid(raw: bytes) -> str | None:
    """objectGUID (16 bytes, little-endian fields) as the UUID string AD tools show."""
    return str(uuid.UUID(bytes_le=raw)) if len(raw) == 16 else None


CONVERTERS: Converters = {"objectguid": _guid}


class LdapReader:
    """Searches under each base DN of a config, streaming employees page by page."""

    def __init__(self, link: LdapLink, spec: LdapDirectoryConfig, id_attribute: str) -> None:
        self.link = link
        self.spec = spec
        self.id_attribute = id_attribute

    def search(self, search_filter: str, attributes: Sequence[str]) -> Iterator[Employee]:
        """Every entry matching ``search_filter`` under the base DNs, in server order.

        A lost connection is reopened and that base's search started again, up to
        RECONNECTS times; entries already given are skipped (compared as normalized DNs,
        since another server of a failover list may spell a DN differently).
        """
        wanted = list(dict.fromkeys(a.lower() for a in attributes))
        count = 0
        id_attribute = self.id_attribute
        for base in self.spec.base_dns:
            given: set[str] = set()  # DNs as the server spelled them
            keys: set[str] | None = None  # given, normalized: made only on a resume
            for attempt in range(RECONNECTS + 1):
                try:
                    for page in self._pages(base, search_filter, wanted, resumed=attempt > 0):
                        for dn, values in page:
                            if keys is not None:
                                key = normalize_dn(dn)
                                if key in keys:
                                    continue
                                keys.add(key)
                            given.add(dn)
                            count += 1
                            yield Employee(values.get(id_attribute) or dn, dn, values)
                    break
                except StreamLost as exc:
                    self.link.drop_reader()
                    if attempt == RECONNECTS:
                        raise DirectoryError(
                            f"reading {base} failed: the connection was lost "
                            f"{attempt + 1} times: {exc.reason}"
                        ) from None
                    log.warning("ldap_read_resumed", base=base, error=exc.reason, given=len(given))
                    if keys is None:
                        keys = {normalize_dn(dn) for dn in given}
        log.info("ldap_read", entries=count, bases=len(self.spec.base_dns))

    def _pages(
        self, base: str, search_filter: str, wanted: list[str], resumed: bool
    ) -> Iterator[list[Entry]]:
        """The pages of one paged search; a lost connection raises StreamLost."""
        try:
            reader = self.link.reader
        except DirectoryError as exc:
            if resumed:
                raise DirectoryError(
                    f"reading {base} failed: the connection was lost and not regained: {exc}"
                ) from None
            raise
        stream = PagedStream(reader, self.spec.timeout, CONVERTERS)
        scope = SUBTREE if self.spec.scope == "subtree" else LEVEL
        try:
            yield from stream.search(base, search_filter, scope, wanted, self.spec.page_size)
        except ldap_errors.LDAPInvalidFilterError as exc:
            raise ConfigError(
                f"directory.filter: invalid LDAP filter {search_filter!r}: {clean(str(exc))}"
            ) from None
        except SearchFailed as failed:
            raise DirectoryError(f"reading {base} failed: {failed}") from None
        except ldap_errors.LDAPException as exc:
            raise DirectoryError(f"reading {base} failed: {self.link.reason(exc)}") from None
        finally:
            if not stream.finished:  # answers of ours are left in the stream
                self.link.drop_reader()

    def employee(self, dn: str, raw_attributes: Mapping[str, Sequence[bytes]]) -> Employee:
        """An entry ldap3 decoded (a base search) as an Employee, as the stream makes them."""
        attributes: dict[str, str] = {}
        for name, values in raw_attributes.items():
            if not values:
                continue
            key = name.lower()
            raw = values[0]
            if not isinstance(raw, bytes):
                attributes[key] = str(raw)
            elif key in CONVERTERS:
                text = CONVERTERS[key](raw)
                if text is not None:
                    attributes[key] = text
            else:
                try:
                    attributes[key] = raw.decode("utf-8")
                except UnicodeDecodeError:
                    continue  # binary values (photos, SIDs) are not facts
        return Employee(attributes.get(self.id_attribute) or dn, dn, attributes)
