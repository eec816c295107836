"""The Microsoft identity platform side: OpenID discovery and the v2.0 token endpoint for
the client credentials grant, with a client secret or a certificate (private_key_jwt).

Tokens are opaque random strings mapped here to the app and the Graph application
permissions ("roles") it had when the token was issued, like the roles claim of a real
token, and to their validity period (nbf/exp) by the identity platform's clock.
`clock_offset` sets that clock apart from the machine's (which Graph and clients use):
tokens are then already expired, or not yet valid, when they reach Graph, and client
assertions are checked against the offset clock (AADSTS700024 when too far apart).

An app whose permissions were never admin-consented still gets a token, without roles,
exactly as Entra does for the client credentials grant; Graph then refuses it (401,
"Either scp or roles claim need to be present in the token.").
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .directory import Application, Directory
from .errors import AADSTS

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_RESOURCES = ("https://graph.microsoft.com", "https://graph.microsoft.com/", GRAPH_APP_ID)
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME = 3599
CLOCK_SKEW = 300  # seconds of clock difference tolerated in assertion nbf/exp


@dataclass(frozen=True)
class Grant:
    """What an access token stands for."""

    client_id: str
    roles: frozenset[str]
    expires_at: float
    not_before: float = 0.0


@dataclass(frozen=True)
class TokenAnswer:
    status: int
    body: dict[str, Any]


class TokenError(Exception):
    def __init__(self, status: int, error: str, code: int, **fields: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.code = code
        self.fields = fields


class IdentityPlatform:
    """Discovery documents and token issuance for one tenant."""

    def __init__(self, directory: Directory, origin: str, tenant_domain: str) -> None:
        self.directory = directory
        self.origin = origin  # https://127.0.0.1:PORT
        self.tenant_domain = tenant_domain
        self.tokens: dict[str, Grant] = {}
        self.clock_offset = 0.0  # seconds this platform's clock runs ahead of the machine's
        self._lock = threading.Lock()

    def now(self) -> float:
        """The identity platform's clock."""
        return time.time() + self.clock_offset

    def knows_tenant(self, tenant: str) -> bool:
        return tenant.lower() in {self.directory.tenant_id.lower(), self.tenant_domain.lower()}

    def token_endpoint(self, tenant: str) -> str:
        return f"{self.origin}/{tenant}/oauth2/v2.0/token"

    # -- discovery ----------------------------------------------------------------------

    def openid_configuration(self, tenant: str) -> TokenAnswer:
        """GET /{tenant}/v2.0/.well-known/openid-configuration; unknown tenant -> 400."""
        if not self.knows_tenant(tenant):
            # the discovery document answers an unknown tenant with error invalid_tenant
            return self._error(TokenError(400, "invalid_tenant", 90002, tenant=tenant))
        tid = self.directory.tenant_id
        base = f"{self.origin}/{tid}"
        return TokenAnswer(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{self.origin}/{tid}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{base}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": f"{self.origin}/oidc/userinfo",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "roles"],
                "tenant_region_scope": "EU",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            },
        )

    # -- token endpoint -----------------------------------------------------------------

    def issue_token(
        self, tenant: str, form: dict[str, str], authorization: str | None
    ) -> TokenAnswer:
        """POST /{tenant}/oauth2/v2.0/token with the client credentials grant."""
        try:
            grant = self._authenticate(tenant, form, authorization)
        except TokenError as error:
            return self._error(error)
        token = secrets.token_urlsafe(48)
        with self._lock:
            self.tokens[token] = grant
        return TokenAnswer(
            200,
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": token,
            },
        )

    def grant_for(self, token: str) -> Grant | None:
        with self._lock:
            return self.tokens.get(token)

    def expire_tokens(self) -> None:
        """Make every issued token expired (Graph then answers 401)."""
        with self._lock:
            self.tokens = {
                t: Grant(g.client_id, g.roles, 0.0, g.not_before) for t, g in self.tokens.items()
            }

    def _authenticate(self, tenant: str, form: dict[str, str], authorization: str | None) -> Grant:
        if not self.knows_tenant(tenant):
            raise TokenError(400, "invalid_request", 90002, tenant=tenant)
        client_id = form.get("client_id", "")
        secret = form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:]).decode()
            except (binascii.Error, UnicodeDecodeError):
                decoded = ":"
            client_id, _, secret = decoded.partition(":")
        grant_type = form.get("grant_type")
        if not grant_type:
            raise TokenError(400, "invalid_request", 900144, parameter="grant_type")
        if grant_type != "client_credentials":
            raise TokenError(400, "unsupported_grant_type", 70003, grant_type=grant_type)
        if not client_id:
            raise TokenError(400, "invalid_request", 900144, parameter="client_id")
        with self.directory.lock:
            app = self.directory.application_by_client_id(client_id)
        if app is None:
            raise TokenError(
                400, "unauthorized_client", 700016, client_id=client_id, tenant=self.tenant_domain
            )
        if secret is not None:
            if not any(hmac.compare_digest(secret, known) for known in app.secrets):
                raise TokenError(401, "invalid_client", 7000215, client_id=client_id)
        elif form.get("client_assertion_type") == JWT_BEARER and form.get("client_assertion"):
            self._verify_assertion(tenant, app, form["client_assertion"])
        else:
            raise TokenError(401, "invalid_client", 7000218)
        self._check_scope(tenant, form.get("scope"))
        roles = frozenset(app.roles) if app.consent else frozenset()
        now = self.now()
        return Grant(app.client_id, roles, now + TOKEN_LIFETIME, now)

    def _check_scope(self, tenant: str, scope: str | None) -> None:
        if not scope:
            raise TokenError(400, "invalid_request", 900144, parameter="scope")
        reserved = {"openid", "profile", "offline_access", "email"}
        requested = [s for s in scope.split() if s not in reserved]
        accepted = {f"{r.rstrip('/')}/.default".lower() for r in GRAPH_RESOURCES}
        accepted |= {"https://graph.microsoft.com//.default", f"{self.origin}/.default"}
        for item in requested or [scope]:
            if item.lower() in accepted:
                continue
            if not item.endswith("/.default"):
                raise TokenError(400, "invalid_scope", 1002012, scope=item)
            raise TokenError(
                400,
                "invalid_resource",
                500011,
                resource=item.removesuffix("/.default"),
                tenant=tenant,
            )

    def _verify_assertion(self, tenant: str, app: Application, assertion: str) -> None:
        """Check a client assertion JWT as Entra does: the signature with the registered
        certificate named by x5t / x5t#S256 (RS256 or PS256), then iss/sub/aud/exp/nbf."""
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header = json.loads(_unb64(header_b64))
            claims = json.loads(_unb64(payload_b64))
            signature = _unb64(signature_b64)
        except (ValueError, binascii.Error):
            raise TokenError(
                401, "invalid_client", 700027, reason="The assertion is not a JWT.", thumbprint=""
            ) from None
        # base64url of the certificate's SHA-256 (x5t#S256) or SHA-1 (x5t) hash; msal keeps
        # the "=" padding, other clients drop it
        thumbprint = str(header.get("x5t#S256") or header.get("x5t") or "").rstrip("=")
        certificate = None
        for candidate in app.certificates:
            if thumbprint in {
                _b64(candidate.fingerprint(hashes.SHA256())),
                _b64(candidate.fingerprint(hashes.SHA1())),  # noqa: S303 - x5t is SHA-1
            }:
                certificate = candidate
        if certificate is None:
            raise TokenError(
                401,
                "invalid_client",
                700027,
                reason="The key was not found.",
                thumbprint=thumbprint,
            )
        key = certificate.public_key()
        signed = f"{header_b64}.{payload_b64}".encode()
        algorithm = header.get("alg")
        try:
            if not isinstance(key, rsa.RSAPublicKey) or algorithm not in {"RS256", "PS256"}:
                raise InvalidSignature
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if algorithm == "RS256"
                else padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)
            )
            key.verify(signature, signed, pad, hashes.SHA256())
        except InvalidSignature:
            raise TokenError(
                401,
                "invalid_client",
                700027,
                reason="The signature does not verify.",
                thumbprint=thumbprint,
            ) from None
        if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
            raise TokenError(401, "invalid_client", 700021)
        audiences = {
            self.token_endpoint(tenant),
            self.token_endpoint(self.directory.tenant_id),
            f"{self.origin}/{self.directory.tenant_id}/oauth2/token",
            f"{self.origin}/{self.directory.tenant_id}/v2.0",
        }
        if claims.get("aud") not in audiences:
            raise TokenError(401, "invalid_client", 700023)
        now = self.now()
        expires, not_before = claims.get("exp"), claims.get("nbf", claims.get("iat", now))
        if (
            not isinstance(expires, int | float)
            or expires <= now - CLOCK_SKEW
            or (isinstance(not_before, int | float) and not_before > now + CLOCK_SKEW)
        ):
            raise TokenError(401, "invalid_client", 700024)

    def _error(self, error: TokenError) -> TokenAnswer:
        now = datetime.datetime.now(datetime.UTC)
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        text = AADSTS[error.code].format(**error.fields)
        description = (
            f"AADSTS{error.code}: {text}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {now:%Y-%m-%d %H:%M:%SZ}"
        )
        return TokenAnswer(
            error.status,
            {
                "error": error.error,
                "error_description": description,
                "error_codes": [error.code],
                "timestamp": f"{now:%Y-%m-%d %H:%M:%SZ}",
                "trace_id": trace_id,
                "correlation_id": correlation_id,
                "error_uri": f"{self.origin}/error?code={error.code}",
            },
        )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
