"""Active Directory and OpenLDAP through ldap3: the :class:`Directory` facade.

The work lives in one module per responsibility: connecting, binding, TLS, the rootDSE
and the schema in :mod:`~persona_sync.directory.ldap_conn`; reading (paged searches
streamed page by page, resumed after a lost connection) in
:mod:`~persona_sync.directory.ldap_read`, decoded by
:mod:`~persona_sync.directory.ldap_stream`; writing (compare-and-swap in one modify,
pipelined with a bounded window) in :mod:`~persona_sync.directory.ldap_write` and
:mod:`~persona_sync.directory.ldap_pipeline`. Every network call is bounded by
``directory.timeout``. ldap3's exceptions stop in those modules and become
:class:`~persona_sync.errors.DirectoryError`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ldap3 import MODIFY_DELETE, Connection
from ldap3.core import exceptions as ldap_errors

from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory.base import (
    GONE,
    Cancel,
    Change,
    ChangeResult,
    Checks,
    Cursor,
    DeltaRead,
    Directory,
    DirectoryAborted,
    Finding,
    ReadBack,
)
from persona_sync.directory.ldap_checks import connection_checks, write_probe
from persona_sync.directory.ldap_conn import (
    ACCESS_DENIED,
    RECONNECTS,
    AttributeType,
    LdapLink,
    discard,
    unbind,
)
from persona_sync.directory.ldap_delta import DeltaSource, read_delta
from persona_sync.directory.ldap_pipeline import ModifyPipeline
from persona_sync.directory.ldap_read import LdapReader
from persona_sync.directory.ldap_write import WriteBatch, WriteSettings
from persona_sync.dn import normalize_dn
from persona_sync.employee import Employee
from persona_sync.errors import ConfigError, DirectoryError
from persona_sync.secrets import Secret

__all__ = ["PRESETS", "AttributeType", "LdapDirectory", "Preset"]


@dataclass(frozen=True)
class Preset:
    filter: str
    id_attribute: str
    stable_id_attribute: str
    suggestion: str
    # the server keeps manager values pointing at their entry (AD's linked attributes):
    # renames rewrite them, deletes drop them, and the holders' change stamps stay as they were
    linked_manager: bool = False


PRESETS = {
    "ad": Preset(
        "(&(objectCategory=person)(objectClass=user))",
        "sAMAccountName",
        "objectGUID",
        "msDS-cloudExtensionAttribute1..20 or employeeType; extensionAttribute1..15 where the "
        "Exchange schema is installed",
        linked_manager=True,
    ),
    "openldap": Preset(
        "(objectClass=inetOrgPerson)",
        "uid",
        "entryUUID",
        "a custom single-valued attribute (see the README for a two-line schema)",
    ),
}


class LdapDirectory(Directory):
    """A directory reached over LDAP; one bound connection for reads, one for writes."""

    batch_size = 1000

    def __init__(self, spec: LdapDirectoryConfig, password: Secret | None) -> None:
        self.spec = spec
        self.preset = PRESETS[spec.preset]
        self.password = password
        self.id_attribute = (spec.id_attribute or self.preset.id_attribute).lower()
        self.stable_attribute = (
            spec.stable_id_attribute or self.preset.stable_id_attribute
        ).lower()
        self.identity = "ldap:" + ";".join(dn.casefold() for dn in spec.base_dns)
        self._link = LdapLink(spec, password)
        self._reading = LdapReader(self._link, spec, self.id_attribute)
        self._writer: tuple[Connection, ModifyPipeline] | None = None
        self._checked: set[str] = set()
        self._may_write = False  # an answer of this run showed the account may write

    # --- connections ------------------------------------------------------------------

    @property
    def reader(self) -> Connection:
        """The bound reading connection (opened on first use)."""
        return self._link.reader

    def _writer_pipeline(self) -> ModifyPipeline:
        """The writing connection: its own bind, modifies pipelined on its socket."""
        if self._writer is None:
            connection = self._link.connect()
            self._writer = (connection, ModifyPipeline(connection, self.spec.timeout))
        return self._writer[1]

    def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            discard(writer[0])

    def close(self) -> None:
        self._link.close()
        writer, self._writer = self._writer, None
        if writer is not None:
            unbind(writer[0])

    # --- reading ----------------------------------------------------------------------

    def search_filter(self) -> str:
        extra = self.spec.filter or ""
        if extra and not (extra.startswith("(") and extra.endswith(")")):
            extra = f"({extra})"
        return f"(&{self.preset.filter}{extra})" if extra else self.preset.filter

    def read(self, attributes: Sequence[str]) -> Iterator[Employee]:
        wanted = [*attributes, self.id_attribute, self.stable_attribute]
        return self._reading.search(self.search_filter(), wanted)

    def key(self, employee: Employee) -> str:
        """The stable id (objectGUID as a UUID string, entryUUID), else the normalized DN."""
        stable = employee.attributes.get(self.stable_attribute)
        return stable if stable else normalize_dn(employee.dn)

    def read_delta(self, attributes: Sequence[str], cursor: Cursor | None) -> DeltaRead:
        """Entries changed since ``cursor``: see :mod:`~persona_sync.directory.ldap_delta`."""
        source = DeltaSource(
            self._link,
            self._reading,
            self.spec,
            self.search_filter(),
            self.stable_attribute,
            self.key,
        )
        return read_delta(source, [*attributes, self.id_attribute, self.stable_attribute], cursor)

    def lookup_managers(self, dns: Sequence[str]) -> list[Employee]:
        """Entries outside the search base that head employees' manager chains."""
        found: list[Employee] = []
        for dn in dns:
            item = self._link.entry(dn, [self.id_attribute, "manager"], f"reading manager {dn}")
            if item is not None:
                found.append(self._reading.employee(item["dn"], item.get("raw_attributes") or {}))
        return found

    def reread(self, dns: Sequence[str], attributes: Sequence[str]) -> list[Employee] | None:
        """Base searches with the read's filter: AD rewrites a report's ``manager`` when the
        manager is renamed or moved and drops it when the manager is deleted, without a
        uSNChanged on the report; without the refint overlay slapd keeps the old DN, and
        reading it again would find it unchanged, so it is not read."""
        if not self.preset.linked_manager:
            return None
        wanted = [*attributes, self.id_attribute, self.stable_attribute]
        found: list[Employee] = []
        for dn in dns:
            item = self._link.entry(dn, wanted, f"reading {dn} again", self.search_filter())
            if item is not None:
                found.append(self._reading.employee(item["dn"], item.get("raw_attributes") or {}))
        return found

    # --- the target attribute ---------------------------------------------------------

    def check_targets(self, attributes: Sequence[str]) -> None:
        """Refuse targets the schema lacks or allows several values in (no CAS there)."""
        for attribute in attributes:
            if attribute.lower() in self._checked:
                continue
            definition = self.attribute_type(attribute)
            if definition is None:
                raise ConfigError(
                    f"target attribute {attribute} does not exist in this directory's schema; "
                    f"attributes that fit: {self.preset.suggestion}"
                )
            if not definition.single_valued:
                raise ConfigError(
                    f"target attribute {attribute} is multi-valued in this directory's schema, so "
                    "compare-and-swap cannot protect it; choose a single-valued attribute: "
                    f"{self.preset.suggestion}"
                )
            self._checked.add(attribute.lower())

    def diagnose(self, targets: Sequence[str]) -> Checks:
        return connection_checks(self, targets)

    def probe_write(self, sample: Employee, targets: Sequence[str]) -> Iterator[Finding]:
        return write_probe(self, sample, targets)

    def attribute_type(self, name: str) -> AttributeType | None:
        return self._link.attribute_type(name)

    def root_dse(self) -> dict[str, str]:
        return self._link.root_dse(
            [
                "namingContexts",
                "defaultNamingContext",
                "vendorName",
                "vendorVersion",
                "subschemaSubentry",
                "supportedLDAPVersion",
                "dnsHostName",
                "highestCommittedUSN",
            ]
        )

    def can_write(self, dn: str, attribute: str) -> bool | None:
        """Probe write access without changing anything: delete a value nobody has.

        The server checks access before the value: noSuchAttribute means allowed,
        insufficientAccessRights means not. None when the answer says neither.
        """
        probe = f"persona-sync-probe-{uuid.uuid4().hex}"
        try:
            self.reader.modify(dn, {attribute: [(MODIFY_DELETE, [probe])]})
        except ldap_errors.LDAPException as exc:
            raise DirectoryError(
                f"probing write access on {dn} failed: {self._link.reason(exc)}"
            ) from None
        code = (self.reader.result or {}).get("result")
        if code in (16, 0):
            return True
        if code == ACCESS_DENIED:
            return False
        return None

    # --- writing ----------------------------------------------------------------------

    def apply(self, changes: Sequence[Change], cancel: Cancel | None = None) -> list[ChangeResult]:
        try:
            self.check_targets(sorted({c.attribute for c in changes}))
        except DirectoryError as exc:  # nothing sent yet
            raise DirectoryAborted(str(exc), []) from None
        batch = WriteBatch(
            changes,
            WriteSettings(
                window=self.spec.write_window,
                auxiliary_class=self.spec.auxiliary_class,
                user=self.spec.bind.user or "anonymous",
                urls=", ".join(self.spec.urls),
                reconnects=RECONNECTS,
            ),
            connect=self._writer_pipeline,
            drop=self._drop_writer,
            read=self._read_current,
            cancel=cancel,
            may_write=self._may_write,
        )
        try:
            return batch.run()
        finally:
            self._may_write = batch.may_write

    def read_back(self, changes: Sequence[Change]) -> list[ReadBack]:
        return [self._read_current(c.dn, c.attribute) for c in changes]

    def _read_current(self, dn: str, attribute: str) -> ReadBack:
        item = self._link.entry(dn, [attribute], f"re-reading {dn}")
        if item is None:
            return GONE
        for key, values in (item.get("raw_attributes") or {}).items():
            if key.lower() == attribute.lower() and values:
                raw = values[0]
                return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return None
