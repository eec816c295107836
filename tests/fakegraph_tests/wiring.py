"""Wiring of the real msal and msgraph-sdk to the fake, shared by these tests.

This is the wiring the Entra ID backend needs too: msal with the fake's authority over a
requests.Session that trusts the fake's CA (and ignores REQUESTS_CA_BUNDLE), and a
GraphServiceClient whose httpx client trusts the CA, carries the SDK's default
middleware (retry, redirect, ...) and whose request adapter points at the fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import httpx
import msal
import requests
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_http.middleware.options import RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph_core import GraphClientFactory

from tests.fakegraph import FakeEntra

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one async scenario (no pytest async plugin needed)."""
    return asyncio.run(coroutine)


def msal_session(fake: FakeEntra) -> requests.Session:
    """A requests.Session that trusts only the fake's CA. trust_env=False matters: with
    REQUESTS_CA_BUNDLE set, requests would let it override `verify`."""
    session = requests.Session()
    session.trust_env = False
    session.verify = fake.ca_file
    return session


def msal_app(
    fake: FakeEntra,
    credential: str | dict[str, str] | None = None,
    *,
    client_id: str | None = None,
    authority: str | None = None,
) -> msal.ConfidentialClientApplication:
    assert fake.app is not None
    return msal.ConfidentialClientApplication(
        client_id or fake.app.client_id,
        client_credential=credential if credential is not None else fake.app.secret,
        authority=authority or fake.authority,
        instance_discovery=False,  # else msal asks the public cloud about the authority
        http_client=msal_session(fake),
    )


class MsalTokenProvider(AccessTokenProvider):  # type: ignore[misc]
    """kiota's token provider over msal (msal caches the app token)."""

    def __init__(self, app: msal.ConfidentialClientApplication, allowed_hosts: list[str]):
        self._app = app
        self._hosts = AllowedHostsValidator(allowed_hosts)

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        if not self._hosts.is_url_host_valid(uri):
            return ""  # kiota then sends no Authorization header at all
        result = await asyncio.to_thread(self._app.acquire_token_for_client, [GRAPH_SCOPE])
        if "access_token" not in result:
            raise RuntimeError(f"{result.get('error')}: {result.get('error_description')}")
        return str(result["access_token"])

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._hosts


@contextlib.asynccontextmanager
async def graph_client(
    fake: FakeEntra,
    app: msal.ConfidentialClientApplication | None = None,
    *,
    retry: RetryHandlerOption | None = None,
    timeout: float = 10.0,
) -> AsyncIterator[GraphServiceClient]:
    """A GraphServiceClient for the fake, closed afterwards."""
    tls = ssl.create_default_context(cafile=fake.ca_file)
    options = {RetryHandlerOption.get_key(): retry} if retry is not None else None
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=tls, timeout=timeout), options=options
    )
    provider = MsalTokenProvider(app or msal_app(fake), ["127.0.0.1"])
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(provider), client=http)
    adapter.base_url = fake.graph_url
    try:
        yield GraphServiceClient(request_adapter=adapter)
    finally:
        await http.aclose()


def raw_client(fake: FakeEntra) -> httpx.Client:
    """A plain httpx client with a valid token, for requests the SDK cannot make."""
    token = msal_app(fake).acquire_token_for_client([GRAPH_SCOPE])["access_token"]
    return httpx.Client(
        base_url=fake.graph_url,
        verify=ssl.create_default_context(cafile=fake.ca_file),
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
