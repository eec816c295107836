"""The app's identity: its credential (certificate or secret) and its token from msal.

msal is the one authentication library: it caches the app token and renews it before it
expires. Its HTTP goes through a requests.Session that trusts ``ca_file`` (ignoring
REQUESTS_CA_BUNDLE) and gives every request a timeout. Entra's refusals (AADSTS codes) and
failed connections become one line that names the setting to fix; :func:`unreachable`
does the same for Graph's connections.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from persona_sync.config import EntraDirectoryConfig
from persona_sync.errors import ConfigError, DirectoryError
from persona_sync.secrets import Secret


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


class TokenSource:
    """msal's confidential client for one app, created on first use; thread-safe."""

    def __init__(self, spec: EntraDirectoryConfig, credential: Credential) -> None:
        self.spec = spec
        self.credential = credential
        self._app: Any = None
        self._token_lock = threading.Lock()

    @property
    def scope(self) -> str:
        return f"{self.spec.graph_endpoint.rstrip('/')}/.default"

    def token(self) -> str:
        """An app token from msal (cached by msal); Entra's errors explained."""
        with self._token_lock:
            app = self._msal()
            try:
                result = app.acquire_token_for_client([self.scope])
            except Exception as exc:  # noqa: BLE001 - msal and requests raise many types
                raise DirectoryError(self._token_failure(exc)) from None
        if "access_token" not in result:
            raise DirectoryError(self._token_error(result))
        return str(result["access_token"])

    def _msal(self) -> Any:
        import msal

        if self._app is None:
            require_https(self.spec.authority_host, "authority_host")
            ca_file = check_ca_file(self.spec)
            session = _timed_session(self.spec.timeout, ca_file)
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
            except Exception as exc:  # noqa: BLE001 - requests' transport errors
                raise DirectoryError(self._token_failure(exc)) from None
        return self._app

    def _token_failure(self, exc: Exception) -> str:
        import requests

        if isinstance(exc, requests.RequestException) or failure_kind(exc) != "other":
            return unreachable(exc, self.spec.authority_host, "authority_host", self.spec)
        return f"cannot get a token from {self.spec.authority_host}: {type(exc).__name__}: {exc}"

    def forget(self) -> None:
        """Drop the cached token: the next token() asks Entra ID for a new one."""
        with self._token_lock:
            if self._app is not None:
                self._app.remove_tokens_for_client()

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
        if "AADSTS700024" in text:
            return (
                "Entra ID refused the certificate credential: its signed assertion is not "
                "within its valid time range (AADSTS700024); this machine's clock is off by "
                "more than 5 minutes: set it right (NTP)"
            )
        first = text.splitlines()[0] if text else ""
        return f"Entra ID refused the token request: {result.get('error')} ({code}): {first}"


def _timed_session(timeout: float, ca_file: str | None) -> Any:
    """A requests.Session whose every request has a timeout (requests has no session-wide
    timeout, and msal passes none when given a session)."""
    import requests

    class Session(requests.Session):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            if kwargs.get("timeout") is None:
                kwargs["timeout"] = timeout
            return super().request(method, url, *args, **kwargs)

    session = Session()
    if ca_file is not None:
        session.trust_env = False  # else REQUESTS_CA_BUNDLE would override verify
        session.verify = ca_file
    return session


def require_https(url: str, setting: str) -> None:
    """Refuse an endpoint that would carry the app credential or its token in clear text
    (plain http is left to Graph on this machine only: local test servers)."""
    parts = urlsplit(url)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme == "https" or (
        setting == "graph_endpoint" and local and parts.scheme == "http"
    ):
        return
    if parts.scheme == "http":
        raise ConfigError(
            f"directory.{setting} is {url}: it must be an https:// URL (persona-sync sends "
            "the app's credential and tokens only over TLS), e.g. "
            + (
                "https://login.microsoftonline.com"
                if setting == "authority_host"
                else "https://graph.microsoft.com"
            )
        )
    raise ConfigError(f"directory.{setting} is {url}: it must be an https:// URL")


def check_ca_file(spec: EntraDirectoryConfig) -> str | None:
    """directory.ca_file as a path that holds at least one PEM certificate, or None."""
    if spec.ca_file is None:
        return None
    path = str(spec.ca_file)
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except FileNotFoundError:
        raise ConfigError(f"directory.ca_file {path}: no such file") from None
    except ssl.SSLError:  # before OSError, its base class
        raise ConfigError(
            f"directory.ca_file {path} holds no certificate: give the CA's certificate in PEM "
            "(-----BEGIN CERTIFICATE-----)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"directory.ca_file {path}: cannot read it ({exc.strerror})") from None
    return path


def unreachable(exc: BaseException, endpoint: str, setting: str, spec: EntraDirectoryConfig) -> str:
    """One line for a connection that failed before any answer."""
    host = host_of(endpoint)
    kind = failure_kind(exc)
    if kind == "tls":
        reason = _tls_reason(exc)
        if spec.ca_file is not None:
            advice = (
                f"directory.ca_file ({spec.ca_file}) does not hold the CA that signed it; set "
                "directory.ca_file to that CA's certificate (PEM)"
            )
        else:
            advice = (
                "if a private CA or a TLS-inspecting proxy signs it, set directory.ca_file to "
                "that CA's certificate (PEM)"
            )
        return f"the TLS certificate of {host} is not trusted ({reason}): {advice}"
    if kind == "dns":
        return (
            f"cannot resolve the host name {urlsplit(endpoint).hostname} "
            f"(directory.{setting}): check the name and this machine's DNS"
        )
    if kind == "refused":
        return f"cannot connect to {host} (directory.{setting}): connection refused"
    if kind == "connect":
        return f"cannot connect to {host} (directory.{setting}): timed out"
    if kind == "timeout":
        return (
            f"{host} (directory.{setting}) did not answer within {spec.timeout:g} s "
            "(directory.timeout)"
        )
    return f"cannot reach {host} (directory.{setting}): {type(exc).__name__}: {exc}"


def host_of(endpoint: str) -> str:
    return urlsplit(endpoint).netloc or endpoint


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it wraps (__cause__, __context__, requests' and urllib3's
    wrapped reasons)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        inner += list(current.args)
        stack.extend(e for e in inner if isinstance(e, BaseException))


def failure_kind(exc: BaseException) -> str:
    """tls, dns, refused, connect (timed out connecting), timeout (no answer in time) or
    other."""
    causes = list(_causes(exc))
    if any(isinstance(c, ssl.SSLCertVerificationError) for c in causes) or any(
        _VERIFY_FAILED.search(str(c)) for c in causes
    ):
        return "tls"
    if any(isinstance(c, socket.gaierror) for c in causes) or any(
        type(c).__name__ == "NameResolutionError" for c in causes
    ):
        return "dns"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "refused"
    names = {type(c).__name__ for c in causes}
    if names & {"ConnectTimeout", "ConnectTimeoutError"}:
        return "connect"
    if any(isinstance(c, TimeoutError) for c in causes) or any("Timeout" in n for n in names):
        return "timeout"
    return "other"


# How a failed certificate check reads once a library has turned it into text (urllib3's
# "Caused by SSLError(...)", pyOpenSSL's "bad handshake"): "certificate verify failed:
# unable to get local issuer certificate (_ssl.c:1006)".
_VERIFY_FAILED = re.compile(r"CERTIFICATE_VERIFY_FAILED|certificate verify failed", re.I)
_VERIFY_REASON = re.compile(r"certificate verify failed: ([^()'\"\]]+?)\s*(?:\(_ssl|['\")\]]|$)")


def _tls_reason(exc: BaseException) -> str:
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return str(cause.verify_message or cause.reason or "certificate verify failed")
    for cause in _causes(exc):
        found = _VERIFY_REASON.search(str(cause))
        if found:
            return found.group(1)
    return "certificate verify failed"


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
