"""Pipelined modify requests on one bound LDAP connection, sent and received in ONE thread.

Why not ldap3's ASYNC strategy: it reads the socket in a thread of its own while the caller
writes to it, and an ``ssl.SSLSocket`` (one OpenSSL object) must not be used by two threads
at once. Over TLS that corrupted the stream now and then: measured on slapd, about 1 apply
in 50 of 300 modifies lost its connection for no reason, and some lost answers waited out
the whole receive timeout. Here the thread that sends also receives: it queues requests
while fewer than the window are in flight, sends them in one write, then reads the answers
that have come, so the stream is never shared.

One connection is enough: slapd writes one transaction at a time (back-mdb), and with 1, 2
or 4 writing connections it used at most one core and wrote 10,000 modifies no faster;
windows of 20, 100 and 400 wrote at the same rate (the default is 100).

The connection is opened and bound by ldap3 (SYNC strategy); after that this class owns its
socket until the connection is closed. Modify requests and their answers are encoded and
decoded here, in a few lines of BER (RFC 4511 4.6, 4.1.9): ldap3's pyasn1 encoder took most
of an apply's CPU time (10,000 requests: 3.2 s of CPU, on a loaded 2-core machine), these
lines 0.09 s; ``tests/ldap/test_write_pipeline.py`` checks them byte for byte against
ldap3. Every socket call is bounded by the socket timeout.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Sequence
from typing import Any

from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, Connection
from ldap3.core.results import RESULT_CODES

# BER tags (RFC 4511): universal types, and the protocolOp choices we send and expect.
_SEQUENCE, _SET, _INTEGER, _OCTETS, _ENUMERATED = 0x30, 0x31, 0x02, 0x04, 0x0A
_MODIFY_REQUEST = 0x66  # [APPLICATION 6], constructed
_MODIFY_RESPONSE = 0x67  # [APPLICATION 7]
_EXTENDED_RESPONSE = 0x78  # [APPLICATION 24]; with message id 0 a notice of disconnection
_REFERRAL = 0xA3  # [3] inside an LDAPResult
_OPERATIONS = {MODIFY_ADD: 0, MODIFY_DELETE: 1, MODIFY_REPLACE: 2}
_MAX_MESSAGE_ID = 2**31 - 1
_RECEIVE = 65536

Modification = dict[str, list[tuple[str, list[str]]]]
Answer = dict[str, Any]  # result, description, dn, message, referrals (as ldap3 gives)
CLOSED = "the connection was closed by the server or the network"


class PipelineLost(Exception):
    """The connection is gone or silent; requests in flight got no answer."""


class ModifyPipeline:
    """Queue modifies, send them, and read their answers (in any order) on a bound connection.

    ``send`` only queues a request; ``answers`` first writes every queued request in one
    call, then waits for answers. So a window refilled after a few answers costs one
    system call, not one per request.
    """

    def __init__(self, connection: Connection, timeout: float) -> None:
        self._socket: socket.socket = connection.socket
        self._socket.settimeout(timeout)
        # Requests are small and answered at once: never hold one back waiting for an ACK.
        with contextlib.suppress(OSError):  # not TCP (a test double): nothing to tune
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._timeout = timeout
        self._queued: list[bytes] = []
        self._buffer = bytearray()
        # Message ids go on from the ones ldap3 used to bind this connection.
        self._message_id = int(connection.server.next_message_id())

    def send(self, dn: str, modification: Modification) -> int:
        """Queue one modify request; returns its message id. Sent by the next
        :meth:`flush` or :meth:`answers`.

        The DN is sent as the server spelled it (it came from a search), not re-parsed.
        """
        message_id = self._message_id = self._message_id % _MAX_MESSAGE_ID + 1
        self._queued.append(modify_request(message_id, dn, modification))
        return message_id

    def flush(self) -> None:
        """Write every queued request."""
        if not self._queued:
            return
        data = b"".join(self._queued)
        self._queued.clear()
        try:
            self._socket.sendall(data)
        except TimeoutError:
            raise PipelineLost(f"the server took no request for {self._timeout:g} s") from None
        except OSError as exc:
            raise PipelineLost(_socket_reason(exc)) from None

    def answers(self) -> list[tuple[int, Answer]]:
        """Every answer that has arrived, waiting for at least one: (message id, result with
        result/description/dn/message/referrals, as ldap3 gives it)."""
        self.flush()
        while True:
            found = self._complete_answers()
            if found:
                return found
            self._read()

    # --- reading ----------------------------------------------------------------------

    def _read(self) -> None:
        try:
            data = self._socket.recv(_RECEIVE)
        except TimeoutError:
            raise PipelineLost(f"no answer within {self._timeout:g} s") from None
        except OSError as exc:
            raise PipelineLost(_socket_reason(exc)) from None
        if not data:
            raise PipelineLost(CLOSED)
        self._buffer += data

    def _complete_answers(self) -> list[tuple[int, Answer]]:
        """The complete answers in the buffer, taken out of it. A broken message (or a
        notice of disconnection) raises PipelineLost, but only once the answers before it
        are returned: those are decided, not lost."""
        found: list[tuple[int, Answer]] = []
        buffer, offset = self._buffer, 0
        try:
            while True:
                try:
                    header = _header(buffer, offset)
                except ValueError as exc:
                    raise PipelineLost(f"undecodable answer from the server ({exc})") from None
                if header is None or header[2] > len(buffer):
                    break
                found.append(_decode_answer(buffer, offset, header[2]))
                offset = header[2]
        except PipelineLost:
            if not found:
                raise
        del buffer[:offset]
        return found


# --- BER ------------------------------------------------------------------------------------


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    body = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, value: bytes) -> bytes:
    size = len(value)
    if size < 0x80:
        return bytes((tag, size)) + value
    return bytes((tag,)) + _length(size) + value


def _values(values: Sequence[str | bytes]) -> bytes:
    return b"".join(_tlv(_OCTETS, v.encode("utf-8") if isinstance(v, str) else v) for v in values)


def modify_request(message_id: int, dn: str, modification: Modification) -> bytes:
    """An LDAPMessage holding a ModifyRequest (RFC 4511 4.6), BER-encoded.

    ``modification`` is ldap3's shape: {attribute: [(MODIFY_ADD|MODIFY_DELETE|
    MODIFY_REPLACE, [values])]}; values are sent as UTF-8.
    """
    changes = b"".join(
        _tlv(
            _SEQUENCE,
            bytes((_ENUMERATED, 1, _OPERATIONS[operation]))
            + _tlv(
                _SEQUENCE, _tlv(_OCTETS, attribute.encode("utf-8")) + _tlv(_SET, _values(values))
            ),
        )
        for attribute, operations in modification.items()
        for operation, values in operations
    )
    request = _tlv(_OCTETS, dn.encode("utf-8")) + _tlv(_SEQUENCE, changes)
    identifier = message_id.to_bytes((message_id.bit_length() + 8) // 8, "big")
    return _tlv(_SEQUENCE, _tlv(_INTEGER, identifier) + _tlv(_MODIFY_REQUEST, request))


def _header(data: bytearray | bytes, offset: int) -> tuple[int, int, int] | None:
    """(tag, start of the value, end of the value) of the element at ``offset``; None when
    the buffer ends inside the header. ValueError for what LDAP forbids (indefinite or
    absurd lengths)."""
    if len(data) - offset < 2:
        return None
    tag, first = data[offset], data[offset + 1]
    if first < 0x80:
        return tag, offset + 2, offset + 2 + first
    count = first & 0x7F
    if count == 0 or count > 4:
        raise ValueError(f"length of {count} bytes")
    start = offset + 2 + count
    if len(data) < start:
        return None
    return tag, start, start + int.from_bytes(data[offset + 2 : start], "big")


def _element(data: bytearray, offset: int, end: int, tag: int | None = None) -> tuple[int, int]:
    """(start, end) of the value of the element at ``offset``, which must lie within ``end``
    (and carry ``tag`` when given)."""
    header = _header(data, offset)
    if header is None or header[2] > end:
        raise ValueError("truncated element")
    if tag is not None and header[0] != tag:
        raise ValueError(f"tag 0x{header[0]:02x} where 0x{tag:02x} belongs")
    return header[1], header[2]


def _decode_answer(data: bytearray, offset: int, end: int) -> tuple[int, Answer]:
    """(message id, result) of the complete LDAPMessage at ``offset``; a modifyResponse,
    else PipelineLost (a notice of disconnection, or an answer we never asked for)."""
    try:
        start, stop = _element(data, offset, end, _SEQUENCE)
        id_start, id_end = _element(data, start, stop, _INTEGER)
        message_id = int.from_bytes(data[id_start:id_end], "big", signed=True)
        header = _header(data, id_end)
        if header is None or header[2] > stop:
            raise ValueError("truncated element")
        operation, op_start, op_end = header
        if operation == _MODIFY_RESPONSE:
            return message_id, _result(data, op_start, op_end)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PipelineLost(f"undecodable answer from the server ({exc})") from None
    if operation == _EXTENDED_RESPONSE and message_id == 0:
        # Unsolicited notification: the server is ending the session (RFC 4511 4.4.1).
        raise PipelineLost("the server ended the session (notice of disconnection)")
    raise PipelineLost(f"unexpected answer from the server (protocol operation {operation & 0x1F})")


def _result(data: bytearray, offset: int, end: int) -> Answer:
    """An LDAPResult (RFC 4511 4.1.9) as ldap3's dictionary."""
    code_start, code_end = _element(data, offset, end, _ENUMERATED)
    code = int.from_bytes(data[code_start:code_end], "big", signed=True)
    dn_start, dn_end = _element(data, code_end, end, _OCTETS)
    text_start, text_end = _element(data, dn_end, end, _OCTETS)
    referrals: list[str] | None = None
    if text_end < end and data[text_end] == _REFERRAL:
        ref_start, ref_end = _element(data, text_end, end, _REFERRAL)
        referrals, position = [], ref_start
        while position < ref_end:
            uri_start, position = _element(data, position, ref_end, _OCTETS)
            uri = data[uri_start:position].decode("utf-8")
            if uri:
                referrals.append(uri)
        referrals = referrals or None
    return {
        "result": code,
        "description": RESULT_CODES.get(code, "unknown"),
        "dn": data[dn_start:dn_end].decode("utf-8", "replace"),
        "message": data[text_start:text_end].decode("utf-8", "replace"),
        "referrals": referrals,
    }


def _socket_reason(exc: OSError) -> str:
    # A reset, a broken pipe or a TLS stream ended without close_notify: which one a client
    # sees depends on timing, and all mean the same to an admin.
    if isinstance(exc, ConnectionError | ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return CLOSED
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    return exc.strerror or str(exc) or type(exc).__name__


__all__ = ["CLOSED", "Answer", "Modification", "ModifyPipeline", "PipelineLost", "modify_request"]
