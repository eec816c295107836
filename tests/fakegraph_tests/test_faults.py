"""Faults: throttling honoured by the SDK's RetryHandler, 503 and dropped connections
surfacing as errors, the write quota, latency, concurrency, and the guarantee that a
faulted request changed nothing."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from kiota_http.middleware.options import RetryHandlerOption
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.user import User
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem

from tests.fakegraph import FakeEntra, Write

from .wiring import graph_client, raw_client, run


def graph_log(fake: FakeEntra) -> list[tuple[str, int | None]]:
    return [(r.method, r.status) for r in fake.requests if r.path.startswith("/v1.0")]


def test_retry_handler_honours_retry_after(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()
    fake_entra.faults.script(429)  # retry_after is 1 s by default

    async def scenario() -> float:
        async with graph_client(fake_entra) as client:
            started = time.monotonic()
            await client.users.by_user_id(user).patch(User(department="Sales"))
            return time.monotonic() - started

    elapsed = run(scenario())

    assert 1.0 <= elapsed < 2.5
    assert graph_log(fake_entra) == [("PATCH", 429), ("PATCH", 204)]
    assert fake_entra.writes == [Write(user, "department", None, "Sales")]  # once


def test_unavailable_surfaces_once_retries_are_spent(fake_entra: FakeEntra) -> None:
    fake_entra.faults.unavailable_ratio = 1.0

    async def scenario() -> ODataError:
        async with graph_client(fake_entra, retry=RetryHandlerOption(max_retries=0)) as client:
            with pytest.raises(ODataError) as caught:
                await client.users.get()
            return caught.value

    error = run(scenario())
    assert error.response_status_code == 503
    assert error.error is not None and error.error.code == "serviceNotAvailable"
    assert error.response_headers is not None and error.response_headers["retry-after"] == "1"


def test_dropped_connection_surfaces_and_writes_nothing(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()
    fake_entra.faults.script("drop")

    async def scenario() -> BaseException:
        async with graph_client(fake_entra) as client:
            with pytest.raises(httpx.RemoteProtocolError) as caught:
                await client.users.by_user_id(user).patch(User(department="Sales"))
            await client.users.by_user_id(user).get()  # the client recovers
            return caught.value

    error = run(scenario())
    assert "without sending a response" in str(error)
    assert fake_entra.writes == []
    assert graph_log(fake_entra) == [("PATCH", None), ("GET", 200)]


def test_a_dropped_batch_applies_none_of_its_requests(fake_entra: FakeEntra) -> None:
    users = [fake_entra.add_user() for _ in range(3)]
    fake_entra.faults.script(429, "drop")  # sub-request 0 throttled, 1 drops the batch

    async def scenario() -> None:
        async with graph_client(fake_entra) as client:
            content = BatchRequestContent()
            for n, user in enumerate(users):
                info = client.users.by_user_id(user).to_patch_request_information(
                    User(department="Sales")
                )
                content.add_request(str(n), BatchRequestItem(info, id=str(n)))
            with pytest.raises(httpx.RemoteProtocolError):
                await client.batch.post(content)

    run(scenario())
    assert fake_entra.writes == []
    assert graph_log(fake_entra) == [("POST", None)]


def test_write_quota(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()
    fake_entra.faults.write_quota = (2, 1.0)
    with raw_client(fake_entra) as http:
        statuses = [http.patch(f"/users/{user}", json={"jobTitle": f"t{n}"}) for n in range(3)]
        reads = http.get(f"/users/{user}")
        time.sleep(float(statuses[2].headers["Retry-After"]))
        later = http.patch(f"/users/{user}", json={"jobTitle": "t3"})

    assert [r.status_code for r in statuses] == [204, 204, 429]
    assert statuses[2].json()["error"]["code"] == "TooManyRequests"
    assert reads.status_code == 200  # reads are not writes
    assert later.status_code == 204
    assert [w.new for w in fake_entra.writes] == ["t0", "t1", "t3"]


def test_sdk_rides_the_write_quota_without_writing_twice(fake_entra: FakeEntra) -> None:
    users = [fake_entra.add_user() for _ in range(3)]
    fake_entra.faults.write_quota = (2, 1.0)

    async def scenario() -> None:
        async with graph_client(fake_entra) as client:
            for user in users:
                await client.users.by_user_id(user).patch(User(department="Sales"))

    run(scenario())
    assert [w.user_id for w in fake_entra.writes] == users
    assert fake_entra.count("PATCH") == 4  # the third one was refused once, then applied


def test_client_timeout_during_latency_drops_the_request_unprocessed(
    fake_entra: FakeEntra,
) -> None:
    user = fake_entra.add_user()
    fake_entra.faults.latency = 0.4
    with raw_client(fake_entra) as http, pytest.raises(httpx.ReadTimeout):
        http.patch(f"/users/{user}", json={"department": "Sales"}, timeout=0.1)
    time.sleep(0.5)

    assert fake_entra.writes == []
    assert graph_log(fake_entra)[-1] == ("PATCH", None)


def test_seeded_ratios_are_reproducible(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()

    def statuses() -> list[int]:
        fake_entra.faults.seed = 7
        fake_entra.faults.throttle_ratio = 0.3
        fake_entra.faults.unavailable_ratio = 0.2
        with raw_client(fake_entra) as http:
            return [http.get(f"/users/{user}").status_code for _ in range(20)]

    first, second = statuses(), statuses()
    assert first == second
    assert {200, 429, 503} == set(first)


def test_methods_filter(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()
    fake_entra.faults.throttle_ratio = 1.0
    fake_entra.faults.methods = frozenset({"PATCH"})
    with raw_client(fake_entra) as http:
        read = http.get(f"/users/{user}")
        write = http.patch(f"/users/{user}", json={"department": "x"})

    assert (read.status_code, write.status_code) == (200, 429)


def test_concurrent_requests_and_keep_alive(fake_entra: FakeEntra) -> None:
    users = [fake_entra.add_user() for _ in range(16)]
    fake_entra.faults.latency = 0.2

    async def scenario() -> float:
        async with graph_client(fake_entra) as client:
            started = time.monotonic()
            await asyncio.gather(
                *(client.users.by_user_id(u).patch(User(department="Sales")) for u in users)
            )
            return time.monotonic() - started

    elapsed = run(scenario())
    assert elapsed < 2.4  # one at a time it takes at least 16 x 0.2 = 3.2 s
    assert len(fake_entra.writes) == 16

    fake_entra.faults.latency = 0
    before = fake_entra.connections
    with raw_client(fake_entra) as http:  # one token request, then reused connections
        for _ in range(10):
            assert http.get(f"/users/{users[0]}").status_code == 200
    assert fake_entra.connections - before <= 3  # msal discovery, token, and Graph
