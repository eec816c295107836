"""Active Directory and OpenLDAP through ldap3.

TLS first: ``ldaps://`` or StartTLS, certificates verified; plain ``ldap://`` binds only
with ``allow_plaintext``. Reads are paged searches streamed page by page; a connection lost
mid-read is reopened and the search resumed (entries already given are not given twice).
Writes are compare-and-swap in one modify (delete the old value, add the new), pipelined
with a bounded window in one thread (:mod:`~persona_sync.directory.ldap_pipeline`); what
each answer means is in :mod:`~persona_sync.directory.ldap_write`. Every network call is
bounded by ``directory.timeout``. ldap3's exceptions stop here and become
:class:`~persona_sync.errors.DirectoryError`.
"""

from __future__ import annotations

import ast
import contextlib
import math
import re
import ssl
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from ldap3 import (
    BASE,
    LEVEL,
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
from persona_sync.directory.base import (
    GONE,
    Cancel,
    Change,
    ChangeResult,
    Directory,
    DirectoryAborted,
    ReadBack,
)
from persona_sync.directory.ldap_pipeline import CLOSED, ModifyPipeline
from persona_sync.directory.ldap_write import WriteBatch, WriteSettings
from persona_sync.dn import normalize_dn
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

_NO_SUCH_OBJECT = 32
_ACCESS_DENIED = 50
_LOST = (
    ldap_errors.LDAPSocketOpenError,
    ldap_errors.LDAPSocketReceiveError,
    ldap_errors.LDAPSocketSendError,
    ldap_errors.LDAPSessionTerminatedByServerError,
    ldap_errors.LDAPSocketCloseError,
    ldap_errors.LDAPResponseTimeoutError,
)
_RECONNECTS = 3  # connection losses tolerated per read of a base, and per batch of writes


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
        self._writer: tuple[Connection, ModifyPipeline] | None = None
        self._checked: set[str] = set()
        self._may_write = False  # an answer of this run showed the account may write

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
                "clear: use ldaps://, set start_tls: true, or (test labs only) "
                "allow_plaintext: true"
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

    def _connect(self) -> Connection:
        """Open and bind, trying each URL in order (failover); errors say what each said."""
        bind = self.spec.bind
        kwargs: dict[str, Any] = {
            "client_strategy": SYNC,
            # Whole seconds: ldap3 packs it into SO_RCVTIMEO, which refuses a float.
            "receive_timeout": max(1, math.ceil(self.spec.timeout)),
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
            connection = Connection(server, **kwargs)
            try:
                connection.open()
                if self.spec.start_tls and not server.ssl:
                    connection.start_tls()
            except ldap_errors.LDAPStartTLSError as exc:
                _discard(connection)
                failures.append(f"{url}: StartTLS failed: {self._reason(exc)}")
                continue
            except ldap_errors.LDAPException as exc:
                _discard(connection)
                failures.append(f"{url}: {self._reason(exc, server)}")
                continue
            try:
                bound = bind.method == "anonymous" or connection.bind()
            except ldap_errors.LDAPSessionTerminatedByServerError:
                _discard(connection)
                if bind.method == "ntlm":
                    raise DirectoryError(
                        f"{url} dropped the NTLM bind (Samba AD DCs do not implement the "
                        "Sicily NTLM bind that ldap3 uses): bind with method: simple as "
                        "DOMAIN\\user or user@domain over TLS instead"
                    ) from None
                failures.append(f"{url}: session terminated by server during bind")
                continue
            except ldap_errors.LDAPException as exc:
                _discard(connection)
                failures.append(f"{url}: {self._reason(exc, server)}")
                continue
            if not bound:
                result = connection.result
                _discard(connection)
                if not result:  # no answer at all: the connection went during the bind
                    failures.append(f"{url}: the connection closed during the bind")
                    continue
                raise DirectoryError(self._bind_error(result))
            # Bound: ldap3 never needs the password again (a reconnect makes a new
            # Connection), and its repr would print it in clear.
            connection.password = None
            if failures:
                log.warning("ldap_failover", used=url, failed=failures)
            return connection
        if len(failures) == 1:
            raise DirectoryError(f"cannot connect to {failures[0]}")
        raise DirectoryError("cannot connect to any server: " + "; ".join(failures))

    def _reason(self, exc: BaseException, server: Server | None = None) -> str:
        """Why a connection could not be made or was lost, in words an admin can act on."""
        text = str(exc) or type(exc).__name__
        host = f"{server.host}:{server.port}" if server is not None else "the server"
        if "invalid server address" in text and server is not None:
            return f"host name {server.host} not found (DNS lookup failed)"
        if "Connection refused" in text:
            return f"connection refused (nothing listens on {host})"
        if "certificate verify failed" in text or "CERTIFICATE_VERIFY_FAILED" in text:
            if self.spec.ca_file is not None:
                return (
                    "TLS certificate verification failed: the server's certificate is not "
                    f"signed by the CA in directory.ca_file ({self.spec.ca_file}); set "
                    "directory.ca_file to the CA that signed it"
                )
            return (
                "TLS certificate verification failed (set directory.ca_file to the CA that "
                "signed the server's certificate)"
            )
        if "doesn't match" in text or "hostname mismatch" in text.lower():
            return (
                f"the server's TLS certificate is not issued for {server.host if server else host}"
                ": connect with a host name the certificate names"
            )
        if "timed out" in text:
            return f"no answer from {host} within {self.spec.timeout:g} s"
        if "EOF occurred" in text or "UNEXPECTED_EOF" in text:
            return f"{host} closed the connection during the TLS handshake"
        if any(word in text for word in ("session terminated", "reset by peer", "Broken pipe")):
            return CLOSED
        return _clean(text)

    def _bind_error(self, result: dict[str, Any]) -> str:
        code = result.get("result")
        user = self.spec.bind.user
        if code == 49:
            return f"bind as {user} refused: invalid credentials (LDAP 49)"
        if code == 8:
            return (
                f"bind as {user} refused: the server requires a protected connection "
                "(LDAP 8 strongerAuthRequired): use ldaps:// or start_tls: true"
            )
        return (
            f"bind as {user} failed: LDAP {code} {result.get('description')}: "
            f"{result.get('message')}"
        )

    @property
    def reader(self) -> Connection:
        if self._reader is None:
            self._reader = self._connect()
        return self._reader

    def _drop_reader(self) -> None:
        connection, self._reader = self._reader, None
        if connection is not None:
            _discard(connection)

    def _writer_pipeline(self) -> ModifyPipeline:
        """The writing connection: its own bind, modifies pipelined on its socket."""
        if self._writer is None:
            connection = self._connect()
            self._writer = (connection, ModifyPipeline(connection, self.spec.timeout))
        return self._writer[1]

    def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            _discard(writer[0])

    def close(self) -> None:
        for connection in (self._reader, self._writer[0] if self._writer else None):
            if connection is not None:
                with contextlib.suppress(ldap_errors.LDAPException, OSError):
                    connection.unbind()
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
        count = 0
        for base in self.spec.base_dns:
            given: set[str] = set()  # a resumed search skips the entries already given
            for attempt in range(_RECONNECTS + 1):
                try:
                    for item in self._paged_search(base, wanted, resumed=attempt > 0):
                        key = normalize_dn(item["dn"])
                        if key not in given:
                            given.add(key)
                            count += 1
                            yield self._employee(item)
                    break
                except _LOST as exc:
                    self._drop_reader()
                    reason = self._reason(exc)
                    if attempt == _RECONNECTS:
                        raise DirectoryError(
                            f"reading {base} failed: the connection was lost "
                            f"{attempt + 1} times: {reason}"
                        ) from None
                    log.warning("ldap_read_resumed", base=base, error=reason, given=len(given))
        log.info("ldap_read", entries=count, bases=len(self.spec.base_dns))

    def _paged_search(
        self, base: str, wanted: list[str], resumed: bool
    ) -> Iterator[dict[str, Any]]:
        """The entries of one paged search; a lost connection raises one of ``_LOST``."""
        try:
            reader = self.reader
        except DirectoryError as exc:
            if resumed:
                raise DirectoryError(
                    f"reading {base} failed: the connection was lost and not regained: {exc}"
                ) from None
            raise
        try:
            pages = reader.extend.standard.paged_search(
                base,
                self.search_filter(),
                SUBTREE if self.spec.scope == "subtree" else LEVEL,
                attributes=wanted,
                paged_size=self.spec.page_size,
                generator=True,
            )
            for item in pages:
                if item.get("type") == "searchResEntry":  # referrals (other domains): not followed
                    yield item
        except ldap_errors.LDAPInvalidFilterError as exc:
            raise ConfigError(
                f"directory.filter: invalid LDAP filter {self.search_filter()!r}: "
                f"{_clean(str(exc))}"
            ) from None
        except _LOST:
            raise
        except ldap_errors.LDAPException as exc:
            raise DirectoryError(f"reading {base} failed: {self._reason(exc)}") from None
        result = reader.result or {}
        if result.get("result") not in (0, None):
            raise DirectoryError(
                f"reading {base} failed: LDAP {result.get('result')} "
                f"{result.get('description')}: {result.get('message')}"
            )

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
            item = self._entry(dn, [self.id_attribute, "manager"], f"reading manager {dn}")
            if item is not None:
                found.append(self._employee(item))
        return found

    def _entry(self, dn: str, attributes: list[str], what: str) -> dict[str, Any] | None:
        """The entry at ``dn`` (a base search), None when there is none. A lost connection is
        reopened once; other failures raise DirectoryError("<what> failed: ...")."""
        for attempt in (1, 2):
            reader = self.reader
            try:
                found = reader.search(dn, "(objectClass=*)", BASE, attributes=attributes)
            except _LOST as exc:
                self._drop_reader()
                if attempt == 2:
                    raise DirectoryError(f"{what} failed: {self._reason(exc)}") from None
                continue
            except ldap_errors.LDAPException as exc:
                raise DirectoryError(f"{what} failed: {self._reason(exc)}") from None
            if not found:
                result = reader.result or {}
                if result.get("result") == _NO_SUCH_OBJECT:
                    return None
                raise DirectoryError(
                    f"{what} failed: LDAP {result.get('result')} {result.get('description')}: "
                    f"{result.get('message')}"
                )
            return next(
                (i for i in reader.response or [] if i.get("type") == "searchResEntry"), None
            )
        raise AssertionError("unreachable")

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
        item = self._entry(schema_dn, ["attributeTypes"], "reading the schema") or {}
        for raw in (item.get("raw_attributes") or {}).get("attributeTypes", []):
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            parsed = AttributeType.parse(text)
            if parsed is not None and name.lower() in (n.lower() for n in parsed.names):
                return parsed
        return None

    def _root_dse(self, attributes: list[str]) -> dict[str, str]:
        item = self._entry("", attributes, "reading the rootDSE") or {}
        values: dict[str, str] = {}
        for key, raw in (item.get("raw_attributes") or {}).items():
            if raw:
                values[key.lower()] = ";".join(
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw
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
            raise DirectoryError(
                f"probing write access on {dn} failed: {self._reason(exc)}"
            ) from None
        code = (self.reader.result or {}).get("result")
        if code in (16, 0):
            return True
        if code == _ACCESS_DENIED:
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
                reconnects=_RECONNECTS,
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
        item = self._entry(dn, [attribute], f"re-reading {dn}")
        if item is None:
            return GONE
        for key, values in (item.get("raw_attributes") or {}).items():
            if key.lower() == attribute.lower() and values:
                raw = values[0]
                return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return None


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


def _discard(connection: Connection) -> None:
    """Close a failed or lost connection's socket, without a word to the server."""
    with contextlib.suppress(ldap_errors.LDAPException, OSError):
        connection.strategy.close()


def _clean(text: str) -> str:
    """ldap3 wraps some messages in a tuple's repr, and appends the address:
    ("('socket ssl wrapping error: x',)",) ('127.0.0.1', 636) -> socket ssl wrapping error: x."""
    text = re.sub(r" \('[^']*', \d+\)$", "", text)
    while text.startswith("(") and text.endswith(",)"):
        try:
            unwrapped = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            break
        if not (isinstance(unwrapped, tuple) and len(unwrapped) == 1):
            break
        text = str(unwrapped[0])
    return text
