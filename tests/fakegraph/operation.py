"""One Graph operation (an HTTP request or a $batch sub-request) and its answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .identity import Grant

READ_USERS = frozenset({
    "User.Read.All", "User.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All",
})  # fmt: skip


@dataclass
class Operation:
    """One Graph request: `path` is relative to /v1.0 and percent-decoded."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    grant: Grant
    batch_id: str | None = None

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            raise errors.bad_json() from None

    @property
    def advanced(self) -> bool:
        """Graph's "advanced query" mode: ConsistencyLevel: eventual and $count=true."""
        return (
            self.headers.get("consistencylevel", "").lower() == "eventual"
            and self.query.get("$count", "").lower() == "true"
        )


@dataclass
class Answer:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def require(operation: Operation, any_of: frozenset[str]) -> None:
    """403 unless the token holds one of these application permissions."""
    if not operation.grant.roles & any_of:
        raise errors.forbidden()
