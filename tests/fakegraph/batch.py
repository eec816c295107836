"""POST /$batch: JSON batching as Graph does it.

At most 20 sub-requests, ids unique; each `url` relative to the version ("/users/x" or
"users/x"). An absolute URL is refused with 400 for the whole batch: the SDK's
BatchRequestItem keeps absolute URLs, and the project must rewrite them (see the notes).
Sub-requests run in the order given (Graph may choose any order); `dependsOn` is honoured
(a failed dependency gives 424). Each sub-request is authorised, throttled and faulted on
its own; the batch itself answers 200 whenever it parses.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .operation import Answer, Operation

MAX_REQUESTS = 20
METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;charset=utf-8"


@dataclass(frozen=True)
class SubRequest:
    id: str
    method: str
    url: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    depends_on: tuple[str, ...]


def parse(envelope: Operation) -> list[SubRequest]:
    """The sub-requests of a $batch body, or GraphError 400 for a malformed batch."""
    payload = envelope.json()
    requests = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(requests, list) or not requests:
        raise errors.bad_batch("Invalid batch payload format.")
    if len(requests) > MAX_REQUESTS:
        raise errors.bad_batch(
            f"A batch may hold at most {MAX_REQUESTS} requests; this one holds {len(requests)}."
        )
    parsed: list[SubRequest] = []
    seen: set[str] = set()
    for item in requests:
        if not isinstance(item, dict):
            raise errors.bad_batch("Invalid batch payload format.")
        request_id, method, url = item.get("id"), item.get("method"), item.get("url")
        if not isinstance(request_id, str) or not request_id:
            raise errors.bad_batch("Every request of a batch needs an 'id'.")
        if request_id.lower() in seen:
            raise errors.bad_batch(f"The batch holds the request id '{request_id}' twice.")
        seen.add(request_id.lower())
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise errors.bad_batch(f"Request '{request_id}' has an invalid 'method'.")
        if not isinstance(url, str) or not url:
            raise errors.bad_batch(f"Request '{request_id}' has no 'url'.")
        split = urllib.parse.urlsplit(url)
        if split.scheme or split.netloc or url.startswith("//"):
            raise errors.bad_batch(
                f"Invalid request URL '{url}' in request '{request_id}': the url of a batch "
                "request must be relative to the version, such as '/users'."
            )
        headers = item.get("headers") or {}
        if not isinstance(headers, dict):
            raise errors.bad_batch(f"Request '{request_id}' has invalid 'headers'.")
        depends = item.get("dependsOn") or []
        parsed.append(
            SubRequest(
                id=request_id,
                method=method.upper(),
                url=url,
                path="/" + urllib.parse.unquote(split.path).lstrip("/"),
                query=dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True)),
                headers={str(k).lower(): _header_value(v) for k, v in headers.items()},
                body=_body(request_id, item.get("body")),
                depends_on=tuple(str(d) for d in depends),
            )
        )
    known = {r.id.lower() for r in parsed}
    for request in parsed:
        for dependency in request.depends_on:
            if dependency.lower() not in known:
                raise errors.bad_batch(
                    f"Request '{request.id}' depends on '{dependency}', which is not in the batch."
                )
    return parsed


def execute(
    envelope: Operation,
    requests: list[SubRequest],
    run: Callable[[Operation, int], Answer],
) -> Answer:
    """Run the sub-requests in order with `run(operation, index)` (the caller decided
    their faults before, and dropped the whole batch if any was "drop")."""
    statuses: dict[str, int] = {}
    responses: list[dict[str, Any]] = []
    for index, request in enumerate(requests):
        failed = [d for d in request.depends_on if not 200 <= statuses.get(d.lower(), 0) < 300]
        if failed:
            answer = Answer(
                424,
                errors.error_body(
                    "BadRequest", f"Failed dependency: request '{failed[0]}' did not succeed."
                ),
            )
        else:
            operation = Operation(
                method=request.method,
                path=request.path,
                query=request.query,
                headers=request.headers,
                body=request.body,
                grant=envelope.grant,
                batch_id=request.id,
            )
            answer = run(operation, index)
        statuses[request.id.lower()] = answer.status
        responses.append(sub_response(request.id, answer))
    return Answer(200, {"responses": responses})


def sub_response(request_id: str, answer: Answer) -> dict[str, Any]:
    headers = {"Cache-Control": "no-cache", **answer.headers}
    item: dict[str, Any] = {"id": request_id, "status": answer.status, "headers": headers}
    if answer.body is not None:
        headers["Content-Type"] = JSON_TYPE
        item["body"] = answer.body
    return item


def _header_value(value: Any) -> str:
    if isinstance(value, list | tuple | set):  # the SDK serialises header values as lists
        return ", ".join(str(v) for v in value)
    return str(value)


def _body(request_id: str, body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):  # base64, e.g. for binary content
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error:
            message = f"Request '{request_id}' has a body that is not base64."
            raise errors.bad_batch(message) from None
    return json.dumps(body).encode()
