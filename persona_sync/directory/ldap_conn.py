"""Reaching an LDAP server: TLS, bind, failover, the rootDSE and the schema.

TLS first: ``ldaps://`` or StartTLS, certificates verified; plain ``ldap://`` binds only
with ``allow_plaintext``. Each URL is tried in order (failover); errors say what each
server said, in words an admin can act on. :class:`LdapLink` owns the reading connection
(opened on first use, reopened after a loss) and makes the writing one on request. ldap3's
exceptions stop here or in the modules that use the link, and become
:class:`~persona_sync.errors.DirectoryError`.
"""

from __future__ import annotations

import ast
import contextlib
import math
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ldap3 import BASE, NONE, NTLM, SIMPLE, SYNC, Connection, Server, Tls
from ldap3.core import exceptions as ldap_errors

from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory.ldap_pipeline import CLOSED
from persona_sync.errors import ConfigError, DirectoryError
from persona_sync.logs import get_logger
from persona_sync.secrets import Secret

log = get_logger(__name__)

NO_SUCH_OBJECT = 32
ACCESS_DENIED = 50
LOST = (
    ldap_errors.LDAPSocketOpenError,
    ldap_errors.LDAPSocketReceiveError,
    ldap_errors.LDAPSocketSendError,
    ldap_errors.LDAPSessionTerminatedByServerError,
    ldap_errors.LDAPSocketCloseError,
    ldap_errors.LDAPResponseTimeoutError,
)
"""ldap3's ways of saying the connection is gone or silent (reconnect, or give up)."""

RECONNECTS = 3  # connection losses tolerated per read of a base, and per batch of writes


class LdapLink:
    """The servers of one directory config and the bound reading connection."""

    def __init__(self, spec: LdapDirectoryConfig, password: Secret | None) -> None:
        self.spec = spec
        self.password = password
        self.servers = [self._server(url) for url in spec.urls]
        self._reader: Connection | None = None

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

    # --- connections ------------------------------------------------------------------

    def connect(self) -> Connection:
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
        for url, server in zip(self.spec.urls, self.servers, strict=True):
            connection = Connection(server, **kwargs)
            try:
                connection.open()
                if self.spec.start_tls and not server.ssl:
                    connection.start_tls()
            except ldap_errors.LDAPStartTLSError as exc:
                discard(connection)
                failures.append(f"{url}: StartTLS failed: {self.reason(exc)}")
                continue
            except ldap_errors.LDAPException as exc:
                discard(connection)
                failures.append(f"{url}: {self.reason(exc, server)}")
                continue
            try:
                bound = bind.method == "anonymous" or connection.bind()
            except ldap_errors.LDAPSessionTerminatedByServerError:
                discard(connection)
                if bind.method == "ntlm":
                    raise DirectoryError(
                        f"{url} dropped the NTLM bind (Samba AD DCs do not implement the "
                        "Sicily NTLM bind that ldap3 uses): bind with method: simple as "
                        "DOMAIN\\user or user@domain over TLS instead"
                    ) from None
                failures.append(f"{url}: session terminated by server during bind")
                continue
            except ldap_errors.LDAPException as exc:
                discard(connection)
                failures.append(f"{url}: {self.reason(exc, server)}")
                continue
            if not bound:
                result = connection.result
                discard(connection)
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

    def reason(self, exc: BaseException, server: Server | None = None) -> str:
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
        return clean(text)

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
        """The bound reading connection, opened on first use."""
        if self._reader is None:
            self._reader = self.connect()
        return self._reader

    def drop_reader(self) -> None:
        """Forget a lost reading connection; the next use opens a new one."""
        connection, self._reader = self._reader, None
        if connection is not None:
            discard(connection)

    def close(self) -> None:
        connection, self._reader = self._reader, None
        if connection is not None:
            unbind(connection)

    # --- single entries ---------------------------------------------------------------

    def entry(
        self, dn: str, attributes: list[str], what: str, search_filter: str = "(objectClass=*)"
    ) -> dict[str, Any] | None:
        """The entry at ``dn`` (a base search), None when there is none or it does not match
        ``search_filter``. A lost connection is reopened once; other failures raise
        DirectoryError("<what> failed: ...")."""
        for attempt in (1, 2):
            reader = self.reader
            try:
                found = reader.search(dn, search_filter, BASE, attributes=attributes)
            except LOST as exc:
                self.drop_reader()
                if attempt == 2:
                    raise DirectoryError(f"{what} failed: {self.reason(exc)}") from None
                continue
            except ldap_errors.LDAPException as exc:
                raise DirectoryError(f"{what} failed: {self.reason(exc)}") from None
            if not found:
                result = reader.result or {}
                if result.get("result") in (NO_SUCH_OBJECT, 0):  # gone; there but no match
                    return None
                raise DirectoryError(
                    f"{what} failed: LDAP {result.get('result')} {result.get('description')}: "
                    f"{result.get('message')}"
                )
            return next(
                (i for i in reader.response or [] if i.get("type") == "searchResEntry"), None
            )
        raise AssertionError("unreachable")

    def root_dse(self, attributes: list[str]) -> dict[str, str]:
        """The rootDSE's attributes by lower-case name, several values joined with ``;``."""
        item = self.entry("", attributes, "reading the rootDSE") or {}
        values: dict[str, str] = {}
        for key, raw in (item.get("raw_attributes") or {}).items():
            if raw:
                values[key.lower()] = ";".join(
                    v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in raw
                )
        return values

    def attribute_type(self, name: str) -> AttributeType | None:
        """The schema's definition of attribute ``name`` (any of its names), None if absent."""
        schema_dn = self.root_dse(["subschemaSubentry"]).get("subschemasubentry")
        if not schema_dn:
            raise DirectoryError("the server does not publish its schema (no subschemaSubentry)")
        item = self.entry(schema_dn, ["attributeTypes"], "reading the schema") or {}
        for key, values in (item.get("raw_attributes") or {}).items():
            if key.lower() != "attributetypes":
                continue
            for raw in values:
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
                parsed = AttributeType.parse(text)
                if parsed is not None and name.lower() in (n.lower() for n in parsed.names):
                    return parsed
        return None


# --- the schema -----------------------------------------------------------------------

# RFC 4512 section 4.1: a description is a parenthesised list of keywords, OIDs, quoted
# strings ('...', in which a quote is escaped as \27) and parenthesised lists of them.
_TOKEN = re.compile(r"\s*(\(|\)|'[^']*'|[^\s()']+)")


@dataclass(frozen=True)
class AttributeType:
    """What persona-sync needs of an RFC 4512 AttributeTypeDescription."""

    oid: str
    names: tuple[str, ...]
    single_valued: bool
    syntax: str | None

    @classmethod
    def parse(cls, text: str) -> AttributeType | None:
        """Parse an AttributeTypeDescription; None when it is not one.

        Tokenized, so a keyword inside a quoted string (``DESC 'not SINGLE-VALUE'``) is
        text, not a keyword. ldap3's own parser (``rfc4512.AttributeTypeInfo``) splits the
        description with a regex and takes such a DESC for the flag, so it is not used.
        """
        tokens = _tokens(text)
        if len(tokens) < 3 or tokens[0] != "(" or tokens[-1] != ")":
            return None
        body = iter(tokens[2:-1])
        names: tuple[str, ...] = ()
        syntax: str | None = None
        single = False
        for token in body:
            keyword = token.upper()
            if keyword == "SINGLE-VALUE":
                single = True
            elif keyword in ("OBSOLETE", "COLLECTIVE", "NO-USER-MODIFICATION"):
                continue
            elif keyword == "NAME":
                names = tuple(_unquote(value) for value in _values(body))
            elif keyword == "SYNTAX":
                values = _values(body)
                syntax = _unquote(values[0]) if values else None
            else:  # DESC, SUP, EQUALITY, USAGE, X-...: one value or a list, skipped
                _values(body)
        if not names:
            return None
        return cls(tokens[1], names, single, syntax)


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:  # an unterminated quote: not a description
            return []
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def _values(tokens: Iterator[str]) -> list[str]:
    """The value after a keyword: one token, or the tokens of a parenthesised list."""
    first = next(tokens, ")")
    if first != "(":
        return [first]
    values: list[str] = []
    for token in tokens:
        if token == ")":
            break
        if token != "$":
            values.append(token)
    return values


def _unquote(token: str) -> str:
    return token[1:-1] if len(token) >= 2 and token[0] == token[-1] == "'" else token


# --- small helpers ----------------------------------------------------------------------


def discard(connection: Connection) -> None:
    """Close a failed or lost connection's socket, without a word to the server."""
    with contextlib.suppress(ldap_errors.LDAPException, OSError):
        connection.strategy.close()


def unbind(connection: Connection) -> None:
    """Say goodbye and close; a connection already gone is fine."""
    with contextlib.suppress(ldap_errors.LDAPException, OSError):
        connection.unbind()


def clean(text: str) -> str:
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
