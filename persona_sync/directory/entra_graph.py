"""The connection to Microsoft Graph: msgraph-sdk's request adapter with the app token from
entra_auth, retries budgeted by time, and what a failed request means.

Every request goes through the SDK's adapter (authentication, redirects, telemetry) with
the SDK's RetryHandler switched off: kiota would resend a whole ``$batch`` of PATCHes on
429/503/504 without reading back. Retries are ours instead, budgeted by time
(``retry_budget_seconds``) and honouring every Retry-After. A request gets one of three
outcomes: a :class:`Reply` (any HTTP status), :class:`Lost` (no answer: the server may or
may not have processed it), or a :class:`~persona_sync.errors.DirectoryError` for what
retrying cannot fix (an untrusted certificate, an unknown host, a refused token).

A 401 is settled here for every caller: after a token Graph accepted before, the cached
token is dropped and a new one requested once; a token refused right after it was issued
stops the run with the reason (no permissions consented, or clocks that disagree).

A wait of NOTICE_AFTER seconds or more becomes a notice (how long, and why: "waiting 12 s:
Graph throttled 40 of 200 writes (429, Retry-After)"), once per stretch of waiting however
many requests wait in parallel. Time comes from a :class:`Clock`, which tests replace so
that a 12-second Retry-After takes no time.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from persona_sync.config import EntraDirectoryConfig
from persona_sync.directory.entra_auth import (
    Credential,
    TokenSource,
    check_ca_file,
    failure_kind,
    host_of,
    require_https,
    unreachable,
)
from persona_sync.errors import DirectoryError
from persona_sync.logs import get_logger
from persona_sync.notices import notice

log = get_logger(__name__)

BATCH_LIMIT = 20
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
NOTICE_AFTER = 5.0  # seconds: a shorter wait passes unremarked
NO_ROLES = (
    "Graph refused the token: it carries no application permissions; grant "
    "User.ReadWrite.All to the app and give admin consent"
)


@dataclass(frozen=True)
class Reply:
    """One HTTP answer (or one $batch sub-response): status, JSON body, lower-case headers."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def code(self) -> str:
        return str(self._error.get("code") or "")

    @property
    def message(self) -> str:
        return str(self._error.get("message") or "")

    @property
    def _error(self) -> dict[str, Any]:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error if isinstance(error, dict) else {}

    def retry_after(self) -> float | None:
        """Seconds from a Retry-After header (a number or an HTTP date), if any."""
        value = self.headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())

    def describe(self) -> str:
        return f"Graph answered {self.status} {self.code}: {self.message}".rstrip(": ")


@dataclass(frozen=True)
class BatchAnswer:
    """A $batch: the envelope's reply (None when it was lost) and the sub-responses."""

    envelope: Reply | None
    replies: dict[str, Reply]
    problem: str = ""  # why the envelope was lost


class Lost(Exception):
    """No answer came (connection dropped or reset, timeout): the request may or may not
    have been processed."""


class Backoff:
    """Waits between retries: the longest Retry-After the server gave (never shorter),
    else 0.25 s doubling with each such round up to ``cap``; a little jitter so parallel
    retries spread out. ``hinted``: the last delay honoured a Retry-After."""

    def __init__(self, cap: float) -> None:
        self.cap = cap
        self.unhinted = 0
        self.hinted = False

    def delay(self, hints: Sequence[float | None]) -> float:
        given = [h for h in hints if h is not None]
        self.hinted = bool(given)
        if given:
            base = max(given)
        else:
            base = min(self.cap, 0.25 * 2**self.unhinted)
            self.unhinted += 1
        return base + random.uniform(0, min(0.25, base / 10 + 0.05))


class Clock:
    """The time retries and budgets see: monotonic seconds and an async sleep."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class Tally:
    """How Graph answered one kind of request (reads or writes) in this run, for the
    notice that explains a wait."""

    noun: str
    sent: int = 0
    problems: Counter[int | str] = field(default_factory=Counter)  # status, or "lost"
    last: int | str | None = None

    def record(self, replies: Iterable[Reply | None]) -> None:
        """Count answers (None: no answer came)."""
        for reply in replies:
            self.sent += 1
            problem: int | str | None = "lost" if reply is None else reply.status
            if problem == "lost" or problem in RETRIED_STATUSES:
                self.problems[problem] += 1
                self.last = problem

    def why(self, hinted: bool) -> str:
        """Why the run waits, after the latest kind of problem: "Graph throttled 40 of
        200 writes (429, Retry-After)"."""
        if self.last is None:
            return f"retrying {self.noun}"
        count = self.problems[self.last]
        share = f"{count} of {self.sent} {self.noun}"
        if self.last == "lost":
            return f"Graph did not answer {share}"
        hint = ", Retry-After" if hinted else ""
        if self.last == 429:
            return f"Graph throttled {share} (429{hint})"
        return f"Graph could not serve {share} ({self.last}{hint})"


class GraphClient:
    """msal + the SDK's adapter for one tenant, with our retries and error translation."""

    def __init__(
        self, spec: EntraDirectoryConfig, credential: Credential, clock: Clock | None = None
    ) -> None:
        self.spec = spec
        self.clock = clock or Clock()
        self.notice_after = NOTICE_AFTER
        self.reads = Tally("reads")
        self.writes = Tally("writes")
        self._noticed_until = float("-inf")
        self.tokens = TokenSource(spec, credential)
        self._adapter: Any = None
        self._http: Any = None
        self._renew_lock: asyncio.Lock | None = None
        self._generation = 0  # bumped each time the cached token is dropped after a 401
        self._proven = False  # Graph accepted a token of the current generation
        self._answered = False  # Graph answered something: connect failures are transient

    @property
    def budget(self) -> float:
        return float(self.spec.retry_budget_seconds)

    def token(self) -> str:
        return self.tokens.token()

    def waiting(self, seconds: float, why: str) -> None:
        """Say that the run waits ``seconds`` and why, if that is worth a notice and no
        notice covers this stretch yet (parallel requests waiting out the same throttling
        say it once)."""
        now = self.clock.now()
        if seconds < self.notice_after or now + seconds <= self._noticed_until + 1.0:
            return
        self._noticed_until = now + seconds
        notice(f"waiting {round(seconds)} s: {why}")

    async def pause(self, seconds: float, why: str) -> None:
        self.waiting(seconds, why)
        await self.clock.sleep(seconds)

    # --- HTTP ---------------------------------------------------------------------------

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

            client = self
            host = urlsplit(self.spec.graph_endpoint).hostname or ""

            class TokenProvider(AccessTokenProvider):
                def __init__(self) -> None:
                    self.hosts = AllowedHostsValidator([host])

                async def get_authorization_token(self, uri: str, context: Any = None) -> str:
                    if not self.hosts.is_url_host_valid(uri):
                        return ""
                    return await asyncio.to_thread(client.token)

                def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
                    return self.hosts

            require_https(self.spec.graph_endpoint, "graph_endpoint")
            context = ssl.create_default_context()
            ca_file = check_ca_file(self.spec)
            if ca_file is not None:
                context.load_verify_locations(cafile=ca_file)
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
            # Creating the client registers the SDK's JSON (de)serializers.
            from msgraph.graph_service_client import GraphServiceClient

            GraphServiceClient(request_adapter=self._adapter)
        return self._adapter

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
            self._adapter = None

    async def send(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """One request (a 401 is settled first: see the module docstring); raises Lost
        when no answer came, DirectoryError for what no retry can fix."""
        for _ in range(3):
            generation = self._generation
            reply = await self._send_once(method, url, body, headers or {})
            if reply.status != 401:
                if generation == self._generation:
                    self._proven = True
                return reply
            await self.unauthorized(generation, reply)
        raise DirectoryError(self._refused_token(reply))

    async def unauthorized(self, generation: int, reply: Reply) -> None:
        """After a 401 to a request sent with the token of ``generation``: renew the
        token once, or raise when a token Graph never accepted was refused."""
        if self._renew_lock is None:
            self._renew_lock = asyncio.Lock()
        async with self._renew_lock:
            if generation != self._generation:
                return  # renewed meanwhile: try again with the new token
            if not self._proven:
                raise DirectoryError(self._refused_token(reply))
            log.info("entra_token_renewed", reason=reply.message)
            # Forget, then count: a request that sees the new generation asks for its
            # token after the old one is gone.
            await asyncio.to_thread(self.tokens.forget)
            self._generation += 1
            self._proven = False

    def _refused_token(self, reply: Reply) -> str:
        message = reply.message
        if not message or "roles claim" in message:
            return NO_ROLES  # a token without application permissions (none consented)
        if "lifetime validation failed" in message.lower():
            state = "not yet valid" if "not yet valid" in message.lower() else "expired"
            return (
                f"Graph refused a token just issued by {host_of(self.spec.authority_host)} as "
                f"{state} ({message}): the clocks of the token service and of Graph disagree "
                "(clock skew); check that directory.authority_host and graph_endpoint belong "
                "to the same cloud, and retry later"
            )
        return (
            f"Graph refused the token ({reply.code}: {message}); check directory.tenant_id, "
            "client_id and graph_endpoint"
        )

    async def _send_once(
        self, method: str, url: str, body: Any, headers: Mapping[str, str]
    ) -> Reply:
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation
        from kiota_http.middleware.options import RetryHandlerOption

        adapter = self._client()
        info = RequestInformation(Method[method])
        info.url = url if url.startswith("http") else f"{adapter.base_url}{url}"
        info.headers.try_add("Accept", "application/json")
        for name, value in headers.items():
            info.headers.try_add(name, value)
        # Our retries, not kiota's: its RetryHandler would resend a $batch of PATCHes.
        info.add_request_options([RetryHandlerOption(0, 0, should_retry=False)])
        if body is not None:
            info.headers.try_add("Content-Type", "application/json")
            info.content = json.dumps(body).encode()
        span = adapter.start_tracing_span(info, method)
        try:
            response = await adapter.get_http_response_message(info, span)
        except DirectoryError:
            raise  # from the token provider
        except Exception as exc:  # noqa: BLE001 - httpx/httpcore/kiota transport errors
            raise self._failure(exc) from None
        finally:
            span.end()
        self._answered = True
        try:
            parsed = json.loads(response.content) if response.content else None
        except ValueError:
            parsed = None
        headers = {k.lower(): v for k, v in response.headers.items()}
        return Reply(response.status_code, parsed, headers)

    def _failure(self, exc: Exception) -> Exception:
        """Lost, or DirectoryError when retrying cannot help: an untrusted certificate,
        and before Graph ever answered, an unknown host or a refused connection."""
        import httpx

        kind = failure_kind(exc)
        if kind == "tls" or (kind in ("dns", "refused", "connect") and not self._answered):
            return DirectoryError(
                unreachable(exc, self.spec.graph_endpoint, "graph_endpoint", self.spec)
            )
        if isinstance(exc, httpx.TransportError | OSError) or type(exc).__name__ in (
            "ResponseError",
        ):
            return Lost(f"{type(exc).__name__}: {exc}".rstrip(": "))
        return exc

    # --- retried reads ------------------------------------------------------------------

    async def get(self, url: str) -> Any:
        """A GET, retried within the budget on 429/5xx and lost answers; its JSON."""
        reply = await self.fetch(url)
        if not reply.ok:
            raise DirectoryError(graph_error(reply))
        return reply.body

    async def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> Reply:
        """A GET, retried within the budget on 429/5xx and lost answers; the final reply:
        a success, or an error that no retry can fix (the caller decides what it means)."""
        deadline = self.clock.now() + self.budget
        backoff = Backoff(self.spec.retry_cap)
        while True:
            try:
                reply = await self.send("GET", url, headers=headers)
            except Lost as exc:
                self.reads.record([None])
                problem, hint = str(exc), None
            else:
                self.reads.record([reply])
                if reply.status not in RETRIED_STATUSES:
                    return reply
                problem, hint = reply.describe(), reply.retry_after()
            delay = backoff.delay([hint])
            if self.clock.now() + delay > deadline:
                raise DirectoryError(
                    f"Microsoft Graph did not answer within {self.budget:g} s "
                    f"(retry_budget_seconds): {problem}"
                )
            log.info("entra_read_retry", problem=problem, wait=round(delay, 2))
            await self.pause(delay, self.reads.why(backoff.hinted))

    async def batch(self, requests: list[dict[str, Any]]) -> BatchAnswer:
        """One $batch (at most 20 sub-requests), sent once."""
        try:
            envelope = await self.send("POST", "/$batch", {"requests": requests})
        except Lost as exc:
            return BatchAnswer(None, {}, str(exc))
        replies: dict[str, Reply] = {}
        if envelope.status == 200 and isinstance(envelope.body, dict):
            for item in envelope.body.get("responses") or []:
                headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
                replies[str(item.get("id"))] = Reply(
                    int(item.get("status") or 0), item.get("body"), headers
                )
        return BatchAnswer(envelope, replies)

    async def get_many(self, urls: Mapping[str, str]) -> dict[str, Reply]:
        """GETs by key, in $batch requests, each retried within the budget on 429/5xx
        and lost answers; the final reply of each (2xx or 4xx)."""
        deadline = self.clock.now() + self.budget
        backoff = Backoff(self.spec.retry_cap)
        gate = asyncio.Semaphore(self.spec.concurrency)
        final: dict[str, Reply] = {}
        todo = list(urls)
        while True:
            hints: list[float | None] = []
            problems: list[str] = []

            async def part(keys: list[str], hints: list[float | None], problems: list[str]) -> None:
                async with gate:
                    requests = [
                        {"id": str(n), "method": "GET", "url": urls[key]}
                        for n, key in enumerate(keys)
                    ]
                    answer = await self.batch(requests)
                envelope = answer.envelope
                if envelope is None or envelope.status != 200:
                    if envelope is not None and envelope.status not in RETRIED_STATUSES:
                        raise DirectoryError(graph_error(envelope))
                    self.reads.record([envelope] * len(keys))
                    problems.append(envelope.describe() if envelope else answer.problem)
                    hints.append(envelope.retry_after() if envelope else None)
                    return
                self.reads.record(answer.replies.get(str(n)) for n in range(len(keys)))
                for n, key in enumerate(keys):
                    reply = answer.replies.get(str(n))
                    if reply is None or reply.status in RETRIED_STATUSES:
                        problems.append(reply.describe() if reply else "no sub-response")
                        hints.append(reply.retry_after() if reply else None)
                    elif reply.status == 403:
                        raise DirectoryError(graph_error(reply))
                    else:
                        final[key] = reply

            await asyncio.gather(*(part(keys, hints, problems) for keys in _chunks(todo)))
            todo = [k for k in todo if k not in final]
            if not todo:
                return final
            delay = backoff.delay(hints)
            if self.clock.now() + delay > deadline:
                raise DirectoryError(
                    f"Microsoft Graph did not answer {len(todo)} reads within "
                    f"{self.budget:g} s (retry_budget_seconds): {problems[-1]}"
                )
            log.info("entra_read_retry", reads=len(todo), problem=problems[-1], wait=delay)
            await self.pause(delay, self.reads.why(backoff.hinted))


def graph_error(reply: Reply) -> str:
    """What a refused request means, for a person."""
    if reply.status == 403:
        return (
            f"Graph refused: {reply.message or 'insufficient privileges'} "
            f"({reply.code or 403}); the app needs the application permission "
            "User.ReadWrite.All (or User.Read.All to plan) with admin consent"
        )
    return reply.describe()


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), BATCH_LIMIT):
        yield items[start : start + BATCH_LIMIT]
