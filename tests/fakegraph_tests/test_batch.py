"""JSON batching with the real msgraph-sdk's BatchRequestContent, and the batch rules of
Graph: 20 requests at most, relative URLs only, each sub-request judged on its own."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest
from kiota_abstractions.api_error import APIError
from msgraph.generated.models.user import User
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem

from tests.fakegraph import FakeEntra, Write

from .wiring import graph_client, raw_client, run


def relative(url: str) -> str:
    """A batch item's url as Graph wants it: the path after the version, plus the query.
    (BatchRequestItem keeps an absolute URL when its RequestInformation has a base URL,
    e.g. one built with with_url(); its set_url() does not strip /v1.0.)"""
    split = urllib.parse.urlsplit(url)
    path = split.path.removeprefix("/v1.0")
    return path + (f"?{split.query}" if split.query else "")


def patch_items(client: Any, changes: dict[str, str]) -> BatchRequestContent:
    content = BatchRequestContent()
    for number, (user_id, department) in enumerate(changes.items()):
        info = client.users.by_user_id(user_id).to_patch_request_information(
            User(department=department)
        )
        item = BatchRequestItem(info, id=str(number))
        item.url = relative(item.url)
        content.add_request(item.id, item)
    return content


def test_batch_of_patches_and_reads(fake_entra: FakeEntra) -> None:
    ann, bob = fake_entra.add_user(), fake_entra.add_user(onPremisesSyncEnabled=True)

    async def scenario() -> dict[str, int]:
        async with graph_client(fake_entra) as client:
            content = patch_items(client, {ann: "Sales", bob: "Sales"})
            read = BatchRequestItem(
                client.users.by_user_id(ann).to_get_request_information(), id="read"
            )
            content.add_request(read.id, read)
            missing = BatchRequestItem(
                client.users.by_user_id("no-such-user").to_get_request_information(), id="gone"
            )
            content.add_request(missing.id, missing)
            response = await client.batch.post(content)
            return response.get_response_status_codes()

    statuses = run(scenario())

    assert statuses == {"0": 204, "1": 400, "read": 200, "gone": 404}
    assert fake_entra.writes == [Write(ann, "department", None, "Sales")]
    assert [(r.method, r.batch_id, r.status) for r in fake_entra.requests[-5:]] == [
        ("PATCH", "0", 204),
        ("PATCH", "1", 400),
        ("GET", "read", 200),
        ("GET", "gone", 404),
        ("POST", None, 200),
    ]


def test_absolute_item_url_fails_the_batch(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()

    async def scenario() -> APIError:
        async with graph_client(fake_entra) as client:
            info = client.users.with_url(
                f"{fake_entra.graph_url}/users/{user}"
            ).to_get_request_information()
            item = BatchRequestItem(info, id="1")
            assert item.url.startswith("https://")  # kept absolute by the SDK
            with pytest.raises(APIError) as caught:
                await client.batch.post(BatchRequestContent({"1": item}))
            return caught.value

    error = run(scenario())
    assert error.response_status_code == 400


def test_set_url_leaves_the_version_in_the_path(fake_entra: FakeEntra) -> None:
    # BatchRequestItem.set_url() drops scheme and host but keeps "/v1.0", which Graph
    # then reads as a resource segment: rewrite item urls with relative() instead
    user = fake_entra.add_user()

    async def scenario() -> tuple[str, int | None]:
        async with graph_client(fake_entra) as client:
            info = client.users.with_url(
                f"{fake_entra.graph_url}/users/{user}"
            ).to_get_request_information()
            item = BatchRequestItem(info, id="1")
            item.set_url(item.url)
            response = await client.batch.post(BatchRequestContent({"1": item}))
            return item.url, response.get_response_status_codes()["1"]

    url, status = run(scenario())
    assert url == f"/v1.0/users/{user}"
    assert status == 400
    assert fake_entra.requests[-2].path == f"/v1.0/v1.0/users/{user}"


def test_at_most_twenty_requests(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()
    requests = [{"id": str(n), "method": "GET", "url": f"users/{user}"} for n in range(21)]
    with raw_client(fake_entra) as http:
        too_many = http.post("/$batch", json={"requests": requests})
        twenty = http.post("/$batch", json={"requests": requests[:20]})
        empty = http.post("/$batch", json={"requests": []})

    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "BadRequest"
    assert twenty.status_code == 200
    assert [r["status"] for r in twenty.json()["responses"]] == [200] * 20
    assert empty.json()["error"]["message"] == "Invalid batch payload format."
    assert fake_entra.count("GET") == 20


def test_depends_on_and_failed_dependency(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()
    with raw_client(fake_entra) as http:
        body = http.post(
            "/$batch",
            json={
                "requests": [
                    {
                        "id": "1",
                        "method": "PATCH",
                        "url": f"/users/{user}",
                        "headers": {"Content-Type": "application/json"},
                        "body": {"shoeSize": "42"},
                    },
                    {
                        "id": "2",
                        "method": "PATCH",
                        "url": f"/users/{user}",
                        "dependsOn": ["1"],
                        "headers": {"Content-Type": "application/json"},
                        "body": {"department": "x"},
                    },
                ]
            },
        ).json()

    assert [(r["id"], r["status"]) for r in body["responses"]] == [("1", 400), ("2", 424)]
    assert fake_entra.writes == []


def test_sub_requests_are_throttled_on_their_own(fake_entra: FakeEntra) -> None:
    users = [fake_entra.add_user() for _ in range(4)]
    fake_entra.faults.retry_after = 7
    fake_entra.faults.script(429, 503)  # the first two operations: sub-requests 0 and 1

    async def scenario() -> tuple[dict[str, int], dict[str, Any]]:
        async with graph_client(fake_entra) as client:
            response = await client.batch.post(patch_items(client, {u: "Sales" for u in users}))
            return response.get_response_status_codes(), response.responses["0"].headers

    statuses, throttled_headers = run(scenario())

    assert statuses == {"0": 429, "1": 503, "2": 204, "3": 204}
    assert throttled_headers["Retry-After"] == "7"
    # the SDK does not retry inside a batch; what was refused was not applied
    assert [w.user_id for w in fake_entra.writes] == users[2:]
    assert fake_entra.users[users[0]]["department"] is None


def test_throttled_sub_response_body(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user()
    fake_entra.faults.script(429)
    with raw_client(fake_entra) as http:
        body = http.post(
            "/$batch",
            json={
                "requests": [
                    {"id": "a", "method": "GET", "url": f"/users/{user}"},
                ]
            },
        ).json()

    (answer,) = body["responses"]
    assert answer["status"] == 429
    assert answer["headers"]["Retry-After"] == "1"
    assert answer["body"]["error"]["code"] == "TooManyRequests"
