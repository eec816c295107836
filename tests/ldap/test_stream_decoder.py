"""The two walks of a searchResEntry: the compiled one (``_ber.c``) and the Python one
(``ldap_stream._entry``) against a model of RFC 4511's entry, on generated entries (short
and long-form lengths, several values, empty sets, binary values, converters) and on
mangled ones, where the compiled walk either refuses with ValueError or gives what the
Python walk gives; and the same for the two framers that find the messages in a page's
bytes as they arrive (``frame_messages``, ``ldap_stream._frame``). Against a real slapd:
tests/ldap/test_read_stream.py, both walks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ldap3 import DEREF_ALWAYS
from ldap3.operation.search import search_operation
from ldap3.protocol.convert import build_controls_list
from ldap3.protocol.rfc2696 import paged_search_control
from ldap3.protocol.rfc4511 import LDAPMessage, MessageID, ProtocolOp
from ldap3.utils.asn1 import encode

from persona_sync.directory import ldap_stream
from persona_sync.directory.ldap_read import CONVERTERS
from persona_sync.directory.ldap_stream import (
    PagedStream,
    StreamLost,
    _entry,
    _frame,
    search_message,
)
from tests.ldap.conftest import NOT_BUILT

PROPERTIES = settings(derandomize=True, max_examples=400, deadline=None)

Converter = Callable[[bytes], str | None]


def compiled() -> Callable[..., list[tuple[str, dict[str, str]]]]:
    decode = ldap_stream.decode_entries
    assert decode is not None, NOT_BUILT
    return decode


def compiled_framer() -> Callable[..., tuple[int, int, int]]:
    frame = ldap_stream.frame_messages
    assert frame is not None, NOT_BUILT
    return frame


def length(size: int, long_form: int) -> bytes:
    """A BER length: short form, or long form in ``long_form`` bytes (0: the fewest)."""
    if size < 0x80 and not long_form:
        return bytes([size])
    count = max(long_form, (size.bit_length() + 7) // 8, 1)
    return bytes([0x80 | count]) + size.to_bytes(count, "big")


def tlv(tag: int, content: bytes, long_form: int = 0) -> bytes:
    return bytes([tag]) + length(len(content), long_form) + content


Attribute = tuple[bytes, list[bytes], int]  # type as sent, values, long-form width


def message(
    dn: bytes, attributes: list[Attribute], long_form: int = 0, controls: bytes = b""
) -> tuple[bytes, int]:
    """An LDAPMessage holding a searchResEntry (and ``controls`` after it, as syncrepl
    sends its state), and where its [APPLICATION 4] tag is."""
    partials = b"".join(
        tlv(
            0x30,
            tlv(0x04, kind, wide) + tlv(0x31, b"".join(tlv(0x04, v, wide) for v in values), wide),
            wide,
        )
        for kind, values, wide in attributes
    )
    operation = tlv(0x64, tlv(0x04, dn, long_form) + tlv(0x30, partials, long_form), long_form)
    message_id = tlv(0x02, b"\x07")
    header = bytes([0x30]) + length(len(message_id) + len(operation) + len(controls), long_form)
    return header + message_id + operation + controls, len(header) + len(message_id)


# [0] controls after the protocolOp: a syncStateValue-like control (RFC 4533).
CONTROLS = tlv(
    0xA0, tlv(0x30, tlv(0x04, b"1.3.6.1.4.1.4203.1.9.1.2") + tlv(0x04, b"\x30\x03\x0a\x01\x01"))
)


def model(
    dn: bytes, attributes: list[Attribute], convert: dict[str, Converter]
) -> tuple[str, dict[str, str]]:
    """What RFC 4511 says the entry holds, as the reader keeps it: the first value of
    each attribute as text (converted, or UTF-8), a later type replacing an earlier."""
    values: dict[str, str] = {}
    for kind, found, _ in attributes:
        if not found:
            continue
        name = kind.decode("utf-8", "replace").lower()
        if name in convert:
            text = convert[name](found[0])
            if text is not None:
                values[name] = text
            continue
        with contextlib.suppress(UnicodeDecodeError):
            values[name] = found[0].decode("utf-8")
    return dn.decode("utf-8", "replace"), values


def python_walk(
    buffer: bytes, spans: list[tuple[int, int]], convert: dict[str, Converter]
) -> list[tuple[str, dict[str, str]]]:
    names: dict[bytes, str] = {}
    return [_entry(buffer, start, end, names, convert) for start, end in spans]


def odd_guid(raw: bytes) -> str | None:
    """A converter that also refuses (None): values of an odd length."""
    return raw.hex() if len(raw) % 2 == 0 else None


CONVERT: dict[str, Converter] = {**CONVERTERS, "oddguid": odd_guid}

kinds = st.sampled_from(
    [b"title", b"Title", b"CN", b"manager", b"objectGUID", b"oddGuid", b"ou\xff", b"J\xc3\xb6b"]
)
values = st.one_of(
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
    st.binary(min_size=120, max_size=300),  # long-form lengths of their own
)
attribute_lists = st.lists(
    st.tuples(kinds, st.lists(values, max_size=3), st.sampled_from([0, 0, 1, 2, 4])),
    max_size=8,
)
dns = st.one_of(st.text(max_size=60).map(str.encode), st.binary(max_size=60))


@PROPERTIES
@given(dns, attribute_lists, st.sampled_from([0, 0, 1, 3]), st.sampled_from([b"", CONTROLS]))
def test_both_walks_decode_what_the_entry_holds(
    dn: bytes, attributes: list[Attribute], long_form: int, controls: bytes
) -> None:
    data, start = message(dn, attributes, long_form, controls)
    spans = [(start, len(data))]
    expected = [model(dn, attributes, CONVERT)]
    assert python_walk(data, spans, CONVERT) == expected
    assert compiled()(data, spans, {}, CONVERT) == expected


@PROPERTIES
@given(
    dns,
    attribute_lists,
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3),
    st.integers(0, 10_000),
)
def test_a_mangled_entry_is_refused_or_read_as_the_python_walk_reads_it(
    dn: bytes, attributes: list[Attribute], flips: list[tuple[int, int]], cut: int
) -> None:
    data, start = message(dn, attributes)
    mangled = bytearray(data)
    for at, byte in flips:
        mangled[at % len(mangled)] = byte
    end = max(start + 1, len(mangled) - cut % (len(mangled) - start))
    buffer, spans = bytes(mangled), [(start, end)]
    try:
        decoded = compiled()(buffer, spans, {}, CONVERT)
    except ValueError as refused:
        assert str(refused).startswith("malformed searchResEntry at byte ")
        return
    assert python_walk(buffer, spans, CONVERT) == decoded


def test_entries_of_a_page_in_order_and_type_names_learnt_once() -> None:
    first, at_first = message(b"uid=a,ou=p", [(b"Title", [b"Nurse"], 0)])
    second, at_second = message(b"uid=b,ou=p", [(b"TITLE", [b"Chef", b"Cook"], 1)])
    buffer = first + second
    spans = [(at_first, len(first)), (len(first) + at_second, len(buffer))]
    names: dict[bytes, str] = {b"TITLE": "title"}  # learnt on an earlier page
    assert compiled()(buffer, spans, names, {}) == [
        ("uid=a,ou=p", {"title": "Nurse"}),
        ("uid=b,ou=p", {"title": "Chef"}),
    ]
    assert names == {b"TITLE": "title", b"Title": "title"}


def test_a_length_past_its_element_names_where_the_element_starts() -> None:
    data, start = message(b"uid=a", [(b"cn", [b"Ann"], 0), (b"sn", [b"Lee"], 0)])
    second = data.index(b"\x30", data.index(b"Ann"))  # the second PartialAttribute
    longer = data[: second + 1] + bytes([data[second + 1] + 1]) + data[second + 2 :]
    with pytest.raises(ValueError) as refused:
        compiled()(longer, [(start, len(longer))], {}, {})
    assert str(refused.value) == f"malformed searchResEntry at byte {second}"
    with pytest.raises(ValueError) as header:
        compiled()(data[: start + 3], [(start, start + 3)], {}, {})
    assert str(header.value) == f"malformed searchResEntry at byte {start}"


def test_spans_are_checked_against_the_buffer() -> None:
    data, start = message(b"uid=a", [])
    with pytest.raises(ValueError) as outside:
        compiled()(data, [(start, len(data) + 1)], {}, {})
    assert str(outside.value) == f"span ({start}, {len(data) + 1}) outside the buffer"
    with pytest.raises(TypeError) as not_a_span:
        compiled()(data, [start], {}, {})
    assert str(not_a_span.value) == "a span is a (start, end) tuple"


def test_a_converter_error_is_raised_as_it_is() -> None:
    def broken(raw: bytes) -> str | None:
        raise ValueError(f"cannot convert {raw!r}")

    data, start = message(b"uid=a", [(b"objectGUID", [b"\x01"], 0)])
    for decode in (compiled(), lambda b, s, n, c: python_walk(b, s, c)):
        with pytest.raises(ValueError) as failed:
            decode(data, [(start, len(data))], {}, {"objectguid": broken})
        assert str(failed.value) == "cannot convert b'\\x01'"


def other_message(tag: int, content: bytes, message_id: int = 7) -> bytes:
    """An LDAPMessage of another kind: a searchResRef (0x73), searchResDone (0x65), ..."""
    body = tlv(0x02, bytes([message_id])) + tlv(tag, content)
    return tlv(0x30, body)


REFERENCE = other_message(0x73, tlv(0x04, b"ldap://other.example/dc=other"))
DONE = other_message(0x65, b"\x0a\x01\x00\x04\x00\x04\x00")
NOTICE = other_message(0x78, b"\x0a\x01\x34\x04\x00\x04\x00", message_id=0)


def framed(
    frame: Callable[..., tuple[int, int, int]], data: bytes, cuts: list[int]
) -> list[tuple[int, int, int, list[tuple[int, int]]]]:
    """What ``frame`` says after each arrival of bytes (``data`` cut at ``cuts``), as the
    stream calls it: the buffer grows, the position carries over, spans accumulate."""
    said = []
    buffer, position, spans = bytearray(), 0, []
    for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
        buffer += data[start:end]
        position, tag, stop = frame(buffer, position, spans)
        said.append((position, tag, stop, list(spans)))
        if tag:
            break
    return said


pages = st.lists(
    st.one_of(
        st.tuples(dns, attribute_lists).map(lambda e: message(*e)[0]),
        st.just(REFERENCE),
    ),
    max_size=6,
).flatmap(
    lambda parts: st.tuples(
        st.just(b"".join(parts) + DONE),
        st.lists(st.integers(0, len(b"".join(parts) + DONE)), max_size=5).map(sorted),
    )
)


@PROPERTIES
@given(pages)
def test_both_framers_find_the_same_messages_as_bytes_arrive(page: tuple[bytes, list[int]]) -> None:
    data, cuts = page
    python, ours = framed(_frame, data, cuts), framed(compiled_framer(), data, cuts)
    assert ours == python
    position, tag, end, spans = python[-1]
    assert (tag, end, data[position:end]) == (0x65, len(data), DONE)
    assert [data[s] for s, _ in spans] == [0x64] * len(spans)


@PROPERTIES
@given(pages, st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3))
def test_a_mangled_page_is_refused_or_framed_as_the_python_framer_frames_it(
    page: tuple[bytes, list[int]], flips: list[tuple[int, int]]
) -> None:
    data, cuts = page
    mangled = bytearray(data)
    for at, byte in flips:
        mangled[at % len(mangled)] = byte
    try:
        ours = framed(compiled_framer(), bytes(mangled), cuts)
    except ValueError as refused:
        assert str(refused).startswith("malformed message at byte ")
        return
    assert framed(_frame, bytes(mangled), cuts) == ours


def test_the_framer_stops_at_other_messages_and_refuses_broken_headers() -> None:
    entry, at = message(b"uid=a", [(b"cn", [b"Ann"], 0)])
    frame = compiled_framer()
    spans: list[tuple[int, int]] = []
    data = REFERENCE + entry + NOTICE
    start = len(REFERENCE) + len(entry)
    assert frame(data, 0, spans) == (start, 0x78, len(data))
    assert spans == [(len(REFERENCE) + at, start)]
    assert frame(data[:-1], start, []) == (start, 0, 0)  # not whole yet: more bytes
    with pytest.raises(ValueError) as indefinite:
        frame(entry + b"\x30\x80\x02\x01\x07", 0, [])
    assert str(indefinite.value) == f"malformed message at byte {len(entry)}"
    with pytest.raises(ValueError) as long_id:
        frame(b"\x30\x03\x02\x05\x07", 0, [])  # the message id runs past the message
    assert str(long_id.value) == "malformed message at byte 0"
    with pytest.raises(ValueError) as outside:
        frame(data, len(data) + 1, [])
    assert str(outside.value) == f"position {len(data) + 1} outside the buffer"


def test_the_stream_says_a_malformed_page_is_undecodable(walk: str) -> None:
    data, start = message(b"uid=a", [(b"cn", [b"Ann"], 0)])
    cut = data[: start + 2] + b"\x04\xff"  # the DN's length: long form, 127 bytes
    stream = PagedStream.__new__(PagedStream)
    stream._names, stream._convert = {}, {}
    with pytest.raises(StreamLost) as lost:
        stream._decode(cut, [(start, len(cut))])
    reason = {
        "compiled": f"malformed searchResEntry at byte {start}",
        "python": "index out of range",
    }[walk]
    assert lost.value.reason == f"undecodable answer from the server ({reason})"


class Arrivals:
    """A socket that hands over ``data`` a few bytes at a time, as a network does."""

    def __init__(self, data: bytes, step: int = 7) -> None:
        self.data, self.step = data, step

    def recv_into(self, chunk: bytearray) -> int:
        part, self.data = self.data[: self.step], self.data[self.step :]
        chunk[: len(part)] = part
        return len(part)


def stream_over(data: bytes) -> PagedStream:
    stream = PagedStream.__new__(PagedStream)
    stream._socket, stream._timeout = Arrivals(data), 5  # type: ignore[assignment]
    stream._chunk = bytearray(64)
    return stream


def test_a_page_ends_at_its_done_and_other_answers_end_the_stream(walk: str) -> None:
    entry, at = message(b"uid=a", [(b"cn", [b"Ann"], 0)])
    page, spans, cookie = stream_over(entry + REFERENCE + entry + DONE)._page()
    assert page == entry + REFERENCE + entry + DONE
    second = len(entry + REFERENCE)
    assert spans == [(at, len(entry)), (second + at, second + len(entry))]
    assert cookie is None  # no paged-results control: the last page
    endings = {
        NOTICE: "the server ended the session (notice of disconnection)",
        other_message(0x00, b""): "unexpected answer from the server (tag 0x0)",
        other_message(0x61, b"\x0a\x01\x00\x04\x00\x04\x00"): (
            "unexpected answer from the server (tag 0x61)"
        ),
        b"": "the connection was closed by the server or the network",
    }
    for ending, reason in endings.items():
        with pytest.raises(StreamLost) as lost:
            stream_over(entry + ending)._page()
        assert lost.value.reason == reason
    if walk == "compiled":
        with pytest.raises(StreamLost) as broken:
            stream_over(entry + b"\x30\x80\x02\x01\x07" + DONE)._page()
        assert broken.value.reason == (
            f"undecodable answer from the server (malformed message at byte {len(entry)})"
        )


@pytest.mark.parametrize(
    ("message_id", "page_size", "cookie"),
    [
        (1, 500, b""),
        (127, 1, b"\x01\x02\x03\x04\x05\x06\x07\x08"),
        (128, 127, b"c" * 127),
        (255, 128, b"c" * 128),
        (256, 1000, b"\xff" * 300),
        (70_000, 2**31 - 1, b"c" * 70_000),
        (2**31 - 1, 0, b"\x00"),
    ],
)
def test_a_page_request_is_what_ldap3_would_send(
    message_id: int, page_size: int, cookie: bytes
) -> None:
    request = search_operation(
        "ou=People,dc=example,dc=com", "(&(objectClass=inetOrgPerson)(title=*))", "SUBTREE",
        DEREF_ALWAYS, ["title", "manager", "entryUUID"], 0, 0, False, True, True, None, None,
        check_names=False,
    )  # fmt: skip
    message = LDAPMessage()
    message["messageID"] = MessageID(message_id)
    message["protocolOp"] = ProtocolOp().setComponentByName("searchRequest", request)
    message["controls"] = build_controls_list([paged_search_control(False, page_size, cookie)])
    operation = bytes(encode(ProtocolOp().setComponentByName("searchRequest", request)))
    assert search_message(message_id, operation, page_size, cookie) == bytes(encode(message))
