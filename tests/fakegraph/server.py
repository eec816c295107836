"""FakeEntra: one local HTTPS server that is both the Microsoft identity platform
(authority https://127.0.0.1:PORT/{tenant}) and Microsoft Graph v1.0
(https://127.0.0.1:PORT/v1.0), for tests of code that uses the real msal and
msgraph-sdk. This module holds the test API and the dispatch of each request; the HTTP
and TLS plumbing is in transport.py. The certificate comes from a trustme CA; clients
trust `ca_file`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import socket
import ssl
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import trustme
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from . import batch, errors
from .directory import Application, Directory, Write
from .faults import Faults, Outcome
from .graph import GraphApi
from .identity import CLOCK_SKEW as TOKEN_CLOCK_SKEW
from .identity import Grant, IdentityPlatform
from .operation import Answer, Operation
from .transport import Server, client_gone

JSON_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
    "charset=utf-8"
)
KNOWN_ROLES = frozenset({
    "User.Read.All", "User.ReadWrite.All", "User.ReadBasic.All", "Directory.Read.All",
    "Directory.ReadWrite.All", "Group.Read.All", "Group.ReadWrite.All", "GroupMember.Read.All",
    "GroupMember.ReadWrite.All", "Application.Read.All", "Application.ReadWrite.All",
    "Application.ReadWrite.OwnedBy", "CustomSecAttributeAssignment.Read.All",
    "CustomSecAttributeAssignment.ReadWrite.All", "CustomSecAttributeDefinition.Read.All",
    "CustomSecAttributeDefinition.ReadWrite.All",
})  # fmt: skip


class LoggedRequest(NamedTuple):
    """One request the fake answered: Graph paths start with /v1.0 (a $batch sub-request
    too, with its batch_id set); status None means the connection was dropped.
    answer_lost: the fake processed it (a write was applied) but the client never got
    its answer: a "lost answer" fault (status 504, or None when the connection was
    dropped after processing)."""

    method: str
    path: str
    query: dict[str, str]
    status: int | None
    batch_id: str | None = None
    answer_lost: bool = False


@dataclass(frozen=True)
class AppCredentials:
    """An app registration's client id, secret and certificate files (for msal)."""

    client_id: str
    object_id: str
    secret: str
    key_file: Path
    cert_file: Path
    private_key_pem: str
    certificate_pem: str
    thumbprint: str  # SHA-1 of the certificate, upper-case hex, as the Entra portal shows
    thumbprint_sha256: str


@functools.lru_cache(maxsize=1)
def _shared_tls() -> tuple[trustme.CA, trustme.LeafCert]:
    """One CA and server certificate per test process: key generation is the slow part."""
    ca = trustme.CA(organization_name="persona-sync fake Entra CA")
    return ca, ca.issue_cert("127.0.0.1", "localhost")


@functools.lru_cache(maxsize=4)
def _app_certificate(number: int) -> trustme.LeafCert:
    ca, _ = _shared_tls()
    return ca.issue_cert(
        f"app{number}.persona-sync.invalid",
        common_name=f"persona-sync test app {number}",
        key_type=trustme.KeyType.RSA,
    )


class FakeEntra:
    """The fake tenant and its server. Use as a context manager (or start()/stop()).

    Test API: add_user, remove_user, delete_user, restore_user, set_property, add_group,
    register_app, new_app, grant, define_custom_security_attribute, expire_tokens,
    expire_delta_tokens, reset_delta_sync; data in users, groups, applications; logs in
    requests and writes; failures through faults (see faults.py)."""

    def __init__(
        self,
        tenant_id: str | None = None,
        *,
        tenant_domain: str = "contoso.example",
        page_size: int = 100,
        seed: int = 0,
    ) -> None:
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.tenant_domain = tenant_domain
        self.directory = Directory(self.tenant_id)
        self.faults = Faults(seed)
        self.requests: list[LoggedRequest] = []
        self.server_errors: list[str] = []  # tracebacks of bugs in the fake itself
        self.connections = 0  # TCP connections accepted (keep-alive reuses them)
        self.app: AppCredentials | None = None  # set by the fake_entra fixture
        self.ca, self._leaf = _shared_tls()
        self._page_size = page_size
        self._log_lock = threading.Lock()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._apps_made = 0

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FakeEntra:
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-entra-")
        self.ca_file = str(Path(self._tmp.name) / "fake-entra-ca.pem")
        self.ca.cert_pem.write_to_path(self.ca_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.set_alpn_protocols(["http/1.1"])
        self._leaf.configure_cert(context)
        self._server = Server(self, context)
        self.port = self._server.server_address[1]
        self.origin = f"https://127.0.0.1:{self.port}"
        self.identity = IdentityPlatform(self.directory, self.origin, self.tenant_domain)
        self.api = GraphApi(self.directory, self.graph_url, self._page_size)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"fake-entra-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.close_connections()
            self._server.server_close()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> FakeEntra:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------

    @property
    def authority(self) -> str:
        return f"{self.origin}/{self.tenant_id}"

    @property
    def graph_url(self) -> str:
        return f"{self.origin}/v1.0"

    @property
    def token_endpoint(self) -> str:
        return f"{self.authority}/oauth2/v2.0/token"

    # -- tenant data --------------------------------------------------------------------

    @property
    def users(self) -> dict[str, dict[str, Any]]:
        return self.directory.users

    @property
    def groups(self) -> dict[str, dict[str, Any]]:
        return self.directory.groups

    @property
    def applications(self) -> dict[str, Application]:
        return self.directory.applications

    @property
    def writes(self) -> list[Write]:
        """Property changes applied by PATCHes, in order (set_property is not a write)."""
        return self.directory.writes

    @property
    def open_connections(self) -> int:
        """Client connections the server still holds. A client that died is counted until
        the request it had sent is processed and its connection closed, so 0 means no
        write of an earlier client can still land."""
        return self._server.open_connections if self._server is not None else 0

    def add_user(self, **props: Any) -> str:
        """Create a user from Graph property names (plus manager=<id>); returns its id."""
        return self.directory.add_user(**props)

    def remove_user(self, user_id: str) -> None:
        """Delete a user for good (delta: @removed, reason "deleted")."""
        self.directory.remove_user(user_id)

    def delete_user(self, user_id: str) -> None:
        """Delete a user as Graph's DELETE does: restorable (delta: reason "changed")."""
        self.directory.delete_user(user_id)

    def restore_user(self, user_id: str) -> None:
        """Bring a deleted user back (delta reports it as a user again)."""
        self.directory.restore_user(user_id)

    def set_property(self, user_id: str, name: str, value: Any) -> None:
        """Change a user behind the client's back, as another admin would."""
        self.directory.set_property(user_id, name, value)

    def add_group(self, members: Iterable[str], display_name: str | None = None) -> str:
        return self.directory.add_group(list(members), display_name)

    def define_custom_security_attribute(
        self, attribute_set: str, name: str, type: str = "String"
    ) -> None:
        self.directory.define_custom_security_attribute(attribute_set, name, type)

    def register_app(
        self,
        client_id: str | None = None,
        *,
        secret: str | None = None,
        certificate_pem: str | bytes | None = None,
        roles: Iterable[str] = (),
        consent: bool = True,
        display_name: str | None = None,
    ) -> Application:
        """Register an app: its credentials, the Graph application permissions it was
        granted, and whether an admin consented (without consent its tokens carry no
        roles). The app owns its own application object (for ...OwnedBy)."""
        roles = set(roles)
        if unknown := roles - KNOWN_ROLES:
            raise ValueError(f"unknown Graph application permissions {sorted(unknown)}")
        client_id = client_id or str(uuid.uuid4())
        pem = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
        app = Application(
            client_id=client_id,
            object_id=str(uuid.uuid4()),
            display_name=display_name or f"persona-sync test app {client_id[:8]}",
            secrets=[secret] if secret else [],
            certificates=[x509.load_pem_x509_certificate(pem)] if pem else [],
            roles=roles,
            consent=consent,
            owners={client_id},
        )
        with self.directory.lock:
            self.directory.applications[app.object_id] = app
        return app

    def new_app(
        self,
        directory: Path,
        *,
        roles: Iterable[str] = (),
        consent: bool = True,
        client_id: str | None = None,
    ) -> AppCredentials:
        """Register an app with a secret and an RSA certificate (from the fake's CA) whose
        key and certificate PEM files are written to `directory`."""
        self._apps_made += 1
        leaf = _app_certificate(self._apps_made % 4)
        key_pem = leaf.private_key_pem.bytes().decode()
        cert_pem = leaf.cert_chain_pems[0].bytes().decode()
        secret = f"fake~{uuid.uuid4().hex}"
        app = self.register_app(
            client_id, secret=secret, certificate_pem=cert_pem, roles=roles, consent=consent
        )
        directory.mkdir(parents=True, exist_ok=True)
        key_file = directory / f"{app.client_id}.key.pem"
        cert_file = directory / f"{app.client_id}.cert.pem"
        key_file.write_text(key_pem)
        cert_file.write_text(cert_pem)
        der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(Encoding.DER)
        return AppCredentials(
            client_id=app.client_id,
            object_id=app.object_id,
            secret=secret,
            key_file=key_file,
            cert_file=cert_file,
            private_key_pem=key_pem,
            certificate_pem=cert_pem,
            thumbprint=hashlib.sha1(der).hexdigest().upper(),  # noqa: S324 - x5t is SHA-1
            thumbprint_sha256=hashlib.sha256(der).hexdigest().upper(),
        )

    def grant(self, client_id: str, roles: Iterable[str], consent: bool = True) -> None:
        """Replace an app's granted permissions (tokens issued before keep their roles)."""
        app = self.directory.application_by_client_id(client_id)
        if app is None:
            raise KeyError(client_id)
        app.roles, app.consent = set(roles), consent

    def expire_tokens(self) -> None:
        """Every access token issued so far is now expired (Graph answers 401)."""
        self.identity.expire_tokens()

    @property
    def identity_clock_offset(self) -> float:
        """Seconds the identity platform's clock runs ahead of Graph's and the machine's
        (negative: behind). Beyond the token lifetime behind, every token is expired when
        it reaches Graph; more than 5 minutes ahead, not yet valid; client assertions
        (certificate credentials) more than 5 minutes off get AADSTS700024."""
        return self.identity.clock_offset

    @identity_clock_offset.setter
    def identity_clock_offset(self, seconds: float) -> None:
        self.identity.clock_offset = seconds

    def expire_delta_tokens(self) -> None:
        """Every deltaLink so far now gets 400 syncStateNotFound."""
        with self.directory.lock:
            self.api.delta.expire_tokens()

    def reset_delta_sync(self) -> None:
        """Every deltaLink so far now gets 410 Gone (synchronization reset)."""
        with self.directory.lock:
            self.api.delta.reset_sync()

    def count(self, method: str, path: str | None = None) -> int:
        """How many Graph requests and sub-requests with this method (and this exact
        path, e.g. "/v1.0/users/ID") were answered (dropped ones are not counted)."""
        return sum(
            1
            for r in self.requests
            if r.method == method
            and r.path.startswith("/v1.0")
            and r.status is not None
            and (path is None or r.path == path)
        )

    # -- serving (called from connection threads) ---------------------------------------

    def serve(
        self,
        method: str,
        raw_path: str,
        headers: dict[str, str],
        body: bytes,
        connection: socket.socket,
    ) -> tuple[int, dict[str, str], bytes] | None:
        """The reply (status, headers, body), or None to drop the connection."""
        split = urllib.parse.urlsplit(raw_path)
        path = urllib.parse.unquote(split.path)
        query = dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        if path == "/v1.0" or path.startswith("/v1.0/"):
            return self._serve_graph(
                method, path[len("/v1.0") :] or "/", query, headers, body, connection
            )
        return self._serve_identity(method, path, query, headers, body)

    def _log(self, entry: LoggedRequest) -> None:
        with self._log_lock:
            self.requests.append(entry)

    def _serve_identity(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes]:
        discovery = re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", path)
        token = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", path)
        if discovery and method == "GET":
            answer = self.identity.openid_configuration(discovery.group(1))
        elif token and method == "POST":
            form = dict(urllib.parse.parse_qsl(body.decode(errors="replace")))
            answer = self.identity.issue_token(token.group(1), form, headers.get("authorization"))
        else:
            answer = None
        status = answer.status if answer else 404
        self._log(LoggedRequest(method, path, query, status))
        payload = answer.body if answer else {"error": "not_found", "error_description": path}
        return (
            status,
            {
                "Content-Type": "application/json; charset=utf-8",
                "Cache-Control": "no-store, no-cache",
            },
            json.dumps(payload).encode(),
        )

    def _authenticate(self, headers: dict[str, str]) -> Grant:
        authorization = headers.get("authorization", "")
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        if not token:
            raise errors.unauthenticated(errors.ACCESS_TOKEN_EMPTY)
        grant = self.identity.grant_for(token)
        if grant is None:
            raise errors.unauthenticated(errors.ACCESS_TOKEN_INVALID)
        now = time.time()  # Graph's clock: the machine's, not the identity platform's
        if grant.expires_at <= now:
            raise errors.unauthenticated(errors.ACCESS_TOKEN_EXPIRED)
        if grant.not_before > now + TOKEN_CLOCK_SKEW:
            raise errors.unauthenticated(errors.ACCESS_TOKEN_NOT_YET_VALID)
        if not grant.roles:
            raise errors.unauthenticated(errors.NO_ROLES)
        return grant

    def _serve_graph(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        connection: socket.socket,
    ) -> tuple[int, dict[str, str], bytes] | None:
        entry = functools.partial(LoggedRequest, method, "/v1.0" + path, query)
        client_request_id = headers.get("client-request-id")
        is_batch = method == "POST" and path.rstrip("/").lower() == "/$batch"
        try:
            grant = self._authenticate(headers)
            envelope = Operation(method, path, query, headers, body, grant)
            requests = batch.parse(envelope) if is_batch else []
        except errors.GraphError as error:
            self._log(entry(error.status))
            return self._encode(
                Answer(error.status, error.body(client_request_id), error.headers),
                client_request_id,
            )
        methods = [r.method for r in requests] if is_batch else [method]
        if self.faults.latency > 0:
            time.sleep(self.faults.latency)
            if client_gone(connection):
                self._log(entry(None))
                return None
        fault = self.faults.request_fault(methods)
        if fault == "drop" or (fault == "slow" and self._hold(connection)):
            self._log(entry(None))
            return None
        if is_batch:
            outcomes = [self.faults.operation_outcome(r.method) for r in requests]
            if "drop" in outcomes:
                self._log(entry(None))
                return None
            lost = _lost(fault, outcomes)
            answer = batch.execute(
                envelope, requests, lambda op, i: self._run(op, outcomes[i], lost)
            )
            if lost is None:
                self._log(entry(answer.status))
            elif lost == "drop":
                self._log(entry(None, answer_lost=True))
                return None
            else:
                answer = _gateway_timeout(client_request_id)
                self._log(entry(504, answer_lost=True))
        else:
            outcome = self.faults.operation_outcome(method)
            if outcome == "drop":
                self._log(entry(None))
                return None
            lost = _lost(fault, [outcome])
            answer = self._run(envelope, outcome, lost)
            if lost == "drop":
                return None
        return self._encode(answer, client_request_id)

    def _hold(self, connection: socket.socket) -> bool:
        """A "slow" request: wait up to slow_seconds; True if the client gave up meanwhile
        (the request is then dropped unprocessed)."""
        deadline = time.monotonic() + self.faults.slow_seconds
        while time.monotonic() < deadline:
            if client_gone(connection):
                return True
            time.sleep(0.01)
        return False

    def _run(
        self, operation: Operation, outcome: Outcome | None, lost: str | None = None
    ) -> Answer:
        """One operation, after its fault was decided: nothing is applied on a fault,
        except the "lost answer" ones (applied, then answered 504 or not at all: `lost`
        says how the whole request's answer is lost, if it is)."""
        client_request_id = operation.headers.get("client-request-id")
        error: errors.GraphError | None = None
        if outcome == 429:
            error = errors.too_many_requests(self.faults.retry_after)
        elif outcome == 503:
            error = errors.service_unavailable(self.faults.retry_after)
        elif (retry_after := self.faults.admit_write(operation.method)) is not None:
            error = errors.too_many_requests(retry_after)
        if error is not None:
            answer = Answer(error.status, error.body(client_request_id), error.headers)
        else:
            with self.directory.lock:
                try:
                    answer = self.api.handle(operation)
                except errors.GraphError as refused:
                    answer = Answer(
                        refused.status, refused.body(client_request_id), refused.headers
                    )
                except Exception:  # a bug in the fake: answer 500, keep it for the fixture
                    self.server_errors.append(traceback.format_exc())
                    answer = Answer(
                        500,
                        errors.error_body(
                            "generalException", "The fake Graph server failed; see server_errors."
                        ),
                    )
        for action in self.faults.answered(operation.method):
            action()
        status: int | None = answer.status
        if outcome == "applied-504" or (lost == "504" and operation.batch_id is None):
            answer = _gateway_timeout(client_request_id)
            status = 504
        if lost == "drop" or (lost == "504" and operation.batch_id is not None):
            status = None  # the whole answer is lost: the client sees no sub-response
        self._log(
            LoggedRequest(
                operation.method,
                "/v1.0" + operation.path,
                operation.query,
                status,
                operation.batch_id,
                answer_lost=lost is not None or outcome == "applied-504",
            )
        )
        return answer

    @staticmethod
    def _encode(answer: Answer, client_request_id: str | None) -> tuple[int, dict[str, str], bytes]:
        headers = {
            "Cache-Control": "no-cache",
            "request-id": str(uuid.uuid4()),
            "client-request-id": client_request_id or str(uuid.uuid4()),
            **answer.headers,
        }
        payload = b""
        if answer.body is not None:
            headers["Content-Type"] = JSON_TYPE
            headers["OData-Version"] = "4.0"
            payload = json.dumps(answer.body).encode()
        return answer.status, headers, payload


def _lost(fault: str | None, outcomes: list[Outcome | None]) -> str | None:
    """How a request's whole answer is lost after processing: "drop", "504" or None."""
    if fault == "applied-drop" or "applied-drop" in outcomes:
        return "drop"
    if fault == "applied-504":
        return "504"
    return None


def _gateway_timeout(client_request_id: str | None) -> Answer:
    error = errors.gateway_timeout()
    return Answer(error.status, error.body(client_request_id), error.headers)
