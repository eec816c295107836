"""Writing users with the real msgraph-sdk: directory extensions (declared through the
app's extensionProperties), onPremisesExtensionAttributes and custom security
attributes, and Graph's refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph.generated.models.extension_property import ExtensionProperty
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.on_premises_extension_attributes import (
    OnPremisesExtensionAttributes,
)
from msgraph.generated.models.user import User
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder

from tests.fakegraph import FakeEntra, Write

from .wiring import graph_client, msal_app, raw_client, run


def extension_name(fake: FakeEntra, name: str = "persona") -> str:
    assert fake.app is not None
    return f"extension_{fake.app.client_id.replace('-', '')}_{name}"


async def declare_extension(client: Any, app_id: str, name: str = "persona") -> str:
    """What persona-sync's setup does: find its own application object by appId, then
    declare the extension property on it."""
    application = await client.applications_with_app_id(app_id).get()
    created = await client.applications.by_application_id(application.id).extension_properties.post(
        ExtensionProperty(name=name, data_type="String", target_objects=["User"])
    )
    return str(created.name)


def test_declare_and_write_a_directory_extension(fake_entra: FakeEntra) -> None:
    assert fake_entra.app is not None
    user = fake_entra.add_user(displayName="Ann")
    name = extension_name(fake_entra)

    async def scenario() -> tuple[str, ODataError, Any, Any]:
        async with graph_client(fake_entra) as client:
            with pytest.raises(ODataError) as undeclared:
                await client.users.by_user_id(user).patch(User(additional_data={name: "vip"}))
            declared = await declare_extension(client, fake_entra.app.client_id)
            await client.users.by_user_id(user).patch(User(additional_data={name: "vip"}))
            config = RequestConfiguration(
                query_parameters=UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
                    select=["id", name]
                )
            )
            read = await client.users.by_user_id(user).get(config)
            await client.users.by_user_id(user).patch(User(additional_data={name: None}))
            cleared = await client.users.by_user_id(user).get(config)
            return declared, undeclared.value, read, cleared

    declared, undeclared, read, cleared = run(scenario())

    assert declared == name
    assert undeclared.response_status_code == 400
    assert undeclared.error is not None and undeclared.error.code == "Request_BadRequest"
    assert undeclared.error.message == (
        f"Property '{name}' does not exist as a declared property or extension property."
    )
    assert read.additional_data[name] == "vip"
    assert name not in cleared.additional_data  # Graph omits an extension with no value
    assert fake_entra.writes == [Write(user, name, None, "vip"), Write(user, name, "vip", None)]
    assert fake_entra.count("PATCH") == 3  # the refused one included


def test_extension_rules(fake_entra: FakeEntra) -> None:
    assert fake_entra.app is not None
    user = fake_entra.add_user()
    name = extension_name(fake_entra)
    application = fake_entra.directory.application_by_client_id(fake_entra.app.client_id)
    assert application is not None
    body = {"name": "persona", "dataType": "String", "targetObjects": ["User"]}

    with raw_client(fake_entra) as http:
        first = http.post(f"/applications/{application.object_id}/extensionProperties", json=body)
        again = http.post(
            f"/applications(appId='{fake_entra.app.client_id}')/extensionProperties", json=body
        )
        listed = http.get(f"/applications/{application.object_id}/extensionProperties")
        too_long = http.patch(f"/users/{user}", json={name: "x" * 257})
        longest = http.patch(f"/users/{user}", json={name: "x" * 256})

    assert first.status_code == 201
    assert first.json()["name"] == name
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "Request_MultipleObjectsWithSameKeyValue"
    assert again.json()["error"]["message"] == f"An extension property exists with the name {name}."
    assert [e["name"] for e in listed.json()["value"]] == [name]
    assert too_long.status_code == 400
    assert longest.status_code == 204
    assert fake_entra.users[user][name] == "x" * 256


def test_owned_by_covers_only_owned_applications(fake_entra: FakeEntra) -> None:
    other = fake_entra.register_app(display_name="someone else's app")
    with raw_client(fake_entra) as http:
        own = http.get(
            "/applications",
            params={"$filter": f"appId eq '{fake_entra.app.client_id}'" if fake_entra.app else ""},
        )
        foreign = http.get(f"/applications(appId='{other.client_id}')")
        listed = http.get("/applications")

    assert len(own.json()["value"]) == 1
    assert foreign.status_code == 403
    assert [a["appId"] for a in listed.json()["value"]] == [
        fake_entra.app.client_id if fake_entra.app else ""
    ]


def test_extension_attributes_of_cloud_and_synced_users(fake_entra: FakeEntra) -> None:
    cloud = fake_entra.add_user(displayName="Cloud Carla")
    synced = fake_entra.add_user(displayName="Synced Sid", onPremisesSyncEnabled=True)
    persona = User(
        on_premises_extension_attributes=OnPremisesExtensionAttributes(
            extension_attribute1="engineer"
        )
    )

    async def scenario() -> ODataError:
        async with graph_client(fake_entra) as client:
            await client.users.by_user_id(cloud).patch(persona)
            with pytest.raises(ODataError) as caught:
                await client.users.by_user_id(synced).patch(persona)
            return caught.value

    error = run(scenario())

    attributes = fake_entra.users[cloud]["onPremisesExtensionAttributes"]
    assert attributes["extensionAttribute1"] == "engineer"
    assert attributes["extensionAttribute2"] is None
    assert fake_entra.users[synced]["onPremisesExtensionAttributes"]["extensionAttribute1"] is None
    assert error.response_status_code == 400
    assert error.error is not None and error.error.code == "Request_BadRequest"
    assert error.error.message == (
        "Unable to update the specified properties for on-premises mastered Directory Sync "
        "objects or objects currently undergoing migration."
    )
    assert fake_entra.writes == [
        Write(cloud, "onPremisesExtensionAttributes.extensionAttribute1", None, "engineer")
    ]


def test_a_refused_patch_changes_nothing(fake_entra: FakeEntra) -> None:
    user = fake_entra.add_user(department="Sales")
    with raw_client(fake_entra) as http:
        response = http.patch(
            f"/users/{user}",
            json={
                "department": "Support",
                "onPremisesSyncEnabled": False,
            },
        )

    assert response.json()["error"]["message"] == (
        "Property 'onPremisesSyncEnabled' is read-only and cannot be set."
    )
    assert fake_entra.users[user]["department"] == "Sales"
    assert fake_entra.writes == []


def test_custom_security_attributes(fake_entra: FakeEntra, tmp_path: Path) -> None:
    fake_entra.define_custom_security_attribute("ITService", "persona")
    user = fake_entra.add_user()
    body = {
        "customSecurityAttributes": {
            "ITService": {
                "@odata.type": "#Microsoft.DirectoryServices.CustomSecurityAttributeValue",
                "persona": "vip",
            }
        }
    }
    creds = fake_entra.new_app(
        tmp_path, roles=["User.Read.All", "CustomSecAttributeAssignment.ReadWrite.All"]
    )
    with raw_client(fake_entra) as http:
        refused = http.patch(f"/users/{user}", json=body)
    fake_entra.app = creds
    with raw_client(fake_entra) as http:
        accepted = http.patch(f"/users/{user}", json=body)
        default = http.get(f"/users/{user}").json()
        selected = http.get(f"/users/{user}", params={"$select": "customSecurityAttributes"}).json()

    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "Authorization_RequestDenied"
    assert accepted.status_code == 204
    assert "customSecurityAttributes" not in default
    assert selected["customSecurityAttributes"] == {
        "ITService": {
            "@odata.type": "#microsoft.graph.customSecurityAttributeValue",
            "persona": "vip",
        }
    }
    assert fake_entra.writes == [
        Write(user, "customSecurityAttributes.ITService.persona", None, "vip")
    ]


def test_write_needs_a_write_permission(fake_entra: FakeEntra, tmp_path: Path) -> None:
    user = fake_entra.add_user()
    creds = fake_entra.new_app(tmp_path, roles=["User.Read.All"])
    app = msal_app(fake_entra, creds.secret, client_id=creds.client_id)

    async def scenario() -> ODataError:
        async with graph_client(fake_entra, app) as client:
            with pytest.raises(ODataError) as caught:
                await client.users.by_user_id(user).patch(User(department="x"))
            return caught.value

    error = run(scenario())
    assert error.response_status_code == 403
    assert error.error is not None
    assert error.error.message == "Insufficient privileges to complete the operation."
