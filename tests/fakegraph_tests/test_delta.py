"""Delta queries on users, paged by hand with the real msgraph-sdk (its PageIterator
drops the deltaLink)."""

from __future__ import annotations

from typing import Any

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.user import User
from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder

from tests.fakegraph import FakeEntra

from .wiring import graph_client, raw_client, run

SELECT = ["displayName", "department"]


def delta_config(select: list[str] | None = None) -> RequestConfiguration[Any]:
    query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=select)
    config: RequestConfiguration[Any] = RequestConfiguration(query_parameters=query)
    config.headers.add("Prefer", "odata.maxpagesize=2")
    return config


async def read_delta(client: Any, link: str | None) -> tuple[list[User], int, str]:
    """Every page of one delta round: (users, pages, deltaLink)."""
    config = delta_config(SELECT)
    page = await (
        client.users.delta.get(config)
        if link is None
        else client.users.delta.with_url(link).get(delta_config())
    )
    users: list[User] = []
    pages = 0
    while True:
        pages += 1
        users.extend(page.value or [])
        if page.odata_next_link:
            page = await client.users.delta.with_url(page.odata_next_link).get(delta_config())
            continue
        return users, pages, page.odata_delta_link


def test_full_round_then_changes_only(fake_entra: FakeEntra) -> None:
    ids = [fake_entra.add_user(displayName=f"User {n}", department="Sales") for n in range(5)]

    async def scenario() -> tuple[Any, Any, Any]:
        async with graph_client(fake_entra) as client:
            first = await read_delta(client, None)
            await client.users.by_user_id(ids[0]).patch(User(department="Support"))
            fake_entra.set_property(ids[1], "jobTitle", "Boss")  # not selected: not tracked
            fake_entra.set_property(ids[2], "department", "Finance")  # another admin
            fake_entra.users[ids[3]]["displayName"] = "Renamed directly"  # raw edit
            fake_entra.remove_user(ids[4])
            new = fake_entra.add_user(displayName="Newcomer")
            second = await read_delta(client, first[2])
            third = await read_delta(client, second[2])
            return first, (second, new), third

    (users, pages, link), ((changed, _, _), new), (nothing, _, _) = run(scenario())

    assert pages == 3
    assert sorted(u.id or "" for u in users) == sorted(ids)
    assert link.startswith(f"{fake_entra.graph_url}/users/delta()?$deltatoken=")
    by_id = {u.id: u for u in changed}
    assert set(by_id) == {ids[0], ids[2], ids[3], ids[4], new}
    assert by_id[ids[0]].department == "Support"
    assert by_id[ids[2]].department == "Finance"
    assert by_id[ids[3]].display_name == "Renamed directly"
    assert by_id[ids[4]].additional_data["@removed"] == {"reason": "deleted"}
    assert nothing == []


def test_change_and_change_back_is_still_reported(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user(department="Sales")
    with raw_client(fake_entra) as http:
        link = http.get("/users/delta()", params={"$select": "department"}).json()[
            "@odata.deltaLink"
        ]
        fake_entra.set_property(user, "department", "Support")
        fake_entra.set_property(user, "department", "Sales")
        changed = http.get(link).json()["value"]

    assert changed == [{"department": "Sales", "id": user}]


def test_manager_changes_with_select_manager(fake_entra: FakeEntra) -> None:
    boss = fake_entra.add_user()
    user = fake_entra.add_user(manager=boss)
    with raw_client(fake_entra) as http:
        first = http.get("/users/delta", params={"$select": "displayName,manager"}).json()
        fake_entra.set_property(user, "manager", None)
        second = http.get(first["@odata.deltaLink"]).json()

    entry = next(u for u in first["value"] if u["id"] == user)
    assert entry["manager@delta"] == [{"@odata.type": "#microsoft.graph.user", "id": boss}]
    assert second["value"][0]["manager@delta"] == [
        {"@odata.type": "#microsoft.graph.user", "id": boss, "@removed": {"reason": "deleted"}}
    ]


def test_expired_and_reset_delta_links(fake_entra: FakeEntra) -> None:
    fake_entra.add_user()

    async def scenario() -> tuple[ODataError, ODataError]:
        async with graph_client(fake_entra) as client:
            _, _, old = await read_delta(client, None)
            fake_entra.expire_delta_tokens()
            with pytest.raises(ODataError) as expired:
                await client.users.delta.with_url(old).get()
            _, _, fresh = await read_delta(client, None)
            fake_entra.reset_delta_sync()
            with pytest.raises(ODataError) as reset:
                await client.users.delta.with_url(fresh).get()
            return expired.value, reset.value

    expired, reset = run(scenario())

    assert expired.response_status_code == 400
    assert expired.error is not None and expired.error.code == "syncStateNotFound"
    assert expired.error.message == (
        "The sync state generation is not found. The delta token is expired and data must be "
        "synchronized again."
    )
    assert reset.response_status_code == 410
    assert reset.error is not None and reset.error.code == "resyncRequired"
    assert reset.response_headers is not None
    assert reset.response_headers["location"] == f"{fake_entra.graph_url}/users/delta()"


def test_delta_token_latest(fake_entra: FakeEntra) -> None:
    fake_entra.add_user()
    with raw_client(fake_entra) as http:
        latest = http.get("/users/delta", params={"$deltatoken": "latest"}).json()
        added = fake_entra.add_user()
        changed = http.get(latest["@odata.deltaLink"]).json()

    assert latest["value"] == []
    assert [u["id"] for u in changed["value"]] == [added]


def test_deleted_restored_and_deleted_for_good(fake_entra: FakeEntra) -> None:
    kept, restored, purged = (fake_entra.add_user(department="Sales") for _ in range(3))
    with raw_client(fake_entra) as http:
        first = http.get("/users/delta", params={"$select": "department"}).json()
        for user in (restored, purged):
            fake_entra.delete_user(user)  # DELETE /users/{id}: into deleted items
        second = http.get(first["@odata.deltaLink"]).json()
        fake_entra.restore_user(restored)
        fake_entra.remove_user(purged)  # deleted for good
        third = http.get(second["@odata.deltaLink"]).json()

    assert {u["id"] for u in first["value"]} == {kept, restored, purged}
    assert sorted(second["value"], key=lambda u: u["id"]) == sorted(
        [
            {"id": restored, "@removed": {"reason": "changed"}},
            {"id": purged, "@removed": {"reason": "changed"}},
        ],
        key=lambda u: u["id"],
    )
    assert third["value"] == [
        {"department": "Sales", "id": restored},
        {"id": purged, "@removed": {"reason": "deleted"}},
    ]


def test_changed_users_bring_every_selected_property_or_only_changes_when_minimal(
    fake_entra: FakeEntra,
) -> None:
    user = fake_entra.add_user(department="Sales", jobTitle="Clerk")
    selection = {"$select": "department,jobTitle,officeLocation"}
    with raw_client(fake_entra) as http:
        first = http.get("/users/delta", params=selection).json()
        full = http.get("/users/delta", params=selection).json()["@odata.deltaLink"]
        minimal = http.get("/users/delta", params=selection).json()["@odata.deltaLink"]
        fake_entra.set_property(user, "jobTitle", "Manager")
        fake_entra.set_property(user, "department", None)
        default = http.get(full).json()["value"]
        only = http.get(minimal, headers={"Prefer": "return=minimal"}).json()["value"]

    # A property never set (officeLocation) is left out; one cleared now comes as null.
    assert first["value"] == [{"department": "Sales", "jobTitle": "Clerk", "id": user}]
    assert default == [{"department": None, "jobTitle": "Manager", "id": user}]
    assert only == [{"department": None, "jobTitle": "Manager", "id": user}]


def test_minimal_leaves_out_what_did_not_change(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user(department="Sales", jobTitle="Clerk")
    with raw_client(fake_entra) as http:
        params = {"$select": "department,jobTitle"}
        full = http.get("/users/delta", params=params).json()["@odata.deltaLink"]
        minimal = http.get("/users/delta", params=params).json()["@odata.deltaLink"]
        fake_entra.set_property(user, "jobTitle", "Manager")
        default = http.get(full).json()["value"]
        only = http.get(minimal, headers={"Prefer": "return=minimal"}).json()["value"]

    assert default == [{"department": "Sales", "jobTitle": "Manager", "id": user}]
    assert only == [{"jobTitle": "Manager", "id": user}]


def test_manager_delta_only_when_the_manager_changed(fake_entra: FakeEntra) -> None:
    boss, other = fake_entra.add_user(), fake_entra.add_user()
    user = fake_entra.add_user(manager=boss, department="Sales")
    with raw_client(fake_entra) as http:
        link = http.get("/users/delta", params={"$select": "department,manager"}).json()[
            "@odata.deltaLink"
        ]
        fake_entra.set_property(user, "department", "Support")
        title_only = http.get(link).json()
        fake_entra.set_property(user, "manager", other)
        moved = http.get(title_only["@odata.deltaLink"]).json()

    assert title_only["value"] == [{"department": "Support", "id": user}]
    assert moved["value"] == [
        {
            "department": "Support",
            "id": user,
            "manager@delta": [{"@odata.type": "#microsoft.graph.user", "id": other}],
        }
    ]


def test_delta_rejects_filter_and_unknown_options(fake_entra: FakeEntra) -> None:
    with raw_client(fake_entra) as http:
        expand = http.get("/users/delta", params={"$expand": "manager"})
        top = http.get("/users/delta", params={"$top": "5"})

    assert (expand.status_code, expand.json()["error"]["code"]) == (
        400,
        "Request_UnsupportedQuery",
    )
    assert (top.status_code, top.json()["error"]["code"]) == (400, "Request_UnsupportedQuery")
