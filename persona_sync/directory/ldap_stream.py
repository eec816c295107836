"""A paged search read straight from a bound ldap3 connection's socket, decoded lean.

Why: ldap3 decodes every answer into generic BER trees, then into case-insensitive dicts
with per-value formatters and a configuration lookup per call. Reading 100,000 entries of
nine attributes from slapd over LDAPS took 18.5 s of CPU through ldap3's paged search, 95%
of it in ``decode_sequence``, ``get_config_parameter``, ``to_unicode`` and
``CaseInsensitiveDict``; this module takes 1.2-2.1 s (``ldapsearch`` itself 0.5-0.8 s,
python-ldap's C decoder 1.4-1.9 s, so it was not worth a compiled dependency). A
searchResEntry has one fixed shape (RFC 4511 4.5.2: message id, DN, a sequence of (type,
set of values)), so this module walks it with a few index operations per attribute and
keeps only what a reader needs: the DN and the first value of each attribute, as text.

Both walks exist twice: :func:`_frame` (the messages in a page's bytes) and :func:`_entry`
here, and their compiled twins ``_ber.frame_messages`` and ``_ber.decode_entries``
(``_ber.c``, built at install when a C compiler is there), which take a fifth of the
time and are used when present (:data:`DECODER` says which are). The compiled ones
check every length against its element, so a malformed message they refuse may come out
of the Python walks as partial values; what they decode, the Python walks decode alike.

The searchRequest is encoded by ldap3 once a search (its filter parser and BER encoder)
and wrapped with each page's message id and cookie here (:func:`search_message`); the
searchResDone that ends each page is decoded by ldap3's decoder (one per page), so only
the hot path is our own.
The connection is opened and bound by ldap3 (SYNC strategy); between the first request
and the end of the last page this module owns its socket. A search left unfinished (the
reader stopped early, an error) leaves answers in the stream: the caller must then drop
the connection (``finished`` says whether it must).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from ldap3 import DEREF_ALWAYS, Connection
from ldap3.operation.search import search_operation
from ldap3.protocol.rfc4511 import ProtocolOp
from ldap3.strategy.base import BaseStrategy
from ldap3.utils.asn1 import decode_message_fast, encode, ldap_result_to_dict_fast

from persona_sync.directory.ldap_pipeline import CLOSED
from persona_sync.directory.ldap_wire import encode as ber

_Decoder = Callable[
    [bytes, list[tuple[int, int]], dict[bytes, str], dict[str, Callable[[bytes], str | None]]],
    list[tuple[str, dict[str, str]]],
]
_Framer = Callable[[bytes | bytearray, int, list[tuple[int, int]]], tuple[int, int, int]]
decode_entries: _Decoder | None
frame_messages: _Framer | None
try:
    from persona_sync.directory._ber import decode_entries, frame_messages
except ImportError:  # not built: no C compiler where persona-sync was installed
    decode_entries = frame_messages = None

__all__ = ["DECODER", "Converters", "Entry", "PagedStream", "SearchFailed", "StreamLost"]

Entry = tuple[str, dict[str, str]]
"""A searchResEntry: the DN, and the first value of each attribute by lower-case name."""

Converters = Mapping[str, Callable[[bytes], str | None]]
"""Attributes (lower-case names) whose value is not UTF-8 text, and how to make it text."""

DECODER = "compiled" if decode_entries is not None else "python"
"""Which walk decodes entries: "compiled" (``_ber.c``) or "python" (:func:`_entry`)."""

_ENTRY = 0x64  # [APPLICATION 4] searchResEntry
_DONE = 0x65  # [APPLICATION 5] searchResDone
_REFERENCE = 0x73  # [APPLICATION 19] searchResRef
_EXTENDED = 0x78  # [APPLICATION 24] extendedResp (message id 0: notice of disconnection)
_PAGED = "1.2.840.113556.1.4.319"
_CHUNK = 65536  # bytes read from the socket at most per call (TLS records are <= 16 KiB)


class StreamLost(Exception):
    """The connection went or fell silent mid-search; ``reason`` says which, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SearchFailed(Exception):
    """The server ended the search with an error ("LDAP 32 noSuchObject: <its message>");
    ``result`` is ldap3's result dict."""

    def __init__(self, result: dict[str, Any]) -> None:
        message = result.get("message") or ""
        super().__init__(
            f"LDAP {result.get('result')} {result.get('description')}"
            + (f": {message}" if message else "")
        )
        self.result = result


class PagedStream:
    """Paged searches on one bound connection, decoded page by page.

    The request for the next page goes out as soon as the current page's searchResDone
    (which holds the cookie) is in, before the page is decoded and handed over: the server
    prepares the next page while this one is decoded and the caller works on it. (Decoding
    first left the server idle for the decoding's time: 100,000 entries took the server's
    time plus ours, about 1.8 s more than either.)
    """

    def __init__(self, connection: Connection, timeout: float, convert: Converters) -> None:
        self._connection = connection
        self._socket: socket.socket = connection.socket
        self._timeout = timeout
        self._convert = dict(convert)  # the compiled walk takes a dict
        self._names: dict[bytes, str] = {}  # attribute type as sent -> lower-case name
        self._chunk = bytearray(_CHUNK)
        self.finished = True  # no answer of ours is left in the stream

    def search(
        self,
        base: str,
        search_filter: str,
        scope: str,
        attributes: Sequence[str],
        page_size: int,
    ) -> Iterator[list[Entry]]:
        """The pages of a paged search (lists of entries); referrals are skipped.

        Raises ldap3's LDAPInvalidFilterError for a bad filter (before anything is sent),
        StreamLost when the connection goes, SearchFailed when the server says no.
        """
        request = search_operation(
            base, search_filter, scope, DEREF_ALWAYS, list(attributes), 0, 0, False,
            True, True, None, None, check_names=False,
        )  # fmt: skip
        operation = bytes(encode(ProtocolOp().setComponentByName("searchRequest", request)))
        previous = self._socket.gettimeout()
        self._socket.settimeout(self._timeout)
        self.finished = False
        self._send(operation, page_size, b"")
        while True:
            buffer, spans, cookie = self._page()
            if cookie is None:
                self.finished = True
                self._socket.settimeout(previous)
                yield self._decode(buffer, spans)
                return
            self._send(operation, page_size, cookie)
            yield self._decode(buffer, spans)

    def _decode(self, buffer: bytes, spans: list[tuple[int, int]]) -> list[Entry]:
        names, convert = self._names, self._convert
        try:
            if decode_entries is not None:
                return decode_entries(buffer, spans, names, convert)
            return [_entry(buffer, start, end, names, convert) for start, end in spans]
        except (IndexError, ValueError, TypeError) as exc:  # a malformed message
            raise StreamLost(f"undecodable answer from the server ({exc})") from None

    def _send(self, operation: bytes, page_size: int, cookie: bytes) -> None:
        message_id = int(self._connection.server.next_message_id())
        try:
            self._socket.sendall(search_message(message_id, operation, page_size, cookie))
        except TimeoutError:
            raise StreamLost(f"the server took no request for {self._timeout:g} s") from None
        except OSError as exc:
            raise StreamLost(_socket_reason(exc)) from None

    def _page(self) -> tuple[bytes, list[tuple[int, int]], bytes | None]:
        """One page's bytes, where its entries are in them (the searchResEntry tag and the
        end of each), and the next page's cookie (None: the last page)."""
        spans: list[tuple[int, int]] = []
        buffer = bytearray()
        position = 0
        frame = frame_messages if frame_messages is not None else _frame
        while True:
            # Every complete message in the buffer, then more bytes from the socket.
            try:
                position, tag, end = frame(buffer, position, spans)
                if end:  # stopped at a whole message (end 0: more bytes are needed)
                    if tag == _DONE:
                        return bytes(buffer), spans, _cookie(bytes(buffer[position:end]))
                    if tag == _EXTENDED:
                        raise StreamLost("the server ended the session (notice of disconnection)")
                    raise StreamLost(f"unexpected answer from the server (tag {tag:#x})")
            except (IndexError, ValueError, TypeError) as exc:  # a malformed message
                raise StreamLost(f"undecodable answer from the server ({exc})") from None

            try:
                # Into one buffer kept for the stream: recv(n) would allocate n bytes per call
                # (one TLS record, a few hundred bytes, comes per call) and fragment the heap.
                received = self._socket.recv_into(self._chunk)
            except TimeoutError:
                raise StreamLost(f"no answer from the server within {self._timeout:g} s") from None
            except OSError as exc:
                raise StreamLost(_socket_reason(exc)) from None
            if not received:
                raise StreamLost(CLOSED)
            # The page's bytes stay until it is decoded (after the next request is out).
            buffer += memoryview(self._chunk)[:received]


def search_message(message_id: int, operation: bytes, page_size: int, cookie: bytes) -> bytes:
    """The LDAPMessage of an encoded searchRequest ``operation`` with the paged-results
    control (RFC 2696, not critical) asking for ``page_size`` entries after ``cookie``:
    the bytes ldap3 would send, put together here because its encoder took 0.3 ms a page
    (0.07 s of a 100,000-entry read), while only the message id and the cookie change."""
    value = ber(0x30, ber(0x02, _unsigned(page_size)) + ber(0x04, cookie))
    control = ber(0x30, ber(0x04, _PAGED.encode("ascii")) + ber(0x04, value))
    return ber(0x30, ber(0x02, _unsigned(message_id)) + operation + ber(0xA0, control))


def _unsigned(number: int) -> bytes:
    """A non-negative INTEGER's content octets (two's complement, fewest octets)."""
    return number.to_bytes((number.bit_length() + 8) // 8, "big")


def _frame(
    buffer: bytes | bytearray, position: int, spans: list[tuple[int, int]]
) -> tuple[int, int, int]:
    """Walk the complete messages in ``buffer`` from ``position`` on: add (its protocolOp's
    tag, its end) of each searchResEntry to ``spans``, skip each searchResRef (a referral
    is another domain: not followed), and stop at the first other message, returning where
    it starts, its protocolOp's tag and its end (never 0); (position, 0, 0) when the rest
    is not a whole message yet. Each message's length is read in place (see :func:`_entry`)."""
    size = len(buffer)
    while position + 2 <= size:
        length = buffer[position + 1]
        start = position + 2
        if length & 0x80:
            start += length & 0x7F
            if start > size:
                break
            length = int.from_bytes(buffer[position + 2 : start], "big")
        end = start + length
        if end > size:
            break
        # messageID: INTEGER, short length (ids stay below 2**31).
        operation = start + 2 + buffer[start + 1]
        tag = buffer[operation]
        if tag == _ENTRY:
            spans.append((operation, end))
        elif tag != _REFERENCE:
            return position, tag, end
        position = end
    return position, 0, 0


def _entry(
    buffer: bytes, position: int, end: int, names: dict[bytes, str], convert: Converters
) -> Entry:
    """Decode the searchResEntry at ``buffer[position]`` (its tag) up to ``end``.

    Every element's length is read in place: short form (< 128) in one byte, long form as
    a count of big-endian bytes. Only the first value of each attribute is taken: through
    its converter when it has one, else as UTF-8 text, else (binary) not at all.
    """
    # [APPLICATION 4] header
    length = buffer[position + 1]
    position += 2
    if length & 0x80:
        position += length & 0x7F
    # objectName: OCTET STRING
    length = buffer[position + 1]
    position += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(buffer[position : position + count], "big")
        position += count
    dn = buffer[position : position + length].decode("utf-8", "replace")
    position += length
    # attributes: SEQUENCE OF PartialAttribute (the message's controls may follow it)
    length = buffer[position + 1]
    position += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(buffer[position : position + count], "big")
        position += count
    end = position + length
    values: dict[str, str] = {}
    while position < end:
        # PartialAttribute: SEQUENCE { type, vals SET OF value }
        length = buffer[position + 1]
        position += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(buffer[position : position + count], "big")
            position += count
        following = position + length
        # type: OCTET STRING
        length = buffer[position + 1]
        position += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(buffer[position : position + count], "big")
            position += count
        kind = buffer[position : position + length]
        position += length
        # vals: SET OF OCTET STRING; empty sets are left out
        length = buffer[position + 1]
        position += 2
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(buffer[position : position + count], "big")
            position += count
        if length:
            length = buffer[position + 1]
            position += 2
            if length & 0x80:
                count = length & 0x7F
                length = int.from_bytes(buffer[position : position + count], "big")
                position += count
            name = names.get(kind)
            if name is None:
                name = names[kind] = kind.decode("utf-8", "replace").lower()
            raw = buffer[position : position + length]
            if name in convert:
                text = convert[name](raw)
                if text is not None:
                    values[name] = text
            else:  # suppress() would cost a context manager per value
                try:  # noqa: SIM105
                    values[name] = raw.decode("utf-8")
                except UnicodeDecodeError:
                    pass  # binary values (photos, SIDs) are not facts
        position = following
    return dn, values


def _cookie(raw: bytes) -> bytes | None:
    """The next page's cookie from a searchResDone (None: it was the last page)."""
    message = decode_message_fast(raw)
    result = ldap_result_to_dict_fast(message["payload"])
    if result["result"] != 0:
        raise SearchFailed(result)
    for control in message["controls"] or ():
        oid, decoded = BaseStrategy.decode_control_fast(control[3])
        if oid == _PAGED:
            cookie: bytes = decoded["value"]["cookie"]
            return cookie or None
    return None


def _socket_reason(exc: OSError) -> str:
    if isinstance(exc, ConnectionError | ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return CLOSED
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    return exc.strerror or str(exc) or type(exc).__name__
