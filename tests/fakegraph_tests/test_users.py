"""Reading users, managers and group members with the real msgraph-sdk."""

from __future__ import annotations

from pathlib import Path

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.user import User
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder

from tests.fakegraph import FakeEntra

from .wiring import graph_client, msal_app, raw_client, run

Query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters


def users_config(**query: object) -> RequestConfiguration[Query]:
    return RequestConfiguration(query_parameters=Query(**query))


@pytest.fixture
def staff(fake_entra: FakeEntra) -> dict[str, str]:
    boss = fake_entra.add_user(displayName="Alice Boss", department="Board", jobTitle="CEO")
    ids = {"boss": boss}
    for n in range(7):
        ids[f"sales{n}"] = fake_entra.add_user(
            displayName=f"Sam Sales {n}",
            department="Sales",
            manager=boss,
            accountEnabled=n != 3,
        )
    ids["guest"] = fake_entra.add_user(
        displayName="Sam Guest", userType="Guest", department="Sales"
    )
    return ids


def test_select_filter_top_and_paging(fake_entra: FakeEntra, staff: dict[str, str]) -> None:
    async def scenario() -> tuple[list[list[dict[str, object]]], list[str | None]]:
        async with graph_client(fake_entra) as client:
            config = users_config(
                select=["displayName", "department"],
                filter="accountEnabled eq true and userType eq 'Member' and "
                "startswith(displayName,'sam') and department eq 'sales'",
                top=2,
            )
            page = await client.users.get(request_configuration=config)
            pages, links = [], []
            while page is not None:
                pages.append(
                    [
                        {
                            "id": u.id,
                            "name": u.display_name,
                            "dept": u.department,
                            "title": u.job_title,
                        }
                        for u in page.value or []
                    ]
                )
                links.append(page.odata_next_link)
                if not page.odata_next_link:
                    break
                page = await client.users.with_url(page.odata_next_link).get()
            return pages, links

    pages, links = run(scenario())

    assert [len(p) for p in pages] == [2, 2, 2]
    names = sorted(str(u["name"]) for p in pages for u in p)
    assert names == [f"Sam Sales {n}" for n in (0, 1, 2, 4, 5, 6)]
    assert all(u["dept"] == "Sales" and u["title"] is None for p in pages for u in p)
    assert links[-1] is None
    assert links[0] is not None and "$skiptoken=" in links[0] and "$top=2" in links[0]


def test_expand_manager_select_id(fake_entra: FakeEntra, staff: dict[str, str]) -> None:
    async def scenario() -> dict[str, str | None]:
        async with graph_client(fake_entra) as client:
            config = users_config(select=["displayName"], expand=["manager($select=id)"])
            page = await client.users.get(request_configuration=config)
            assert page is not None and page.value is not None
            return {u.id or "": (u.manager.id if u.manager else None) for u in page.value}

    managers = run(scenario())

    assert managers[staff["sales0"]] == staff["boss"]
    assert managers[staff["boss"]] is None
    with raw_client(fake_entra) as http:
        body = http.get(
            "/users",
            params={
                "$select": "id",
                "$expand": "manager($select=id)",
                "$filter": "department eq 'Sales'",
            },
        ).json()
    assert {"@odata.type": "#microsoft.graph.user", "id": staff["boss"]} in [
        u.get("manager") for u in body["value"]
    ]
    assert set(body["value"][0]) <= {"id", "manager"}


def test_get_user_and_manager(fake_entra: FakeEntra, staff: dict[str, str]) -> None:
    async def scenario() -> tuple[User | None, object, ODataError]:
        async with graph_client(fake_entra) as client:
            config = RequestConfiguration(
                query_parameters=UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
                    select=["id", "department", "onPremisesExtensionAttributes"]
                )
            )
            user = await client.users.by_user_id(staff["sales1"]).get(config)
            manager = await client.users.by_user_id(staff["sales1"]).manager.get()
            with pytest.raises(ODataError) as caught:
                await client.users.by_user_id(staff["boss"]).manager.get()
            return user, manager, caught.value

    user, manager, no_manager = run(scenario())

    assert user is not None and user.department == "Sales"
    assert user.on_premises_extension_attributes is not None
    assert user.on_premises_extension_attributes.extension_attribute1 is None
    assert isinstance(manager, User) and manager.display_name == "Alice Boss"
    assert no_manager.response_status_code == 404
    assert no_manager.error is not None and no_manager.error.code == "Request_ResourceNotFound"
    assert no_manager.error.message == (
        "Resource 'manager' does not exist or one of its queried reference-property objects "
        "are not present."
    )


@pytest.mark.parametrize(
    ("params", "status", "code", "message"),
    [
        (
            {"$select": "displayName,shoeSize"},
            400,
            "BadRequest",
            "Could not find a property named 'shoeSize' on type 'microsoft.graph.user'.",
        ),
        (
            {"$top": "1000"},
            400,
            "Request_BadRequest",
            "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive.",
        ),
        (
            {"$filter": "endswith(mail,'@contoso.example')"},
            400,
            "Request_UnsupportedQuery",
            "Unsupported or invalid query filter clause specified for property 'mail' of "
            "resource 'User'.",
        ),
        (
            {"$filter": "onPremisesExtensionAttributes/extensionAttribute1 eq 'vip'"},
            400,
            "Request_UnsupportedQuery",
            "Unsupported or invalid query filter clause specified for property "
            "'onPremisesExtensionAttributes/extensionAttribute1' of resource 'User'.",
        ),
        (
            {"$filter": "department ne 'Sales'"},
            400,
            "Request_UnsupportedQuery",
            "Unsupported or invalid query filter clause specified for property 'department' of "
            "resource 'User'.",
        ),
        (
            {"$filter": "department eq"},
            400,
            "BadRequest",
            "Invalid filter clause: syntax error in 'department eq'.",
        ),
        (
            {"$skiptoken": "made-up"},
            400,
            "Directory_ExpiredPageToken",
            "The specified page token value has expired and can no longer be included in your "
            "request.",
        ),
    ],
)
def test_query_errors_like_graph(
    fake_entra: FakeEntra, params: dict[str, str], status: int, code: str, message: str
) -> None:
    with raw_client(fake_entra) as http:
        response = http.get("/users", params=params)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"] == message
    assert set(response.json()["error"]["innerError"]) == {
        "date",
        "request-id",
        "client-request-id",
    }


def test_advanced_query_with_consistency_level(
    fake_entra: FakeEntra, staff: dict[str, str]
) -> None:
    fake_entra.set_property(
        staff["sales2"], "onPremisesExtensionAttributes.extensionAttribute1", "vip"
    )
    with raw_client(fake_entra) as http:
        response = http.get(
            "/users",
            params={
                "$filter": "onPremisesExtensionAttributes/extensionAttribute1 eq 'VIP'",
                "$count": "true",
                "$select": "id",
            },
            headers={"ConsistencyLevel": "eventual"},
        )

    assert response.json()["value"] == [{"id": staff["sales2"]}]
    assert response.json()["@odata.count"] == 1


def test_group_members_and_transitive_members(
    fake_entra: FakeEntra, staff: dict[str, str], tmp_path: Path
) -> None:
    inner = fake_entra.add_group([staff["sales0"], staff["sales1"]])
    outer = fake_entra.add_group([inner, staff["boss"]])
    creds = fake_entra.new_app(tmp_path, roles=["User.Read.All", "GroupMember.Read.All"])
    app = msal_app(fake_entra, creds.secret, client_id=creds.client_id)

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        async with graph_client(fake_entra, app) as client:
            group = client.groups.by_group_id(outer)
            direct = await group.members.get()
            direct_users = await group.members.graph_user.get()
            everyone = await group.transitive_members.graph_user.get()
            assert direct and direct.value and direct_users and direct_users.value
            assert everyone and everyone.value
            return (
                [type(m).__name__ for m in direct.value],
                [u.id or "" for u in direct_users.value],
                sorted(u.id or "" for u in everyone.value),
            )

    kinds, direct_users, everyone = run(scenario())

    assert sorted(kinds) == ["Group", "User"]
    assert direct_users == [staff["boss"]]
    assert everyone == sorted([staff["boss"], staff["sales0"], staff["sales1"]])


def test_group_members_need_a_group_permission(
    fake_entra: FakeEntra, staff: dict[str, str]
) -> None:
    group = fake_entra.add_group([staff["boss"]])

    async def scenario() -> ODataError:
        async with graph_client(fake_entra) as client:
            with pytest.raises(ODataError) as caught:
                await client.groups.by_group_id(group).members.get()
            return caught.value

    error = run(scenario())
    assert error.response_status_code == 403
    assert error.error is not None and error.error.code == "Authorization_RequestDenied"
    assert error.error.message == "Insufficient privileges to complete the operation."


def test_missing_and_bad_tokens(fake_entra: FakeEntra) -> None:
    with raw_client(fake_entra) as http:
        missing = http.get("/users", headers={"Authorization": ""})
        bad = http.get("/users", headers={"Authorization": "Bearer forged"})
        fake_entra.expire_tokens()
        expired = http.get("/users")

    assert [r.status_code for r in (missing, bad, expired)] == [401, 401, 401]
    assert [r.json()["error"]["code"] for r in (missing, bad, expired)] == [
        "InvalidAuthenticationToken"
    ] * 3
    assert [r.json()["error"]["message"] for r in (missing, bad, expired)] == [
        "Access token is empty.",
        "Access token validation failure.",
        "Lifetime validation failed, the token is expired.",
    ]


def test_host_not_allowed_sends_no_token(fake_entra: FakeEntra) -> None:
    # the kiota trap: a host missing from the allowed hosts gets no Authorization header
    from .wiring import MsalTokenProvider

    provider = MsalTokenProvider(msal_app(fake_entra), ["graph.microsoft.com"])
    token = run(provider.get_authorization_token(f"{fake_entra.graph_url}/users"))

    assert token == ""
