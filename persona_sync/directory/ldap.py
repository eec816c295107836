"""Active Directory and OpenLDAP through ldap3.

TLS first: ``ldaps://`` or StartTLS, certificates verified; plain ``ldap://`` binds only
with ``allow_plaintext``. Reads are paged searches streamed page by page. Writes are
compare-and-swap in one modify (delete the old value, add the new), pipelined with a
bounded window; the server refuses the modify with noSuchAttribute when the value
changed since the plan, and that becomes a conflict. ldap3's exceptions stop here and
become :class:`~persona_sync.errors.DirectoryError`.
"""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from ldap3 import (
    ASYNC,
    BASE,
    LEVEL,
    MODIFY_ADD,
    MODIFY_DELETE,
    NONE,
    NTLM,
    SIMPLE,
    SUBTREE,
    SYNC,
    Connection,
    Server,
    Tls,
)
from ldap3.core import exceptions as ldap_errors

from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory.base import Change, ChangeResult, Directory, DirectoryAborted
from persona_sync.employee import Employee
from persona_sync.errors import ConfigError, DirectoryError
from persona_sync.secrets import Secret

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Preset:
    filter: str
    id_attribute: str
    stable_id_attribute: str
    suggestion: str


PRESETS = {
    "ad": Preset(
        "(&(objectCategory=person)(objectClass=user))",
        "sAMAccountName",
        "objectGUID",
        "msDS-cloudExtensionAttribute1..20 or employeeType; extensionAttribute1..15 where the "
        "Exchange schema is installed",
    ),
    "openldap": Preset(
        "(objectClass=inetOrgPerson)",
        "uid",
        "entryUUID",
        "a custom single-valued attribute (see the README for a two-line schema)",
    ),
}

# Result codes that mean "the value is not what the plan saw" for a compare-and-swap modify.
_CAS_MISMATCH = {16, 19, 20}
_NO_SUCH_OBJECT = 32
_ACCESS_DENIED = 50
_OBJECT_CLASS_VIOLATION = 65
_LOST = (
    ldap_errors.LDAPSocketOpenError,
    ldap_errors.LDAPSocketReceiveError,
    ldap_errors.LDAPSocketSendError,
    ldap_errors.LDAPSessionTerminatedByServerError,
    ldap_errors.LDAPSocketCloseError,
    ldap_errors.LDAPResponseTimeoutError,
)
_RECONNECTS = 3


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
        self._servers = [self._server(url) for url in spec.urls]
        self._reader: Connection | None = None
        self._writer: Connection | None = None
        self._checked: set[str] = set()

    # --- connections ------------------------------------------------------------------

    def _server(self, url: str) -> Server:
        parts = urlsplit(url)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise ConfigError(f"directory.urls: {url!r} is not an ldap:// or ldaps:// URL")
        secure = parts.scheme == "ldaps"
        if (
            not secure
            and not self.spec.start_tls
            and not self.spec.allow_plaintext
            and (self.spec.bind.method != "anonymous")
        ):
            raise ConfigError(
                f"directory.urls: {url} is plain LDAP, which would send the bind password in "
                "clear: use ldaps://, set start_tls: true, or (test labs only) allow_plaintext: true"
            )
        tls = Tls(
            validate=ssl.CERT_REQUIRED if self.spec.verify_tls else ssl.CERT_NONE,
            ca_certs_file=str(self.spec.ca_file) if self.spec.ca_file else None,
        )
        port = parts.port or (636 if secure else 389)
        return Server(
            parts.hostname,
            port=port,
            use_ssl=secure,
            tls=tls,
            get_info=NONE,
            connect_timeout=self.spec.timeout,
        )

    def _connect(self, strategy: str = SYNC) -> Connection:
        """Open and bind, trying each URL in order (failover); errors say what each said."""
        bind = self.spec.bind
        kwargs: dict[str, Any] = {
            "client_strategy": strategy,
            "receive_timeout": self.spec.timeout,
            "raise_exceptions": False,
            "auto_referrals": False,
            "read_only": False,
        }
        if bind.method != "anonymous":
            if self.password is None:
                raise ConfigError("no bind password given")
            kwargs.update(
                user=bind.user,
                password=self.password.value,
                authentication=NTLM if bind.method == "ntlm" else SIMPLE,
            )
        failures: list[str] = []
        for url, server in zip(self.spec.urls, self._servers, strict=True):
            try:
                connection = Connection(server, **kwargs)
                connection.open()
                if self.spec.start_tls and not server.ssl:
                    connection.start_tls()
            except ldap_errors.LDAPStartTLSError as exc:
                failures.append(f"{url}: StartTLS failed: {_reason(exc)}")
                continue
            except ldap_errors.LDAPException as exc:
                failures.append(f"{url}: {_reason(exc)}")
                continue
            try:
                bound = bind.method == "anonymous" or connection.bind()
            except ldap_errors.LDAPSessionTerminatedByServerError:
                if bind.method == "ntlm":
                    raise DirectoryError(
                        f"{url} dropped the NTLM bind (Samba AD DCs do not implement the "
                        "Sicily NTLM bind that ldap3 uses): bind with method: simple as "
                        "DOMAIN\\user or user@domain over TLS instead"
                    ) from None
                failures.append(f"{url}: session terminated by server during bind")
                continue
            except ldap_errors.LDAPException as exc:
                failures.append(f"{url}: {_reason(exc)}")
                continue
            if not bound:
                raise DirectoryError(self._bind_error(connection))
            if failures:
                log.warning("ldap_failover", used=url, failed=failures)
            return connection
        if len(failures) == 1:
            raise DirectoryError(f"cannot connect to {failures[0]}")
        raise DirectoryError("cannot connect to any server: " + "; ".join(failures))

    def _bind_error(self, connection: Connection) -> str:
        result = connection.result or {}
        code = result.get("result")
        user = self.spec.bind.user
        if code == 49:
            return f"bind as {user} refused: invalid credentials (LDAP 49)"
        if code == 8:
            return (
                f"bind as {user} refused: the server requires a protected connection "
                "(LDAP 8 strongerAuthRequired): use ldaps:// or start_tls: true"
            )
        return f"bind as {user} failed: LDAP {code} {result.get('description')}: {result.get('message')}"

    @property
    def reader(self) -> Connection:
        if self._reader is None:
            self._reader = self._connect()
        return self._reader

    def close(self) -> None:
        for connection in (self._reader, self._writer):
            if connection is not None:
                try:
                    connection.unbind()
                except ldap_errors.LDAPException:
                    pass
        self._reader = self._writer = None

    # --- reading ----------------------------------------------------------------------

    def search_filter(self) -> str:
        extra = self.spec.filter or ""
        if extra and not (extra.startswith("(") and extra.endswith(")")):
            extra = f"({extra})"
        return f"(&{self.preset.filter}{extra})" if extra else self.preset.filter

    def read(self, attributes: Sequence[str]) -> Iterator[Employee]:
        wanted = list(
            dict.fromkeys(
                [a.lower() for a in attributes] + [self.id_attribute, self.stable_attribute]
            )
        )
        scope = SUBTREE if self.spec.scope == "subtree" else LEVEL
        count = 0
        for base in self.spec.base_dns:
            try:
                pages = self.reader.extend.standard.paged_search(
                    base,
                    self.search_filter(),
                    scope,
                    attributes=wanted,
                    paged_size=self.spec.page_size,
                    generator=True,
                )
                for item in pages:
                    if item.get("type") != "searchResEntry":
                        continue  # referrals (e.g. to other domains) are not followed
                    count += 1
                    yield self._employee(item)
            except ldap_errors.LDAPInvalidFilterError as exc:
                raise ConfigError(
                    f"directory.filter: invalid LDAP filter "
                    f"{self.search_filter()!r}: {_reason(exc)}"
                ) from None
            except ldap_errors.LDAPException as exc:
                raise DirectoryError(f"reading {base} failed: {_reason(exc)}") from None
            result = self.reader.result or {}
            if result.get("result") not in (0, None):
                raise DirectoryError(
                    f"reading {base} failed: LDAP {result.get('result')} "
                    f"{result.get('description')}: {result.get('message')}"
                )
        log.info("ldap_read", entries=count, bases=len(self.spec.base_dns))

    def _employee(self, item: dict[str, Any]) -> Employee:
        attributes: dict[str, str] = {}
        for name, values in (item.get("raw_attributes") or {}).items():
            if not values:
                continue
            key = name.lower()
            raw = values[0]
            if key == "objectguid" and isinstance(raw, bytes) and len(raw) == 16:
                attributes[key] = str(uuid.UUID(bytes_le=raw))
                continue
            try:
                attributes[key] = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            except UnicodeDecodeError:
                continue  # binary values (photos, SIDs) are not facts
        dn = item["dn"]
        return Employee(attributes.get(self.id_attribute) or dn, dn, attributes)

    def lookup_managers(self, dns: Sequence[str]) -> list[Employee]:
        """Entries outside the search base that head employees' manager chains."""
        found: list[Employee] = []
        for dn in dns:
            try:
                ok = self.reader.search(
                    dn, "(objectClass=*)", BASE, attributes=[self.id_attribute, "manager"]
                )
            except ldap_errors.LDAPException as exc:
                raise DirectoryError(f"reading manager {dn} failed: {_reason(exc)}") from None
            if ok and self.reader.response:
                item = next(
                    (i for i in self.reader.response if i.get("type") == "searchResEntry"), None
                )
                if item is not None:
                    found.append(self._employee(item))
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

    def attribute_type(self, name: str) -> AttributeType | None:
        schema_dn = self._root_dse(["subschemaSubentry"]).get("subschemasubentry")
        if not schema_dn:
            raise DirectoryError("the server does not publish its schema (no subschemaSubentry)")
        try:
            self.reader.search(schema_dn, "(objectClass=*)", BASE, attributes=["attributeTypes"])
        except ldap_errors.LDAPException as exc:
            raise DirectoryError(f"reading the schema failed: {_reason(exc)}") from None
        for item in self.reader.response or []:
            for raw in (item.get("raw_attributes") or {}).get("attributeTypes", []):
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                parsed = AttributeType.parse(text)
                if parsed is not None and name.lower() in (n.lower() for n in parsed.names):
                    return parsed
        return None

    def _root_dse(self, attributes: list[str]) -> dict[str, str]:
        try:
            self.reader.search("", "(objectClass=*)", BASE, attributes=attributes)
        except ldap_errors.LDAPException as exc:
            raise DirectoryError(f"reading the rootDSE failed: {_reason(exc)}") from None
        values: dict[str, str] = {}
        for item in self.reader.response or []:
            for key, raw in (item.get("raw_attributes") or {}).items():
                if raw:
                    values[key.lower()] = ";".join(
                        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                        for v in raw
                    )
        return values

    def root_dse(self) -> dict[str, str]:
        return self._root_dse(
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
            raise DirectoryError(f"probing write access on {dn} failed: {_reason(exc)}") from None
        code = (self.reader.result or {}).get("result")
        if code in (16, 0):
            return True
        if code == _ACCESS_DENIED:
            return False
        return None

    # --- writing ----------------------------------------------------------------------

    def apply(self, changes: Sequence[Change]) -> list[ChangeResult]:
        self.check_targets(sorted({c.attribute for c in changes}))
        results: dict[int, ChangeResult] = {}
        todo = list(range(len(changes)))
        losses = 0
        rounds = 0
        while todo:
            rounds += 1
            if rounds > _RECONNECTS + 3:
                for i in todo:
                    results[i] = ChangeResult(
                        changes[i], "conflict", "the value keeps changing while being written"
                    )
                break
            try:
                if self._writer is None:
                    self._writer = self._connect(ASYNC)
                todo = self._pipeline(changes, todo, results)
            except _LOST as exc:
                self._writer = self._reader = None
                losses += 1
                log.warning("ldap_connection_lost", error=_reason(exc), attempt=losses)
                if losses > _RECONNECTS:
                    self._abort(
                        changes,
                        results,
                        f"connection to {', '.join(self.spec.urls)} "
                        f"lost {losses} times: {_reason(exc)}",
                    )
                try:
                    # What was in flight may or may not have been written: read it back.
                    todo = self._settle(changes, [i for i in todo if i not in results], results)
                except (DirectoryError, *_LOST) as again:
                    self._abort(
                        changes, results, f"connection lost and not regained: {_reason(again)}"
                    )
            except DirectoryError as exc:
                self._abort(changes, results, str(exc))
        return [results[i] for i in range(len(changes))]

    def _abort(
        self, changes: Sequence[Change], results: dict[int, ChangeResult], reason: str
    ) -> None:
        """Stop, keeping the outcome of every change decided so far; the rest are unknown."""
        for i in range(len(changes)):
            results.setdefault(
                i,
                ChangeResult(
                    changes[i],
                    "failed",
                    "not confirmed (connection lost): the value may or may not be written; rerun "
                    "apply with the same plan, compare-and-swap makes that safe",
                ),
            )
        raise DirectoryAborted(reason, [results[i] for i in range(len(changes))])

    def _pipeline(
        self, changes: Sequence[Change], todo: list[int], results: dict[int, ChangeResult]
    ) -> list[int]:
        """Send modifies with at most ``write_window`` in flight; returns what is left."""
        writer = self._writer
        assert writer is not None
        window = self.spec.write_window
        in_flight: list[tuple[int, int, bool]] = []  # (change index, message id, with class)
        retry: list[int] = []
        queue = list(todo)
        position = 0
        while position < len(queue) or in_flight:
            while position < len(queue) and len(in_flight) < window:
                index = queue[position]
                with_class = index in retry
                message = writer.modify(
                    changes[index].dn, self._modification(changes[index], with_class)
                )
                in_flight.append((index, message, with_class))
                position += 1
            index, message, with_class = in_flight.pop(0)
            _response, result = writer.get_response(message, timeout=self.spec.timeout)
            code = (result or {}).get("result")
            if (
                code == _OBJECT_CLASS_VIOLATION
                and self.spec.auxiliary_class
                and not with_class
                and changes[index].new is not None
            ):
                retry.append(index)
                queue.append(index)
                continue
            if code in _CAS_MISMATCH:
                continue  # settled below with a fresh read
            results[index] = self._result(changes[index], code, result or {})
        pending = [i for i in todo if i not in results]
        return self._settle(changes, pending, results) if pending else []

    def _settle(
        self, changes: Sequence[Change], indexes: list[int], results: dict[int, ChangeResult]
    ) -> list[int]:
        """Decide changes whose outcome needs the current value: done, conflict, or resend."""
        resend: list[int] = []
        for index in indexes:
            change = changes[index]
            current = self._current(change.dn, change.attribute)
            if isinstance(current, _Missing):
                results[index] = ChangeResult(change, "conflict", "entry no longer exists")
            elif current == change.new:
                results[index] = ChangeResult(change, "applied", "already had the value", current)
            elif current == change.old:
                resend.append(index)  # the write did not happen (connection lost): safe to retry
            else:
                results[index] = ChangeResult(
                    change,
                    "conflict",
                    f"value changed since the plan: expected {_show(change.old)}, found {_show(current)}",
                    current,
                )
        return resend

    def _current(self, dn: str, attribute: str) -> str | None | _Missing:
        try:
            ok = self.reader.search(dn, "(objectClass=*)", BASE, attributes=[attribute])
        except ldap_errors.LDAPException as exc:
            raise DirectoryError(f"re-reading {dn} failed: {_reason(exc)}") from None
        if not ok:
            if (self.reader.result or {}).get("result") == _NO_SUCH_OBJECT:
                return _Missing()
            raise DirectoryError(f"re-reading {dn} failed: {self.reader.result}")
        for item in self.reader.response or []:
            if item.get("type") == "searchResEntry":
                for key, values in (item.get("raw_attributes") or {}).items():
                    if key.lower() == attribute.lower() and values:
                        raw = values[0]
                        return (
                            raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                        )
                return None
        return _Missing()

    def _modification(self, change: Change, with_class: bool) -> dict[str, list[Any]]:
        operations: list[Any] = []
        if change.old is not None:
            operations.append((MODIFY_DELETE, [change.old]))
        if change.new is not None:
            operations.append((MODIFY_ADD, [change.new]))
        modification: dict[str, list[Any]] = {change.attribute: operations}
        if with_class and self.spec.auxiliary_class:
            modification["objectClass"] = [(MODIFY_ADD, [self.spec.auxiliary_class])]
        return modification

    def _result(self, change: Change, code: int | None, result: dict[str, Any]) -> ChangeResult:
        if code == 0:
            return ChangeResult(change, "applied")
        if code == _NO_SUCH_OBJECT:
            return ChangeResult(change, "conflict", "entry no longer exists")
        if code == _ACCESS_DENIED:
            return ChangeResult(
                change,
                "failed",
                f"permission denied: {self.spec.bind.user} may "
                f"not write {change.attribute} on this entry (LDAP 50)",
            )
        if code == _OBJECT_CLASS_VIOLATION:
            return ChangeResult(
                change,
                "failed",
                f"the entry's object classes do not allow "
                f"{change.attribute} (LDAP 65); set directory.auxiliary_class",
            )
        return ChangeResult(
            change,
            "failed",
            f"LDAP {code} {result.get('description')}: {result.get('message')}".rstrip(": "),
        )


class _Missing:
    """The entry itself is gone."""


@dataclass(frozen=True)
class AttributeType:
    oid: str
    names: tuple[str, ...]
    single_valued: bool
    syntax: str | None

    _NAME = re.compile(r"NAME\s+(?:'([^']+)'|\(\s*((?:'[^']+'\s*)+)\))", re.IGNORECASE)
    _SYNTAX = re.compile(r"SYNTAX\s+'?([0-9.]+(?:\{\d+\})?)'?", re.IGNORECASE)

    @classmethod
    def parse(cls, text: str) -> AttributeType | None:
        """Parse an RFC 4512 AttributeTypeDescription (enough for NAME, SINGLE-VALUE)."""
        body = text.strip()
        if not body.startswith("("):
            return None
        oid = body[1:].split()[0] if body[1:].split() else ""
        match = cls._NAME.search(body)
        if match is None:
            return None
        names = (
            (match.group(1),) if match.group(1) else tuple(re.findall(r"'([^']+)'", match.group(2)))
        )
        syntax = cls._SYNTAX.search(body)
        return cls(
            oid,
            names,
            bool(re.search(r"\bSINGLE-VALUE\b", body)),
            syntax.group(1) if syntax else None,
        )


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "certificate verify failed" in text or "CERTIFICATE_VERIFY_FAILED" in text:
        return (
            "TLS certificate verification failed (set directory.ca_file to the CA that "
            "signed the server's certificate)"
        )
    return text


def _show(value: str | None) -> str:
    return "(empty)" if value is None else repr(value)
