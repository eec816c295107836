"""Search answers read off the wire, for the searches ldap3 cannot stream or decodes slowly.

ldap3 gives no stream for a search that is not paged (a syncrepl refresh, RFC 4533) and
does not decode the controls and intermediate messages of syncrepl; its pure-Python decoder
also costs about 27 us an entry (a sweep of 100,000 keys: 2.7-4.5 s). Here ldap3 still
encodes the request (filter parsing included) and sends it on the link's reading
connection, and reads the answers as whole messages; this module decodes them itself: the
few BER shapes of RFC 4511 section 4.5.2 and 4.13 that a search answer has.

A search that is left before its last message would leave answers in the socket for the
next request to trip over, so the connection is dropped (the link reopens one when needed).
A lost connection raises one of :data:`~persona_sync.directory.ldap_conn.LOST`; callers
translate it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ldap3 import DEREF_NEVER, LEVEL, SUBTREE
from ldap3.core import exceptions as ldap_errors
from ldap3.core.results import RESULT_CODES
from ldap3.operation.search import search_operation
from ldap3.protocol.rfc2696 import paged_search_control

from persona_sync.directory.ldap_conn import LdapLink, clean
from persona_sync.errors import ConfigError, DirectoryError

PAGED_RESULTS = "1.2.840.113556.1.4.319"

_ENTRY, _DONE, _REFERENCE, _INTERMEDIATE = 0x64, 0x65, 0x73, 0x79
_CONTROLS = 0xA0

Control = tuple[str, bool, bytes | None]


@dataclass(frozen=True, slots=True)
class Entry:
    """A searchResultEntry: attribute names as sent, raw values; controls by OID (value)."""

    dn: str
    attributes: dict[str, list[bytes]]
    controls: dict[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Intermediate:
    """An intermediateResponse (syncrepl's syncInfo messages)."""

    name: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Done:
    """The searchResultDone: result code, diagnostic message, controls by OID (value)."""

    code: int
    message: str
    controls: dict[str, bytes] = field(default_factory=dict)


Message = Entry | Intermediate | Done


def search(
    link: LdapLink,
    base: str,
    search_filter: str,
    attributes: Sequence[str],
    *,
    subtree: bool = True,
    controls: Sequence[Control] = (),
    size_limit: int = 0,
) -> Iterator[Message]:
    """The answers to one search on the reading connection, the Done message last.

    Raises ConfigError for a filter ldap3 cannot parse, one of LOST when the connection
    goes; references (other domains) are skipped.
    """
    connection = link.reader
    try:
        request = search_operation(
            base,
            search_filter,
            SUBTREE if subtree else LEVEL,
            DEREF_NEVER,
            list(attributes),
            size_limit,
            0,
            False,
            connection.auto_escape,
            connection.auto_encode,
            None,
            validator=connection.server.custom_validator,
            check_names=connection.check_names,
        )
    except ldap_errors.LDAPInvalidFilterError as exc:
        raise ConfigError(
            f"directory.filter: invalid LDAP filter {search_filter!r}: {clean(str(exc))}"
        ) from None
    strategy = connection.strategy
    finished = False
    try:
        message_id = strategy.send("searchRequest", request, list(controls) or None)
        # ldap3 remembers requests it will collect answers for; these answers are ours.
        strategy._outstanding.pop(message_id, None)
        while not finished:
            messages = strategy.receiving()
            if not messages:
                raise ldap_errors.LDAPSessionTerminatedByServerError(
                    "the server closed the connection"
                )
            for raw in messages:
                decoded = _decode(raw, message_id)
                if decoded is None:
                    continue
                finished = isinstance(decoded, Done)
                yield decoded
    finally:
        if not finished:  # answers may still be on their way: this connection is spent
            link.drop_reader()


def paged(
    link: LdapLink,
    base: str,
    search_filter: str,
    attributes: Sequence[str],
    *,
    page_size: int,
    subtree: bool = True,
    controls: Sequence[Control] = (),
    what: str,
) -> Iterator[Entry]:
    """Every entry of a paged search (RFC 2696), one page on the wire at a time.

    A refusal raises DirectoryError("<what> failed: LDAP <code> ..."), a lost connection
    DirectoryError("<what> failed: <reason>").
    """
    cookie = b""
    while True:
        page = [*controls, paged_search_control(False, page_size, cookie)]
        try:
            for message in search(
                link, base, search_filter, attributes, subtree=subtree, controls=page
            ):
                if isinstance(message, Entry):
                    yield message
                elif isinstance(message, Done):
                    if message.code != 0:
                        raise DirectoryError(f"{what} failed: {describe(message)}")
                    cookie = _paged_cookie(message.controls.get(PAGED_RESULTS, b""))
        except ldap_errors.LDAPException as exc:  # LOST among them; `search` dropped the link
            raise DirectoryError(f"{what} failed: {link.reason(exc)}") from None
        if not cookie:
            return


def describe(done: Done) -> str:
    """A refusal in words: "LDAP 50 insufficientAccessRights: <the server's message>"."""
    name = RESULT_CODES.get(done.code, "unknown result")
    return f"LDAP {done.code} {name}" + (f": {done.message}" if done.message else "")


# --- BER ----------------------------------------------------------------------------


def element(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start, end) of the value of the BER element at ``at`` (one-octet tags: LDAP
    uses no others)."""
    tag = data[at]
    size = data[at + 1]
    start = at + 2
    if size & 0x80:
        count = size & 0x7F
        size = int.from_bytes(data[start : start + count], "big")
        start += count
    return tag, start, start + size


def elements(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """The BER elements between ``start`` and ``end``: (tag, value start, value end)."""
    while start < end:
        tag, value_start, value_end = element(data, start)
        yield tag, value_start, value_end
        start = value_end


def integer(data: bytes, start: int, end: int) -> int:
    return int.from_bytes(data[start:end], "big", signed=True)


def encode(tag: int, value: bytes) -> bytes:
    """One BER element (definite length)."""
    size = len(value)
    if size < 0x80:
        return bytes((tag, size)) + value
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(octets))) + octets + value


def _decode(raw: bytes, message_id: int) -> Message | None:
    """One LDAPMessage of the search ``message_id``; None for a reference."""
    _, start, end = element(raw, 0)
    parts = elements(raw, start, end)
    _, id_start, id_end = next(parts)
    op, op_start, op_end = next(parts)
    got = integer(raw, id_start, id_end)
    if got != message_id:
        if got == 0:  # an unsolicited notification: the server is going away
            raise ldap_errors.LDAPSessionTerminatedByServerError("notice of disconnection")
        raise ldap_errors.LDAPSocketReceiveError(f"an answer to request {got}, not {message_id}")
    controls: dict[str, bytes] = {}
    for tag, controls_start, controls_end in parts:
        if tag == _CONTROLS:
            controls = _controls(raw, controls_start, controls_end)
    if op == _ENTRY:
        dn_tag, dn_start, dn_end = element(raw, op_start)
        _, list_start, list_end = element(raw, dn_end)
        attributes: dict[str, list[bytes]] = {}
        for _, pair_start, _pair_end in elements(raw, list_start, list_end):
            _, name_start, name_end = element(raw, pair_start)
            _, set_start, set_end = element(raw, name_end)
            attributes[raw[name_start:name_end].decode("utf-8", "replace")] = [
                raw[s:e] for _, s, e in elements(raw, set_start, set_end)
            ]
        return Entry(raw[dn_start:dn_end].decode("utf-8", "replace"), attributes, controls)
    if op == _DONE:
        fields = list(elements(raw, op_start, op_end))
        message = raw[fields[2][1] : fields[2][2]].decode("utf-8", "replace")
        return Done(integer(raw, fields[0][1], fields[0][2]), message, controls)
    if op == _INTERMEDIATE:
        name, value = "", b""
        for tag, s, e in elements(raw, op_start, op_end):
            if tag == 0x80:
                name = raw[s:e].decode("ascii", "replace")
            elif tag == 0x81:
                value = raw[s:e]
        return Intermediate(name, value)
    if op == _REFERENCE:
        return None
    raise ldap_errors.LDAPSocketReceiveError(f"an unexpected answer (tag {op:#x}) to a search")


def _controls(raw: bytes, start: int, end: int) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for _, control_start, control_end in elements(raw, start, end):
        oid, value = "", b""
        for tag, s, e in elements(raw, control_start, control_end):
            if tag == 0x04 and not oid:
                oid = raw[s:e].decode("ascii", "replace")
            elif tag == 0x04:
                value = raw[s:e]
        found[oid] = value
    return found


def _paged_cookie(value: bytes) -> bytes:
    """The cookie of a paged-results answer (empty: the last page)."""
    if not value:
        return b""
    _, start, end = element(value, 0)
    _, _, size_end = element(value, start)
    _, cookie_start, cookie_end = element(value, size_end)
    return value[cookie_start:cookie_end]
