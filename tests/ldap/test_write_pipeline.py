"""The pipelined writer's own BER: requests byte for byte as ldap3 encodes them, answers as
ldap3 decodes them, whatever the socket hands over at once.

ldap3's pyasn1 encoder stays the yardstick: every request is compared with what it makes,
and every answer is encoded by it. The socket is one end of a socketpair; the test writes
the server's bytes before the pipeline reads, so nothing races.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from ldap3 import MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE
from ldap3.operation.modify import modify_operation
from ldap3.protocol.rfc4511 import (
    LDAPDN,
    URI,
    ExtendedResponse,
    LDAPMessage,
    LDAPString,
    MessageID,
    ModifyResponse,
    ProtocolOp,
    Referral,
    ResponseName,
    ResultCode,
)
from ldap3.utils.asn1 import decode_message_fast, encode, ldap_result_to_dict_fast

from persona_sync.directory.ldap_pipeline import (
    CLOSED,
    Modification,
    ModifyPipeline,
    PipelineLost,
    modify_request,
)

NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"
UNDECODABLE = "undecodable answer from the server"
UNEXPECTED = "unexpected answer from the server"


def ldap3_request(message_id: int, dn: str, modification: Modification) -> bytes:
    request = modify_operation(dn, modification, True, None, None, check_names=False)
    message = LDAPMessage()
    message["messageID"] = MessageID(message_id)
    message["protocolOp"] = ProtocolOp().setComponentByName("modifyRequest", request)
    return bytes(encode(message))


@pytest.mark.parametrize(
    ("message_id", "dn", "modification"),
    [
        (1, "uid=p001,ou=People,dc=example,dc=com",
         {"personaName": [(MODIFY_DELETE, ["engineer"]), (MODIFY_ADD, ["vip"])]}),
        (127, "cn=Smith\\2C Jr.,ou=People,dc=example,dc=com",
         {"personaName": [(MODIFY_ADD, ["clinician"])],
          "objectClass": [(MODIFY_ADD, ["personaHolder"])]}),
        (128, "cn=Jörg Müller,ou=Zürich,dc=example,dc=com",
         {"personaName": [(MODIFY_ADD, ["ä" * 300])]}),
        (255, "cn=x", {"a": [(MODIFY_REPLACE, ["v" * 127, "w" * 128])]}),
        (256, "cn=" + "y" * 65_600, {"a": [(MODIFY_DELETE, ["1"])]}),
        (32_768, "", {"a": [(MODIFY_DELETE, [])]}),
        (2**31 - 1, "cn=z", {"a": [(MODIFY_ADD, [""])]}),
    ],
)  # fmt: skip
def test_requests_are_what_ldap3_would_send(
    message_id: int, dn: str, modification: Modification
) -> None:
    assert modify_request(message_id, dn, modification) == ldap3_request(
        message_id, dn, modification
    )


def modify_response(
    message_id: int, code: int, message: str = "", matched: str = "", referrals: Sequence[str] = ()
) -> bytes:
    response = ModifyResponse()
    response["resultCode"] = ResultCode(code)
    response["matchedDN"] = LDAPDN(matched)
    response["diagnosticMessage"] = LDAPString(message)
    if referrals:
        referral = Referral()
        for index, uri in enumerate(referrals):
            referral.setComponentByPosition(index, URI(uri))
        response["referral"] = referral
    envelope = LDAPMessage()
    envelope["messageID"] = MessageID(message_id)
    envelope["protocolOp"] = ProtocolOp().setComponentByName("modifyResponse", response)
    return bytes(encode(envelope))


def notice_of_disconnection() -> bytes:
    response = ExtendedResponse()
    response["resultCode"] = ResultCode(52)
    response["matchedDN"] = LDAPDN("")
    response["diagnosticMessage"] = LDAPString("shutting down")
    response["responseName"] = ResponseName(NOTICE_OF_DISCONNECTION)
    envelope = LDAPMessage()
    envelope["messageID"] = MessageID(0)
    envelope["protocolOp"] = ProtocolOp().setComponentByName("extendedResp", response)
    return bytes(encode(envelope))


def ldap3_answer(raw: bytes) -> dict[str, Any]:
    message = decode_message_fast(raw)
    return dict(ldap_result_to_dict_fast(message["payload"]))


class _Server:
    """What the pipeline needs of ldap3's Server: the message id counter."""

    def __init__(self, first: int) -> None:
        self.counter = first

    def next_message_id(self) -> int:
        self.counter += 1
        return self.counter


class _Connection:
    """A bound connection as the pipeline sees one: its socket and its server."""

    def __init__(self, sock: socket.socket | _Trickle, first: int) -> None:
        self.socket = sock
        self.server = _Server(first)


@pytest.fixture
def wire() -> Iterator[tuple[ModifyPipeline, socket.socket]]:
    """A pipeline on one end of a socketpair; the test plays the server on the other."""
    ours, theirs = socket.socketpair()
    try:
        yield ModifyPipeline(_Connection(ours, 41), timeout=5), theirs
    finally:
        ours.close()
        theirs.close()


def received(server: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += server.recv(size - len(data))
    return data


def test_queued_requests_go_out_in_one_write_before_waiting_for_answers(
    wire: tuple[ModifyPipeline, socket.socket],
) -> None:
    pipeline, server = wire
    change: Modification = {"personaName": [(MODIFY_DELETE, ["a"]), (MODIFY_ADD, ["b"])]}
    ids = [pipeline.send(f"uid=p{i},dc=example,dc=com", change) for i in range(3)]
    assert ids == [43, 44, 45]  # after the id the bind used
    server.setblocking(False)
    with pytest.raises(BlockingIOError):  # queued, not sent yet
        server.recv(1)
    server.setblocking(True)
    server.sendall(modify_response(44, 0) + modify_response(43, 16, "modify/delete: a"))
    answers = pipeline.answers()  # sends the three, then reads what came
    expected = b"".join(
        ldap3_request(i, f"uid=p{n},dc=example,dc=com", change) for n, i in enumerate(ids)
    )
    assert received(server, len(expected)) == expected
    assert answers == [
        (44, ldap3_answer(modify_response(44, 0))),
        (43, ldap3_answer(modify_response(43, 16, "modify/delete: a"))),
    ]
    assert answers[1][1] == {
        "result": 16,
        "description": "noSuchAttribute",
        "dn": "",
        "message": "modify/delete: a",
        "referrals": None,
    }


class _Trickle:
    """A socket that hands over at most ``chunk`` bytes per recv, as a slow network does."""

    def __init__(self, data: bytes, chunk: int) -> None:
        self.data, self.chunk, self.reads = data, chunk, 0

    def settimeout(self, timeout: float) -> None:
        pass

    def setsockopt(self, *args: int) -> None:
        raise OSError("not TCP")

    def recv(self, size: int) -> bytes:
        self.reads += 1
        piece, self.data = self.data[: min(size, self.chunk)], self.data[min(size, self.chunk) :]
        return piece


@pytest.mark.parametrize("chunk", [1, 2, 7, 100_000])
def test_answers_are_decoded_as_ldap3_decodes_them_however_the_bytes_arrive(chunk: int) -> None:
    responses = {
        1: modify_response(1, 0),
        2: modify_response(2, 19, "personaName: value #0 invalid per syntax"),
        3: modify_response(3, 10, "", "", ["ldap://dc2.example.com/", "ldaps://dc3.example.com/"]),
        4: modify_response(4, 50, "x" * 70_000, "ou=People,dc=example,dc=com"),
        5: modify_response(5, 32, "Grüße", "dc=example,dc=com"),
        300: modify_response(300, 0),
    }
    trickle = _Trickle(b"".join(responses.values()), chunk)
    pipeline = ModifyPipeline(_Connection(trickle, 0), timeout=5)
    got: list[tuple[int, dict[str, Any]]] = []
    while len(got) < len(responses):
        got.extend(pipeline.answers())
    assert got == [(i, ldap3_answer(raw)) for i, raw in responses.items()]
    if chunk == 100_000:
        assert trickle.reads == 2  # 70 KB: two reads of 64 KB at most, all six decoded


def test_a_result_code_no_rfc_names_is_kept_with_its_number() -> None:
    pipeline = ModifyPipeline(
        _Connection(_Trickle(modify_response(7, 4242, "?"), 100), 0),
        timeout=5,
    )
    assert pipeline.answers() == [
        (7, {"result": 4242, "description": "unknown", "dn": "", "message": "?", "referrals": None})
    ]


def test_a_notice_of_disconnection_ends_the_pipeline_after_the_answers_before_it(
    wire: tuple[ModifyPipeline, socket.socket],
) -> None:
    pipeline, server = wire
    server.sendall(modify_response(1, 0) + modify_response(2, 0) + notice_of_disconnection())
    assert [i for i, _ in pipeline.answers()] == [1, 2]  # decided, not lost with the rest
    with pytest.raises(PipelineLost) as lost:
        pipeline.answers()
    assert str(lost.value) == "the server ended the session (notice of disconnection)"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x30\x80\x02\x01\x01", f"{UNDECODABLE} (length of 0 bytes)"),
        (b"\x30\x03\x04\x01\x01", f"{UNDECODABLE} (tag 0x04 where 0x02 belongs)"),
        (b"\x30\x05\x02\x01\x01\x67\x05", f"{UNDECODABLE} (truncated element)"),
        (b"\x30\x05\x02\x01\x01\x65\x00", f"{UNEXPECTED} (protocol operation 5)"),
    ],
)  # fmt: skip
def test_a_broken_answer_ends_the_pipeline_with_what_was_wrong(
    wire: tuple[ModifyPipeline, socket.socket], raw: bytes, reason: str
) -> None:
    pipeline, server = wire
    server.sendall(raw)
    with pytest.raises(PipelineLost) as lost:
        pipeline.answers()
    assert str(lost.value) == reason


def test_a_closed_connection_ends_the_pipeline(wire: tuple[ModifyPipeline, socket.socket]) -> None:
    pipeline, server = wire
    server.sendall(modify_response(1, 0)[:5])  # half an answer, then the end of the stream
    server.shutdown(socket.SHUT_WR)
    with pytest.raises(PipelineLost) as lost:
        pipeline.answers()
    assert str(lost.value) == CLOSED


def test_message_ids_wrap_after_the_largest_ldap_allows() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        pipeline = ModifyPipeline(_Connection(ours, 2**31 - 3), timeout=5)
        change: Modification = {"a": [(MODIFY_ADD, ["b"])]}
        assert [pipeline.send("cn=x", change) for _ in range(3)] == [2**31 - 1, 1, 2]
