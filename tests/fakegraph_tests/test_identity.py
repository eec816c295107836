"""The identity side, driven by the real msal: client credentials with a secret and with
a certificate, and Entra's answers to wrong secrets, tenants, clients and scopes."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest
import requests
import trustme

from tests.fakegraph import FakeEntra

from .wiring import GRAPH_SCOPE, graph_client, msal_app, msal_session, run


def test_secret_credential_gets_a_token(fake_entra: FakeEntra) -> None:
    result = msal_app(fake_entra).acquire_token_for_client([GRAPH_SCOPE])

    assert result["token_type"] == "Bearer"
    assert result["expires_in"] > 3000
    grant = fake_entra.identity.grant_for(result["access_token"])
    assert grant is not None
    assert grant.roles == {"User.ReadWrite.All", "Application.ReadWrite.OwnedBy"}


def test_msal_caches_the_token(fake_entra: FakeEntra) -> None:
    app = msal_app(fake_entra)
    first = app.acquire_token_for_client([GRAPH_SCOPE])["access_token"]
    second = app.acquire_token_for_client([GRAPH_SCOPE])["access_token"]

    assert first == second
    assert [r.path for r in fake_entra.requests if r.method == "POST"] == [
        f"/{fake_entra.tenant_id}/oauth2/v2.0/token"
    ]


def test_certificate_credential_with_sha256_thumbprint(fake_entra: FakeEntra) -> None:
    # msal >= 1.35 with public_certificate signs PS256 and sends x5t#S256
    assert fake_entra.app is not None
    credential = {
        "private_key": fake_entra.app.private_key_pem,
        "public_certificate": fake_entra.app.certificate_pem,
    }
    result = msal_app(fake_entra, credential).acquire_token_for_client([GRAPH_SCOPE])

    assert "access_token" in result, result


def test_certificate_credential_with_sha1_thumbprint(fake_entra: FakeEntra) -> None:
    # an explicit thumbprint is taken as SHA-1: RS256 with x5t
    assert fake_entra.app is not None
    credential = {
        "private_key": fake_entra.app.key_file.read_text(),
        "thumbprint": fake_entra.app.thumbprint,
    }
    result = msal_app(fake_entra, credential).acquire_token_for_client([GRAPH_SCOPE])

    assert "access_token" in result, result


def test_certificate_signed_by_another_key_is_refused(fake_entra: FakeEntra) -> None:
    assert fake_entra.app is not None
    stranger = trustme.CA().issue_cert("x.invalid", key_type=trustme.KeyType.RSA)
    credential = {
        "private_key": stranger.private_key_pem.bytes().decode(),
        "thumbprint": fake_entra.app.thumbprint,  # claims the registered certificate
    }
    result = msal_app(fake_entra, credential).acquire_token_for_client([GRAPH_SCOPE])

    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS700027: ")


def _assertion(fake: FakeEntra, **claims: object) -> str:
    assert fake.app is not None
    now = int(time.time())
    payload = {
        "aud": fake.token_endpoint,
        "iss": fake.app.client_id,
        "sub": fake.app.client_id,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "exp": now + 600,
        **claims,
    }
    header = {"x5t": jwt.utils.base64url_encode(bytes.fromhex(fake.app.thumbprint)).decode()}
    return jwt.encode(payload, fake.app.private_key_pem, algorithm="RS256", headers=header)


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"exp": int(time.time()) - 3600}, 700024),
        ({"aud": "https://login.microsoftonline.com/other/oauth2/v2.0/token"}, 700023),
        ({"iss": "someone-else"}, 700021),
    ],
)
def test_assertion_claims_are_checked(
    fake_entra: FakeEntra, claims: dict[str, object], code: int
) -> None:
    assert fake_entra.app is not None
    response = msal_session(fake_entra).post(
        fake_entra.token_endpoint,
        data={
            "grant_type": "client_credentials",
            "client_id": fake_entra.app.client_id,
            "scope": GRAPH_SCOPE,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": _assertion(fake_entra, **claims),
        },
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_codes"] == [code]


def test_wrong_secret_is_invalid_client(fake_entra: FakeEntra) -> None:
    result = msal_app(fake_entra, "not-the-secret").acquire_token_for_client([GRAPH_SCOPE])

    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith(
        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
        "request is the client secret value, not the client secret ID, for a secret added to "
        f"app '{fake_entra.app.client_id if fake_entra.app else ''}'.\r\nTrace ID: "
    )


def test_unknown_client_is_unauthorized_client(fake_entra: FakeEntra) -> None:
    unknown = "0b7a3c1e-0000-4000-8000-000000000000"
    result = msal_app(fake_entra, "x", client_id=unknown).acquire_token_for_client([GRAPH_SCOPE])

    assert result["error"] == "unauthorized_client"
    assert result["error_description"].startswith(
        f"AADSTS700016: Application with identifier '{unknown}' was not found in the "
        "directory 'contoso.example'."
    )


def test_unknown_tenant_fails_discovery_in_msal(fake_entra: FakeEntra) -> None:
    # msal reads the discovery document when the app is built; for an unknown tenant it
    # answers 400 invalid_tenant with AADSTS90002, which msal keeps only as the context
    # of its own ValueError
    with pytest.raises(ValueError, match="^Unable to get authority configuration") as caught:
        msal_app(fake_entra, authority=f"{fake_entra.origin}/nope")

    assert "AADSTS90002: Tenant 'nope' not found." in str(caught.value.__context__)


def test_unknown_tenant_at_the_token_endpoint(fake_entra: FakeEntra) -> None:
    response = msal_session(fake_entra).post(
        f"{fake_entra.origin}/nope/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "x",
            "client_secret": "y",
            "scope": GRAPH_SCOPE,
        },
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.json()["error_description"].startswith("AADSTS90002: Tenant 'nope'")


def test_scope_must_be_graph_default(fake_entra: FakeEntra) -> None:
    app = msal_app(fake_entra)

    no_default = app.acquire_token_for_client(["https://graph.microsoft.com/User.Read.All"])
    other_resource = app.acquire_token_for_client(["https://vault.azure.net/.default"])
    fake_origin = app.acquire_token_for_client([f"{fake_entra.origin}/.default"])

    assert no_default["error"] == "invalid_scope"
    assert no_default["error_codes"] == [1002012]
    assert other_resource["error"] == "invalid_resource"
    assert "access_token" in fake_origin


def test_without_admin_consent_the_token_has_no_roles_and_graph_refuses_it(
    fake_entra: FakeEntra, tmp_path: object
) -> None:
    # Entra issues app-only tokens even before admin consent, just without roles
    from pathlib import Path

    from msgraph.generated.models.o_data_errors.o_data_error import ODataError

    creds = fake_entra.new_app(Path(str(tmp_path)), roles=["User.Read.All"], consent=False)
    app = msal_app(fake_entra, creds.secret, client_id=creds.client_id)
    assert "access_token" in app.acquire_token_for_client([GRAPH_SCOPE])

    async def scenario() -> ODataError:
        async with graph_client(fake_entra, app) as client:
            with pytest.raises(ODataError) as caught:
                await client.users.get()
            return caught.value

    error = run(scenario())
    assert error.response_status_code == 401
    assert error.error is not None
    assert error.error.code == "InvalidAuthenticationToken"
    assert error.error.message == "Either scp or roles claim need to be present in the token."


def test_requests_ca_bundle_does_not_override_a_session_without_trust_env(
    fake_entra: FakeEntra, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the trap from the notes: REQUESTS_CA_BUNDLE beats verify= unless trust_env is off
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    trusting_env = requests.Session()
    trusting_env.verify = fake_entra.ca_file

    with pytest.raises(requests.exceptions.SSLError):
        trusting_env.get(f"{fake_entra.authority}/v2.0/.well-known/openid-configuration")
    assert "access_token" in msal_app(fake_entra).acquire_token_for_client([GRAPH_SCOPE])
