"""Microsoft Entra ID through Microsoft Graph: msal for the app token, msgraph-sdk for HTTP.

Transport, authentication and the SDK's retry/redirect middleware come from msgraph-sdk's
request adapter; payloads are Graph's own JSON, so extension attributes, nested
``onPremisesExtensionAttributes`` and custom security attributes keep their Graph names,
and ``$batch`` sub-responses keep their error bodies (the SDK's batch model drops them).

Writes are ``$batch`` requests of up to 20 PATCHes, several in flight. Compare-and-swap
as far as Graph allows: the batch's users are re-read just before the PATCH, and a value
that differs from the plan's becomes a conflict. (A change made between that read and the
PATCH is the remaining race: a fraction of a second, at most FRESH_SECONDS when Graph
throttles; Graph has no conditional PATCH for users.) Each throttled or failed
sub-request is retried on its own after its Retry-After, with jitter and a cap; nothing
is sent twice without first reading it back.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import structlog

from persona_sync.config import EntraDirectoryConfig
from persona_sync.directory.base import Change, ChangeResult, Directory, DirectoryAborted
from persona_sync.employee import Employee
from persona_sync.errors import ConfigError, DirectoryError
from persona_sync.secrets import Secret

log = structlog.get_logger(__name__)

BATCH_LIMIT = 20
PAGE_SIZE = 999
ALWAYS_SELECTED = ("id", "userPrincipalName", "accountEnabled", "onPremisesSyncEnabled")
ON_PREMISES = "onpremisesextensionattributes."
CUSTOM_SECURITY = "customsecurityattributes."
RETRIED_STATUSES = {429, 500, 502, 503, 504}
FRESH_SECONDS = 5.0  # a compare-and-swap read this recent is reused for a retry
SYNCED_REASON = (
    "mastered on-premises (synced from Active Directory): write the persona in AD; "
    "Entra Connect carries it to Entra ID"
)


@dataclass(frozen=True)
class Credential:
    """What msal needs: a certificate (key, cert, thumbprint) or a secret."""

    secret: Secret | None = None
    private_key: Secret | None = None
    certificate_pem: str | None = None
    thumbprint: str | None = None

    def for_msal(self) -> str | dict[str, str]:
        if self.private_key is not None:
            credential = {"private_key": self.private_key.value}
            if self.certificate_pem:
                credential["public_certificate"] = self.certificate_pem
            if self.thumbprint:
                credential["thumbprint"] = self.thumbprint
            return credential
        assert self.secret is not None
        return self.secret.value


class EntraDirectory(Directory):
    """Users of one Entra ID tenant."""

    batch_size = 2000  # per journal batch; sent as $batch requests of 20

    def __init__(self, spec: EntraDirectoryConfig, credential: Credential) -> None:
        self.spec = spec
        self.credential = credential
        self.identity = f"entra:{spec.tenant_id.casefold()}"
        self._loop = asyncio.new_event_loop()
        self._adapter: Any = None
        self._http: Any = None
        self._app: Any = None
        self._properties: frozenset[str] | None = None
        self._lost: set[int] = set()

    # --- plumbing ---------------------------------------------------------------------

    def _run(self, coroutine: Awaitable[Any]) -> Any:
        return self._loop.run_until_complete(coroutine)

    def close(self) -> None:
        if self._http is not None:
            self._run(self._http.aclose())
            self._http = None
        if not self._loop.is_closed():
            self._loop.close()

    def token(self) -> str:
        """An app token from msal (cached by msal); Entra's errors explained."""
        import msal
        import requests

        if self._app is None:
            session = requests.Session()
            if self.spec.ca_file is not None:
                session.trust_env = False  # else REQUESTS_CA_BUNDLE would override verify
                session.verify = str(self.spec.ca_file)
            authority = f"{self.spec.authority_host.rstrip('/')}/{self.spec.tenant_id}"
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.spec.client_id,
                    client_credential=self.credential.for_msal(),
                    authority=authority,
                    instance_discovery=False,
                    http_client=session,
                )
            except ValueError as exc:
                if "authority" in str(exc).lower():
                    raise DirectoryError(
                        f"tenant {self.spec.tenant_id} not found at {self.spec.authority_host} "
                        "(check directory.tenant_id and authority_host)"
                    ) from None
                raise DirectoryError(f"cannot use the app credential: {exc}") from None
            except requests.RequestException as exc:
                raise DirectoryError(f"cannot reach {authority}: {exc}") from None
        try:
            result = self._app.acquire_token_for_client([self._scope])
        except Exception as exc:  # noqa: BLE001 - msal and requests raise many types
            raise DirectoryError(
                f"cannot get a token from {self.spec.authority_host}: {exc}"
            ) from None
        if "access_token" not in result:
            raise DirectoryError(self._token_error(result))
        return str(result["access_token"])

    @property
    def _scope(self) -> str:
        return f"{self.spec.graph_endpoint.rstrip('/')}/.default"

    def _token_error(self, result: dict[str, Any]) -> str:
        text = str(result.get("error_description") or "")
        code = text.split(":", 1)[0] if text.startswith("AADSTS") else result.get("error")
        if "AADSTS7000215" in text:
            return (
                f"Entra ID refused the client secret of app {self.spec.client_id} "
                "(AADSTS7000215: invalid secret); set a current one"
            )
        if "AADSTS700016" in text:
            return (
                f"app {self.spec.client_id} is not registered in tenant "
                f"{self.spec.tenant_id} (AADSTS700016): check client_id and tenant_id"
            )
        if "AADSTS90002" in text:
            return f"tenant {self.spec.tenant_id} not found (AADSTS90002): check tenant_id"
        first = text.splitlines()[0] if text else ""
        return f"Entra ID refused the token request: {result.get('error')} ({code}): {first}"

    def _client(self) -> Any:
        if self._adapter is None:
            import httpx
            from kiota_abstractions.authentication import (
                AccessTokenProvider,
                AllowedHostsValidator,
                BaseBearerTokenAuthenticationProvider,
            )
            from msgraph.graph_request_adapter import GraphRequestAdapter
            from msgraph_core import GraphClientFactory

            directory = self
            host = urlsplit(self.spec.graph_endpoint).hostname or ""

            class TokenProvider(AccessTokenProvider):
                def __init__(self) -> None:
                    self.hosts = AllowedHostsValidator([host])

                async def get_authorization_token(self, uri: str, context: Any = None) -> str:
                    if not self.hosts.is_url_host_valid(uri):
                        return ""
                    return await asyncio.to_thread(directory.token)

                def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
                    return self.hosts

            context = ssl.create_default_context()
            if self.spec.ca_file is not None:
                context.load_verify_locations(cafile=str(self.spec.ca_file))
            self._http = GraphClientFactory.create_with_default_middleware(
                client=httpx.AsyncClient(
                    verify=context,
                    timeout=self.spec.timeout,
                    limits=httpx.Limits(max_connections=32),
                )
            )
            self._adapter = GraphRequestAdapter(
                BaseBearerTokenAuthenticationProvider(TokenProvider()), client=self._http
            )
            self._adapter.base_url = f"{self.spec.graph_endpoint.rstrip('/')}/v1.0"
            # Creating the client registers the SDK's JSON (de)serializers, without which
            # Graph's error bodies cannot be parsed.
            from msgraph.graph_service_client import GraphServiceClient

            GraphServiceClient(request_adapter=self._adapter)
        return self._adapter

    async def _call(self, method: str, url: str, body: Any = None) -> Any:
        """One Graph request; reads that lose their connection are tried again (3 times)."""
        for attempt in range(3):
            try:
                return await self._send(method, url, body)
            except _Dropped as exc:
                if method != "GET" or attempt == 2:
                    raise DirectoryError(str(exc)) from None
                await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _send(self, method: str, url: str, body: Any = None) -> Any:
        """One Graph request through the SDK's adapter; JSON in, JSON out."""
        from kiota_abstractions.api_error import APIError
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        adapter = self._client()
        info = RequestInformation(Method[method])
        info.url = url if url.startswith("http") else f"{adapter.base_url}{url}"
        info.headers.try_add("Accept", "application/json")
        if body is not None:
            info.headers.try_add("Content-Type", "application/json")
            info.content = json.dumps(body).encode()
        try:
            raw = await adapter.send_primitive_async(info, "bytes", {"XXX": ODataError})
        except ODataError as exc:
            detail = exc.error
            body = {
                "error": {
                    "code": getattr(detail, "code", "") or "",
                    "message": getattr(detail, "message", "") or "",
                }
            }
            raise DirectoryError(self._graph_error(exc.response_status_code, body)) from None
        except APIError as exc:
            raise DirectoryError(self._graph_error(exc.response_status_code, None)) from None
        except DirectoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - httpx transport errors and the like
            raise _Dropped(f"Microsoft Graph unreachable: {type(exc).__name__}: {exc}") from None
        return json.loads(raw) if raw else None

    def _graph_error(self, status: int | None, body: Any) -> str:
        error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
        code, message = error.get("code", ""), error.get("message", "")
        if status == 403:
            return (
                f"Graph refused: {message or 'insufficient privileges'} ({code or 403}); the "
                "app needs the application permission User.ReadWrite.All (or User.Read.All "
                "to plan) with admin consent"
            )
        if status == 401:
            # A fresh app token refused: no application permission was consented (the token
            # has no roles). The SDK cannot always parse this body, so do not rely on it.
            return (
                "Graph refused the token: it carries no application permissions; grant "
                "User.ReadWrite.All to the app and give admin consent"
            )
        return f"Graph answered {status} {code}: {message}".rstrip(": ")

    # --- reading ----------------------------------------------------------------------

    def _graph_properties(self) -> frozenset[str]:
        """Lower-case names of the Graph user properties, from the SDK's own model."""
        if self._properties is None:
            from msgraph.generated.models.user import User

            self._properties = frozenset(k.lower() for k in User().get_field_deserializers())
        return self._properties

    def _select(self, attributes: Sequence[str]) -> list[str]:
        known = self._graph_properties()
        selected = {a.lower() for a in ALWAYS_SELECTED}
        for attribute in attributes:
            name = attribute.lower()
            top = name.split(".", 1)[0]
            if name == "manager":
                continue  # comes from $expand
            if top in known or top.startswith("extension_"):
                selected.add(top)
        return sorted(selected)

    def read(self, attributes: Sequence[str]) -> Iterator[Employee]:
        select = self._select(attributes)
        filters = [] if self.spec.scope.include_disabled else ["accountEnabled eq true"]
        if self.spec.scope.filter:
            filters.append(f"({self.spec.scope.filter})")
        query = f"$select={','.join(select)}&$expand=manager($select=id)&$top={PAGE_SIZE}"
        if filters:
            query += "&$filter=" + quote(" and ".join(filters), safe="'() ")
        members = self._group_members() if self.spec.scope.group_id else None
        url: str | None = f"/users?{query}"
        count = 0
        while url is not None:
            page = self._run(self._call("GET", url))
            for item in page.get("value", []):
                if members is not None and item.get("id") not in members:
                    continue
                count += 1
                yield self._employee(item)
            url = page.get("@odata.nextLink")
        log.info("entra_read", users=count)

    def _group_members(self) -> set[str]:
        members: set[str] = set()
        url: str | None = (
            f"/groups/{self.spec.scope.group_id}/transitiveMembers/"
            f"microsoft.graph.user?$select=id&$top={PAGE_SIZE}"
        )
        while url is not None:
            page = self._run(self._call("GET", url))
            members.update(str(m["id"]) for m in page.get("value", []))
            url = page.get("@odata.nextLink")
        return members

    def _employee(self, item: dict[str, Any]) -> Employee:
        attributes: dict[str, str] = {}
        _flatten(item, "", attributes)
        manager = item.get("manager")
        if isinstance(manager, dict) and manager.get("id"):
            attributes["manager"] = str(manager["id"])
        attributes.pop("manager.id", None)
        return Employee(
            str(item.get("userPrincipalName") or item["id"]), str(item["id"]), attributes
        )

    def unwritable_reason(self, employee: Employee, attribute: str) -> str | None:
        if (
            attribute.lower().startswith(ON_PREMISES)
            and employee.attributes.get("onpremisessyncenabled") == "true"
        ):
            return SYNCED_REASON
        return None

    # --- writing ----------------------------------------------------------------------

    def apply(self, changes: Sequence[Change]) -> list[ChangeResult]:
        results: dict[int, ChangeResult] = {}
        try:
            self._run(self._apply(changes, results))
        except DirectoryError as exc:
            for i, change in enumerate(changes):
                results.setdefault(
                    i,
                    ChangeResult(
                        change, "failed", f"not written: {exc}; rerun apply with the same plan"
                    ),
                )
            raise DirectoryAborted(str(exc), [results[i] for i in range(len(changes))]) from None
        return [results[i] for i in range(len(changes))]

    async def _apply(self, changes: Sequence[Change], results: dict[int, ChangeResult]) -> None:
        self._lost = set()
        gate = asyncio.Semaphore(self.spec.concurrency)
        chunks = [
            list(range(start, min(start + BATCH_LIMIT, len(changes))))
            for start in range(0, len(changes), BATCH_LIMIT)
        ]

        async def one(chunk: list[int]) -> None:
            async with gate:
                await self._write_chunk(changes, chunk, results)

        await asyncio.gather(*(one(chunk) for chunk in chunks))

    async def _write_chunk(
        self, changes: Sequence[Change], chunk: list[int], results: dict[int, ChangeResult]
    ) -> None:
        """Read, compare, PATCH; retry what Graph refused (429/5xx: nothing applied).

        A read younger than FRESH_SECONDS is reused for a retry: the refused PATCH did not
        change anything, and re-reading would double the exposure to throttling.
        """
        pending = chunk
        known: dict[int, Any] = {}
        read_at = 0.0
        for attempt in range(self.spec.max_retries + 1):
            if time.monotonic() - read_at > FRESH_SECONDS:
                known.clear()
            to_read = [i for i in pending if i not in known]
            if to_read:
                if not known:
                    read_at = time.monotonic()
                known.update(await self._current_values(changes, to_read))
            to_write: list[int] = []
            unread: list[int] = []
            for i in pending:
                change, found = changes[i], known.get(i, _UNKNOWN)
                if found is _GONE:
                    results[i] = ChangeResult(change, "conflict", "user no longer exists")
                elif found is _UNKNOWN:
                    unread.append(i)  # the read itself was throttled: try again
                elif found == change.new:
                    results[i] = ChangeResult(change, "applied", "already had the value", found)
                elif found != change.old:
                    results[i] = ChangeResult(
                        change,
                        "conflict",
                        f"value changed since the plan: expected {_show(change.old)}, "
                        f"found {_show(found)}",
                        found,
                    )
                else:
                    to_write.append(i)
            waits, retry = await self._patch(changes, to_write, results)
            for i in retry:
                if i in self._lost:
                    known.pop(i, None)  # outcome unknown: read it back before trying again
            retry += unread
            if not retry:
                return
            pending = retry
            if attempt == self.spec.max_retries:
                break
            delay = min(self.spec.retry_cap, max(waits, default=0.5)) + random.uniform(0, 0.5)
            log.info(
                "entra_throttled", changes=len(retry), wait=round(delay, 2), attempt=attempt + 1
            )
            await asyncio.sleep(delay)
        for i in pending:
            results[i] = ChangeResult(
                changes[i],
                "failed",
                f"Graph kept refusing after {self.spec.max_retries + 1} "
                "tries (throttled or unavailable); rerun apply later",
            )

    async def _current_values(
        self, changes: Sequence[Change], indexes: list[int]
    ) -> dict[int, Any]:
        """Each change's attribute as Graph holds it now (_GONE, or absent if unknown)."""
        requests = []
        for i in indexes:
            change = changes[i]
            top = change.attribute.split(".", 1)[0]
            requests.append(
                {
                    "id": str(i),
                    "method": "GET",
                    "url": f"/users/{quote(change.dn)}?$select=id,{top}",
                }
            )
        found: dict[int, Any] = {}
        try:
            responses = await self._batch(requests)
        except DirectoryError as exc:  # a dropped read: nothing known, try again later
            log.warning("entra_read_lost", error=str(exc), users=len(indexes))
            return found
        for response in responses:
            i = int(response["id"])
            status = response.get("status")
            if status == 200:
                flat: dict[str, str] = {}
                _flatten(response.get("body") or {}, "", flat)
                found[i] = flat.get(changes[i].attribute.lower()) or None
            elif status == 404:
                found[i] = _GONE
        return found

    async def _patch(
        self, changes: Sequence[Change], indexes: list[int], results: dict[int, ChangeResult]
    ) -> tuple[list[float], list[int]]:
        if not indexes:
            return [], []
        requests = [
            {
                "id": str(i),
                "method": "PATCH",
                "url": f"/users/{quote(changes[i].dn)}",
                "headers": {"Content-Type": "application/json"},
                "body": _patch_body(changes[i].attribute, changes[i].new),
            }
            for i in indexes
        ]
        waits: list[float] = []
        retry: list[int] = []
        try:
            responses = await self._batch(requests)
        except DirectoryError as exc:
            # The envelope failed (connection dropped): we cannot know what Graph applied.
            # Retrying goes through a fresh read, so nothing is written twice blindly.
            log.warning("entra_batch_lost", error=str(exc), changes=len(indexes))
            self._lost.update(indexes)
            return [1.0], list(indexes)
        answered = {int(r["id"]): r for r in responses}
        for i in indexes:
            response = answered.get(i)
            status = response.get("status") if response else None
            change = changes[i]
            if status in (200, 204):
                results[i] = ChangeResult(change, "applied")
            elif status in RETRIED_STATUSES or status is None:
                retry.append(i)
                waits.append(_retry_after(response))
            elif status == 404:
                results[i] = ChangeResult(change, "conflict", "user no longer exists")
            else:
                error = ((response or {}).get("body") or {}).get("error", {})
                message = (
                    f"Graph answered {status} {error.get('code', '')}: {error.get('message', '')}"
                )
                if status == 403:
                    message += " (the app needs User.ReadWrite.All)"
                results[i] = ChangeResult(change, "failed", message)
        return waits, retry

    async def _batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        responses: list[dict[str, Any]] = []
        for start in range(0, len(requests), BATCH_LIMIT):
            part = requests[start : start + BATCH_LIMIT]
            answer = await self._call("POST", "/$batch", {"requests": part})
            responses.extend((answer or {}).get("responses", []))
        return responses

    # --- set-up helpers ---------------------------------------------------------------

    def extension_name(self, name: str) -> str:
        return f"extension_{self.spec.client_id.replace('-', '')}_{name}"

    def ensure_extension(self, name: str, dry_run: bool) -> tuple[str, bool]:
        """Create the directory extension ``name`` on this app if missing.

        Returns its full name and whether it was (or, with dry_run, would be) created.
        """
        full = self.extension_name(name)
        app = self._run(
            self._call("GET", f"/applications?$filter=appId eq '{self.spec.client_id}'&$select=id")
        )
        found = (app or {}).get("value", [])
        if not found:
            raise DirectoryError(
                f"application {self.spec.client_id} not found (or the app may "
                "not read itself: grant Application.ReadWrite.OwnedBy)"
            )
        object_id = found[0]["id"]
        existing = self._run(self._call("GET", f"/applications/{object_id}/extensionProperties"))
        if any(p.get("name") == full for p in (existing or {}).get("value", [])):
            return full, False
        if not dry_run:
            self._run(
                self._call(
                    "POST",
                    f"/applications/{object_id}/extensionProperties",
                    {"name": name, "dataType": "String", "targetObjects": ["User"]},
                )
            )
        return full, True


class _Dropped(Exception):
    """The connection failed before Graph answered."""


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_GONE = _Sentinel("gone")
_UNKNOWN = _Sentinel("unknown")


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    """Graph JSON -> lower-case dotted names with string values (booleans as true/false)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key.startswith("@odata"):
                continue
            _flatten(inner, f"{prefix}{key.lower()}.", out)
        return
    name = prefix[:-1]
    if value is None or isinstance(value, list):
        return
    out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)


def _patch_body(attribute: str, value: str | None) -> dict[str, Any]:
    parts = attribute.split(".")
    if attribute.lower().startswith(CUSTOM_SECURITY) and len(parts) == 3:
        return {
            "customSecurityAttributes": {
                parts[1]: {
                    "@odata.type": "#Microsoft.DirectoryServices.CustomSecurityAttributeValue",
                    parts[2]: value,
                }
            }
        }
    if len(parts) == 2:
        return {parts[0]: {parts[1]: value}}
    return {attribute: value}


def _retry_after(response: dict[str, Any] | None) -> float:
    headers = {k.lower(): v for k, v in ((response or {}).get("headers") or {}).items()}
    try:
        return max(0.0, float(headers.get("retry-after", 1)))
    except ValueError:
        return 1.0


def _show(value: Any) -> str:
    return "(empty)" if value is None else repr(value)


def load_credential(
    spec: EntraDirectoryConfig, base: Path, prompt: Callable[[str], str] | None
) -> Credential:
    """The certificate if configured, else the client secret (file, variable, prompt)."""
    from persona_sync.secrets import resolve_secret

    cred = spec.credential
    if cred.certificate_file is not None:
        path = (
            cred.certificate_file
            if cred.certificate_file.is_absolute()
            else base / cred.certificate_file
        )
        password = None
        if cred.certificate_password_env:
            password = resolve_secret("certificate password", cred.certificate_password_env, None)
        return _certificate(path, password, cred.thumbprint)
    file = None
    if cred.client_secret_file is not None:
        file = (
            cred.client_secret_file
            if cred.client_secret_file.is_absolute()
            else base / cred.client_secret_file
        )
    return Credential(secret=resolve_secret("client secret", cred.client_secret_env, file, prompt))


def _certificate(path: Path, password: Secret | None, thumbprint: str | None) -> Credential:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the certificate {path}: {exc.strerror}") from None
    secret = password.value.encode() if password else None
    try:
        if path.suffix.lower() in (".pfx", ".p12"):
            key, certificate, _ = pkcs12.load_key_and_certificates(data, secret)
        else:
            key = serialization.load_pem_private_key(data, secret)
            certificate = x509.load_pem_x509_certificate(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load the certificate {path}: {exc}") from None
    if key is None or certificate is None:
        raise ConfigError(f"{path} must hold both the private key and the certificate")
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    computed = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - x5t is SHA-1
    return Credential(
        private_key=Secret(key_pem, f"file {path}"),
        certificate_pem=cert_pem,
        thumbprint=(thumbprint or computed).replace(":", "").upper(),
    )
