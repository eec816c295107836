"""What a new user of the Entra ID backend meets when a setting or a permission is wrong:
one line that names the setting or the permission to fix."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
import requests
from click.testing import Result

from persona_sync.config import EntraDirectoryConfig
from persona_sync.directory.entra_auth import unreachable
from tests.entra.conftest import ON_PREMISES, Tenant

Run = Callable[..., Result]

OWNED_BY = (
    "grant the app the application permission Application.ReadWrite.OwnedBy with admin "
    "consent, and make the app an owner of its own registration"
)


def use_app(tenant: Tenant, roles: tuple[str, ...], target: str | None = None) -> str:
    """Point the config at a new app with these permissions; its extension name."""
    app = tenant.fake.new_app(tenant.root / "other-app", roles=roles)
    full = f"extension_{app.client_id.replace('-', '')}_persona"
    assert tenant.fake.app is not None
    text = tenant.config.read_text().replace(tenant.fake.app.client_id, app.client_id)
    tenant.config.write_text(text.replace(f"persona: {ON_PREMISES}", f"persona: {target or full}"))
    os.environ["PERSONA_SYNC_CLIENT_SECRET"] = app.secret  # the fixture's monkeypatch restores
    return full


def test_an_app_without_application_rights_is_told_which_one(tenant: Tenant, run_cli: Run) -> None:
    use_app(tenant, ("User.ReadWrite.All",))
    refused = (
        "Graph refused to read the app's registration (403 Authorization_RequestDenied: "
        f"Insufficient privileges to complete the operation.); {OWNED_BY}"
    )
    created = run_cli("entra", "create-extension", "persona")
    assert (created.exit_code, created.stderr) == (1, f"error: {refused}\n")
    check = run_cli("check-connection")
    assert check.exit_code == 1
    assert f"FAIL  target        {refused}" in check.stdout.splitlines()


def test_an_app_that_does_not_own_its_registration(tenant: Tenant, run_cli: Run) -> None:
    use_app(tenant, ("User.ReadWrite.All", "Application.ReadWrite.OwnedBy"))
    client_id = tenant.config.read_text().split("client_id: ", 1)[1].split()[0]
    app = tenant.fake.directory.application_by_client_id(client_id)
    assert app is not None
    app.owners.clear()  # Entra's default: an app does not own its own registration
    created = run_cli("entra", "create-extension", "persona")
    assert (created.exit_code, created.stderr) == (
        1,
        f"error: application {client_id} not found: the app may not read its own "
        f"registration; {OWNED_BY}\n",
    )


def test_plan_against_an_extension_nobody_created(tenant: Tenant, run_cli: Run) -> None:
    full = use_app(tenant, ("User.ReadWrite.All", "Application.ReadWrite.OwnedBy"))
    result = run_cli("plan")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: the directory extension {full} does not exist (Graph answered 400 "
        f"BadRequest: Could not find a property named '{full}' on type "
        "'microsoft.graph.user'.); create it with `persona-sync entra create-extension persona`"
    )
    assert run_cli("entra", "create-extension", "persona").exit_code == 0
    assert run_cli("plan", "-q").exit_code == 2


def test_plan_against_an_extension_of_another_app(tenant: Tenant, run_cli: Run) -> None:
    other = "extension_0123456789abcdef0123456789abcdef_persona"
    ours = use_app(tenant, ("User.ReadWrite.All",), target=other)
    result = run_cli("plan")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"error: the directory extension {other} does not exist (Graph answered 400 "
        f"BadRequest: Could not find a property named '{other}' on type "
        "'microsoft.graph.user'.); its name is not this app's: persona-sync creates "
        f"{ours} with `persona-sync entra create-extension persona`: use that name as the "
        "target"
    )


def test_an_http_authority_names_the_url(tenant: Tenant, run_cli: Run) -> None:
    authority = tenant.fake.authority.rsplit("/", 1)[0]
    plain = authority.replace("https://", "http://")
    tenant.config.write_text(tenant.config.read_text().replace(authority, plain))
    expected = (
        f"directory.authority_host is {plain}: it must be an https:// URL (persona-sync "
        "sends the app's credential and tokens only over TLS), e.g. "
        "https://login.microsoftonline.com"
    )
    result = run_cli("plan")
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (1, f"error: {expected}")
    check = run_cli("check-connection")
    assert check.stdout.splitlines()[0] == f"FAIL  token         {expected}"


def test_an_http_graph_endpoint_names_the_url(tenant: Tenant, run_cli: Run) -> None:
    text = tenant.config.read_text().replace(
        f"graph_endpoint: {tenant.fake.origin}", "graph_endpoint: http://graph.example.com"
    )
    tenant.config.write_text(text)
    result = run_cli("plan")
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        1,
        "error: directory.graph_endpoint is http://graph.example.com: it must be an https:// "
        "URL (persona-sync sends the app's credential and tokens only over TLS), e.g. "
        "https://graph.microsoft.com",
    )


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such file"),
        ("not a certificate\n", "holds no certificate: give the CA's certificate in PEM "
         "(-----BEGIN CERTIFICATE-----)"),
    ],
    ids=["missing", "not-pem"],
)  # fmt: skip
def test_a_ca_file_that_is_missing_or_not_pem(
    tenant: Tenant, run_cli: Run, content: str | None, problem: str
) -> None:
    ca_file = tenant.root / "corporate-ca.pem"
    if content is not None:
        ca_file.write_text(content)
    text = tenant.config.read_text().replace(
        f"ca_file: {tenant.fake.ca_file}", f"ca_file: {ca_file}"
    )
    tenant.config.write_text(text)
    separator = ": " if problem == "no such file" else " "
    result = run_cli("plan")
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        1,
        f"error: directory.ca_file {ca_file}{separator}{problem}",
    )


def test_no_ca_file_and_a_private_ca_says_to_set_ca_file(tenant: Tenant, run_cli: Run) -> None:
    text = tenant.config.read_text().replace(f"  ca_file: {tenant.fake.ca_file}\n", "")
    tenant.config.write_text(text)
    result = run_cli("plan")
    assert (result.exit_code, result.stderr.splitlines()[-1]) == (
        1,
        f"error: the TLS certificate of 127.0.0.1:{tenant.fake.port} is not trusted (unable to "
        "get local issuer certificate): if a private CA or a TLS-inspecting proxy signs it, "
        "set directory.ca_file to that CA's certificate (PEM)",
    )


def test_a_verification_failure_known_only_as_text_still_names_ca_file() -> None:
    # What requests raises when urllib3 (or pyOpenSSL) turned the certificate error into
    # text: no ssl.SSLCertVerificationError left to find in the chain.
    raw = requests.exceptions.SSLError(
        "HTTPSConnectionPool(host='login.microsoftonline.com', port=443): Max retries "
        "exceeded with url: /tenant/v2.0/.well-known/openid-configuration (Caused by "
        "SSLError(SSLError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
        "self-signed certificate in certificate chain (_ssl.c:1006)')))"
    )
    spec = EntraDirectoryConfig(type="entra", tenant_id="t", client_id="c")
    assert unreachable(raw, spec.authority_host, "authority_host", spec) == (
        "the TLS certificate of login.microsoftonline.com is not trusted (self-signed "
        "certificate in certificate chain): if a private CA or a TLS-inspecting proxy signs "
        "it, set directory.ca_file to that CA's certificate (PEM)"
    )
