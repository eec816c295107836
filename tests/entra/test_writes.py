"""The Entra ID write path through its API: what each answer means for a retry, the time
budget, Retry-After, stopping at a refused write, cancel, read_back and manager look-ups."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from persona_sync.config import EntraDirectoryConfig
from persona_sync.directory import entra_write
from persona_sync.directory.base import GONE, Cancel, Change, DirectoryAborted
from persona_sync.directory.entra import Credential, EntraDirectory
from persona_sync.errors import DirectoryError
from persona_sync.secrets import Secret
from tests.entra.conftest import ON_PREMISES
from tests.entra.conftest import entra_directory as directory
from tests.fakegraph import FakeEntra


def users(fake: FakeEntra, count: int) -> list[Change]:
    """`count` users and a change per user: empty -> "engineer"."""
    return [
        Change(f"u{n}@contoso.example", fake.add_user(userPrincipalName=f"u{n}@contoso.example"),
               ON_PREMISES, None, "engineer")
        for n in range(count)
    ]  # fmt: skip


def log_of(fake: FakeEntra, user: str) -> list[tuple[str, int | None]]:
    """(method, status) of the requests about one user, in order."""
    return [(r.method, r.status) for r in fake.requests if r.path == f"/v1.0/users/{user}"]


def statuses(results: list[Any]) -> list[str]:
    return [r.status for r in results]


def test_a_batch_whose_answer_was_lost_is_read_back_not_resent(fake_entra: FakeEntra) -> None:
    changes = users(fake_entra, 3)
    # Every PATCH $batch is applied, then answered 504: kiota's RetryHandler would resend it
    # three times; we read back instead and find our values.
    fake_entra.faults.every_request(1, "applied-504", methods={"PATCH"})
    with directory(fake_entra) as entra:
        results = entra.apply(changes)
    assert [(r.status, r.message) for r in results] == [
        ("applied", "answer lost; read back: written")
    ] * 3
    envelopes = [r.status for r in fake_entra.requests if r.path == "/v1.0/$batch"]
    assert envelopes == [200, 504, 200]  # read, PATCH (answer lost), read-back: no resend
    assert [r.status for r in fake_entra.requests if r.method == "PATCH"] == [None] * 3
    assert len(fake_entra.writes) == 3


def test_a_5xx_sub_response_is_read_back_before_the_patch_is_sent_again(
    fake_entra: FakeEntra,
) -> None:
    [change] = users(fake_entra, 1)
    fake_entra.faults.retry_after = 0
    fake_entra.faults.every(1, 503, methods={"PATCH"})  # never applied, never confirmed
    with directory(fake_entra, max_retries=2) as entra:
        [result] = entra.apply([change])
    assert (result.status, result.message) == (
        "failed",
        "not written: Graph was still throttled or unavailable after 2 retries (max_retries); "
        "rerun apply later",
    )
    # Each 503 may have been applied: read back before each resend, and once more at the
    # end, which found the old value, so the change is "failed", not "unknown".
    assert log_of(fake_entra, change.dn) == [("GET", 200), ("PATCH", 503)] * 3 + [("GET", 200)]


def test_a_429_keeps_the_fresh_read_and_waits_for_retry_after(
    fake_entra: FakeEntra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entra_write, "FRESH_SECONDS", 60.0)  # however slow this machine is
    [change] = users(fake_entra, 1)
    fake_entra.faults.methods = frozenset({"PATCH"})
    fake_entra.faults.script(429)  # Retry-After: 1
    with directory(fake_entra) as entra:
        started = time.monotonic()
        [result] = entra.apply([change])
        elapsed = time.monotonic() - started
    assert result.status == "applied"
    assert log_of(fake_entra, change.dn) == [("GET", 200), ("PATCH", 429), ("PATCH", 204)]
    assert elapsed >= 1.0  # never sooner than Graph asked


def test_a_storm_longer_than_the_budget_fails_the_change_it_never_wrote(
    fake_entra: FakeEntra,
) -> None:
    [change] = users(fake_entra, 1)
    fake_entra.faults.every(1, 429, methods={"PATCH"})
    with directory(fake_entra, retry_budget_seconds=1.5) as entra:
        [result] = entra.apply([change])
    assert (result.status, result.message) == (
        "failed",
        "not written: Graph was still throttled or unavailable for 1.5 s "
        "(retry_budget_seconds); rerun apply later",
    )
    assert fake_entra.writes == []


def test_max_retries_still_caps_the_rounds(
    fake_entra: FakeEntra, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(entra_write, "FRESH_SECONDS", 60.0)
    [change] = users(fake_entra, 1)
    fake_entra.faults.retry_after = 0
    fake_entra.faults.every(1, 429, methods={"PATCH"})
    with directory(fake_entra, max_retries=2) as entra:
        [result] = entra.apply([change])
    assert (result.status, result.message) == (
        "failed",
        "not written: Graph was still throttled or unavailable after 2 retries (max_retries); "
        "rerun apply later",
    )
    # 429: nothing applied, so the first read stands for every resend
    assert log_of(fake_entra, change.dn) == [("GET", 200)] + [("PATCH", 429)] * 3


def test_an_answer_lost_for_good_is_unknown(fake_entra: FakeEntra) -> None:
    [change] = users(fake_entra, 1)
    faults = fake_entra.faults
    faults.every(1, "applied-drop", methods={"PATCH"})  # written, the answer lost
    # ... and from then on Graph is unreachable, so it cannot be read back
    faults.after(1, lambda: faults.every_request(1, "drop"), methods={"PATCH"})
    with directory(fake_entra, retry_budget_seconds=1) as entra:
        [result] = entra.apply([change])
    assert (result.status, result.message) == (
        "unknown",
        "sent, but Graph's answer was lost and reading it back still failed for 1 s "
        "(retry_budget_seconds); the next run reads it back",
    )
    assert len(fake_entra.writes) == 1  # it did land: the next run's read-back will say so


def test_the_value_already_there_is_unchanged(fake_entra: FakeEntra) -> None:
    [change] = users(fake_entra, 1)
    fake_entra.set_property(change.dn, ON_PREMISES, "ENGINEER")  # same value, other case
    with directory(fake_entra) as entra:
        [result] = entra.apply([change])
    assert (result.status, result.message, result.found) == (
        "unchanged",
        "already had the value",
        "ENGINEER",
    )
    assert fake_entra.writes == []


def test_a_refused_write_stops_at_the_first_batch(fake_entra: FakeEntra, tmp_path: Path) -> None:
    changes = users(fake_entra, 100)
    reader = fake_entra.new_app(tmp_path / "reader", roles=("User.Read.All",))
    fake_entra.app = reader
    with directory(fake_entra, concurrency=1) as entra, pytest.raises(DirectoryAborted) as stopped:
        entra.apply(changes)
    assert str(stopped.value) == (
        "Graph refused to write (403 Authorization_RequestDenied: Insufficient privileges to "
        "complete the operation.); the app needs the application permission "
        "User.ReadWrite.All with admin consent"
    )
    assert stopped.value.results == []  # nothing decided: the runner records them not sent
    assert fake_entra.count("PATCH") == 20  # one batch, then no more


def test_cancel_stops_sending_and_awaits_the_batch_in_flight(fake_entra: FakeEntra) -> None:
    changes = users(fake_entra, 60)
    cancel = Cancel()
    # Requested while the first PATCH batch is being processed: its answer still counts.
    fake_entra.faults.after(1, lambda: cancel.request("SIGTERM"), methods={"PATCH"})
    with directory(fake_entra, concurrency=1) as entra:
        results = entra.apply(changes, cancel)
    assert statuses(results) == ["applied"] * 20 + ["skipped"] * 40
    assert {r.message for r in results[20:]} == {"not sent: run interrupted"}
    assert fake_entra.count("PATCH") == 20 and len(fake_entra.writes) == 20


def test_cancel_cuts_a_retry_after_wait_short(fake_entra: FakeEntra) -> None:
    changes = users(fake_entra, 40)
    cancel = Cancel()
    fake_entra.faults.retry_after = 60
    fake_entra.faults.every(1, 429, methods={"PATCH"})
    fake_entra.faults.after(21, lambda: cancel.request("SIGINT"), methods={"PATCH"})
    with directory(fake_entra, concurrency=2) as entra:
        started = time.monotonic()
        results = entra.apply(changes, cancel)
        elapsed = time.monotonic() - started
    assert statuses(results) == ["skipped"] * 40  # throttled, so never applied
    assert elapsed < 30  # not the 60 s Graph asked for
    assert fake_entra.writes == []


def test_read_back(fake_entra: FakeEntra) -> None:
    changes = users(fake_entra, 3)
    fake_entra.set_property(changes[0].dn, ON_PREMISES, "vip")
    fake_entra.remove_user(changes[2].dn)
    fake_entra.faults.retry_after = 0
    fake_entra.faults.every(2, 503, methods={"GET"})  # retried within the budget
    with directory(fake_entra) as entra:
        assert entra.read_back(changes) == ["vip", None, GONE]


def test_lookup_managers_names_users_by_upn(fake_entra: FakeEntra) -> None:
    ceo = fake_entra.add_user(userPrincipalName="ceo@contoso.example", accountEnabled=False)
    vp = fake_entra.add_user(userPrincipalName="vp@contoso.example", manager=ceo)
    fake_entra.faults.every(2, 429, methods={"GET"})
    fake_entra.faults.retry_after = 0
    with directory(fake_entra) as entra:
        found = entra.lookup_managers([vp, ceo, "00000000-0000-0000-0000-00000000dead"])
    assert [(e.id, e.dn, e.get("manager")) for e in found] == [
        ("vp@contoso.example", vp, ceo),
        ("ceo@contoso.example", ceo, None),
    ]


def test_a_token_endpoint_that_never_answers_times_out(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never says a word
    port = listener.getsockname()[1]
    spec = EntraDirectoryConfig(
        type="entra",
        tenant_id="7d0c6f3e-5a4b-4c2d-9e8f-1a2b3c4d5e6f",
        client_id="3f2504e0-4f89-41d3-9a0c-0305e82c3301",
        authority_host=f"https://127.0.0.1:{port}",
        timeout=0.3,
    )
    entra = EntraDirectory(spec, Credential(secret=Secret("not-used", "test")))
    try:
        started = time.monotonic()
        with pytest.raises(DirectoryError) as refused:
            entra.token()
        assert time.monotonic() - started < 10  # bounded by directory.timeout, not hung
    finally:
        entra.close()
        listener.close()
    assert str(refused.value) == (
        f"127.0.0.1:{port} (directory.authority_host) did not answer within 0.3 s "
        "(directory.timeout)"
    )
