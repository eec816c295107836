"""The two walks of a searchResEntry: the compiled one (``_ber.c``) and the Python one
(``ldap_stream._entry``) against a model of RFC 4511's entry, on generated entries (short
and long-form lengths, several values, empty sets, binary values, converters) and on
mangled ones, where the compiled walk either refuses with ValueError or gives what the
Python walk gives. Against a real slapd: tests/ldap/test_read_stream.py, both walks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_sync.directory import ldap_stream
from persona_sync.directory.ldap_read import CONVERTERS
from persona_sync.directory.ldap_stream import PagedStream, StreamLost, _entry

NOT_BUILT = (
    "the compiled decoder (persona_sync/directory/_ber.c) is not built: install the "
    "project with a C compiler and Python's headers (pip install -e .)"
)
PROPERTIES = settings(derandomize=True, max_examples=400, deadline=None)

Converter = Callable[[bytes], str | None]


def compiled() -> Callable[..., list[tuple[str, dict[str, str]]]]:
    decode = ldap_stream.decode_entries
    assert decode is not None, NOT_BUILT
    return decode


def length(size: int, long_form: int) -> bytes:
    """A BER length: short form, or long form in ``long_form`` bytes (0: the fewest)."""
    if size < 0x80 and not long_form:
        return bytes([size])
    count = max(long_form, (size.bit_length() + 7) // 8, 1)
    return bytes([0x80 | count]) + size.to_bytes(count, "big")


def tlv(tag: int, content: bytes, long_form: int = 0) -> bytes:
    return bytes([tag]) + length(len(content), long_form) + content


Attribute = tuple[bytes, list[bytes], int]  # type as sent, values, long-form width


def message(dn: bytes, attributes: list[Attribute], long_form: int = 0) -> tuple[bytes, int]:
    """An LDAPMessage holding a searchResEntry, and where its [APPLICATION 4] tag is."""
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
    header = bytes([0x30]) + length(len(message_id) + len(operation), long_form)
    return header + message_id + operation, len(header) + len(message_id)


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
@given(dns, attribute_lists, st.sampled_from([0, 0, 1, 3]))
def test_both_walks_decode_what_the_entry_holds(
    dn: bytes, attributes: list[Attribute], long_form: int
) -> None:
    data, start = message(dn, attributes, long_form)
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


@pytest.mark.parametrize("walk", ["compiled", "python"])
def test_the_stream_says_a_malformed_page_is_undecodable(
    walk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if walk == "python":
        monkeypatch.setattr(ldap_stream, "decode_entries", None)
    else:
        compiled()
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
