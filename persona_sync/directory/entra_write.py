"""Writing to Entra ID: compare-and-swap as far as Graph allows, retries budgeted by time.

Changes go out as ``$batch`` requests of up to 20 PATCHes, ``concurrency`` of them in
flight. Each chunk of 20 first reads its users; a value that is not the plan's old one is
a conflict, a value that already is the new one is ``unchanged``. Graph has no
conditional PATCH for users, so a change made between that read and the PATCH is the
remaining race (a fraction of a second; up to FRESH_SECONDS while Graph throttles).

What each answer means for a retry:
- 429 (or a 401 before a renewed token): Graph applied nothing; the read still stands
  while it is younger than FRESH_SECONDS, so the PATCH is resent after Retry-After.
- 5xx, a missing sub-response, a lost or 5xx envelope: the PATCH may have been applied.
  It is read back before anything is resent: the new value found means "applied" (our
  write landed), the old value means it is sent again, anything else is a conflict.
- 403: the app may not write; the run stops at the first (one message, DirectoryAborted).

Retries stop when ``retry_budget_seconds`` (counted from a chunk's first request) would be
exceeded: a change never applied is then ``failed``, one whose answer was lost and could
not be read back is ``unknown`` (the next run reads it back). A requested Cancel stops
the sending; answers in flight are awaited; what was never sent is ``skipped``. A long
wait is announced with how many writes Graph throttled (see entra_graph).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from persona_sync.directory.base import (
    GONE,
    Cancel,
    Change,
    ChangeResult,
    ReadBack,
    Status,
    same_value,
)
from persona_sync.directory.entra_graph import (
    BATCH_LIMIT,
    RETRIED_STATUSES,
    Backoff,
    BatchAnswer,
    GraphClient,
    Reply,
)
from persona_sync.errors import DirectoryError
from persona_sync.logs import get_logger

log = get_logger(__name__)

FRESH_SECONDS = 5.0  # a compare-and-swap read this recent is reused after a 429
CUSTOM_SECURITY = "customsecurityattributes."
INTERRUPTED = "not sent: run interrupted"


@dataclass
class _Item:
    """One change on its way: what the last read found and whether a PATCH may have
    landed without an answer."""

    index: int
    change: Change
    writable_at: float | None = None  # when a read last found the old value
    sent: bool = False  # a PATCH went out and its outcome is not known


class Writer:
    """Applies one batch of changes (see the module docstring)."""

    def __init__(self, client: GraphClient) -> None:
        self.client = client
        self.spec = client.spec
        self.results: dict[int, ChangeResult] = {}
        self.aborted: str | None = None
        self.cancel: Cancel | None = None

    # --- the batch ----------------------------------------------------------------------

    async def apply(self, changes: Sequence[Change], cancel: Cancel | None) -> None:
        self.cancel = cancel
        gate = asyncio.Semaphore(self.spec.concurrency)
        items = [_Item(i, change) for i, change in enumerate(changes)]

        async def one(chunk: list[_Item]) -> None:
            async with gate:
                await self._chunk(chunk)

        outcomes = await asyncio.gather(
            *(one(items[s : s + BATCH_LIMIT]) for s in range(0, len(items), BATCH_LIMIT)),
            return_exceptions=True,  # a bug in one chunk must not leave the others running
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    @property
    def stopping(self) -> bool:
        return self.aborted is not None or (self.cancel is not None and self.cancel.requested)

    async def _chunk(self, pending: list[_Item]) -> None:
        clock = self.client.clock
        deadline = clock.now() + self.client.budget
        backoff = Backoff(self.spec.retry_cap)
        rounds = 0
        while pending and not self.stopping:
            hints: list[float | None] = []
            write_problems = self.client.writes.problems.total()
            try:
                stale = [it for it in pending if not self._fresh(it)]
                if stale:
                    hints += await self._read(stale)
                ready = [it for it in pending if it.index not in self.results and self._fresh(it)]
                if ready and not self.stopping:
                    hints += await self._patch(ready)
            except DirectoryError as exc:
                # Raised before the request was processed (the token, the certificate, a
                # refused token): nothing of this request was applied.
                self._abort(str(exc))
            pending = [it for it in pending if it.index not in self.results]
            if not pending or self.stopping:
                break
            rounds += 1
            delay = backoff.delay(hints)
            if clock.now() + delay > deadline:
                await self._give_up(pending, f"for {self.client.budget:g} s (retry_budget_seconds)")
                return
            if self.spec.max_retries is not None and rounds > self.spec.max_retries:
                await self._give_up(pending, f"after {self.spec.max_retries} retries (max_retries)")
                return
            log.info("entra_retry", changes=len(pending), wait=round(delay, 2), round=rounds)
            wrote = self.client.writes.problems.total() > write_problems
            why = (self.client.writes if wrote else self.client.reads).why(backoff.hinted)
            await self._sleep(delay, why)
        self._stop(pending)

    async def _sleep(self, seconds: float, why: str) -> None:
        """Wait (saying so when it is long), waking early when the run is cancelled or
        aborted."""
        clock = self.client.clock
        self.client.waiting(seconds, why)
        end = clock.now() + seconds
        while not self.stopping and (left := end - clock.now()) > 0:
            await clock.sleep(min(left, 0.1))

    def _fresh(self, it: _Item) -> bool:
        """The item's last read is recent enough to PATCH on (see FRESH_SECONDS)."""
        return (
            it.writable_at is not None and self.client.clock.now() - it.writable_at <= FRESH_SECONDS
        )

    async def _give_up(self, pending: list[_Item], spent: str) -> None:
        """The budget is spent: one last read settles writes whose answer was lost."""
        unsure = [it for it in pending if it.sent]
        if unsure and not self.stopping:
            try:
                await self._read(unsure)
            except DirectoryError as exc:
                self._abort(str(exc))
        for it in pending:
            if it.index in self.results:
                continue
            if it.sent:
                self._result(
                    it,
                    "unknown",
                    f"sent, but Graph's answer was lost and reading it back still failed {spent}; "
                    "the next run reads it back",
                )
            else:
                self._result(
                    it,
                    "failed",
                    f"not written: Graph was still throttled or unavailable {spent}; "
                    "rerun apply later",
                )

    def _stop(self, pending: list[_Item]) -> None:
        """The run stopped (cancel or abort): say what is known of each change left."""
        for it in pending:
            if it.index in self.results:
                continue
            if it.sent:
                self._result(
                    it,
                    "unknown",
                    "sent, but its answer was lost and the run stopped before reading it back",
                )
            elif self.aborted is None:
                self._result(it, "skipped", INTERRUPTED)
            # aborted: never applied; the runner records it as not sent

    def _result(
        self, it: _Item, status: Status, message: str = "", found: str | None = None
    ) -> None:
        self.results[it.index] = ChangeResult(it.change, status, message, found)

    def _abort(self, message: str) -> None:
        if self.aborted is None:
            log.info("entra_aborted", reason=message)
            self.aborted = message

    # --- compare ------------------------------------------------------------------------

    async def _read(self, items: list[_Item]) -> list[float | None]:
        """Read each item's attribute and decide what can be; Retry-After hints."""
        requests = [
            {"id": str(it.index), "method": "GET", "url": read_url(it.change)} for it in items
        ]
        answer = await self.client.batch(requests)
        self.client.reads.record(_answers(answer, items))
        if answer.envelope is None:
            log.info("entra_read_lost", error=answer.problem, users=len(items))
            return [None]
        if answer.envelope.status != 200:
            return [self._envelope(answer.envelope, items, write=False)]
        hints: list[float | None] = []
        for it in items:
            reply = answer.replies.get(str(it.index))
            if reply is None or reply.status in RETRIED_STATUSES:
                hints.append(reply.retry_after() if reply else None)
            elif reply.status == 200:
                self._compare(it, value_of(it.change, reply.body))
            elif reply.status == 404:
                self._result(it, "conflict", "user no longer exists")
            elif reply.status in (401, 403):
                self._abort(_refused_read(reply))
            else:
                self._result(it, "failed", f"cannot read it: {reply.describe()}")
        return hints

    def _compare(self, it: _Item, found: str | None) -> None:
        change = it.change
        if same_value(found, change.new):
            if it.sent:  # our PATCH landed though its answer was lost
                self._result(it, "applied", "answer lost; read back: written", found)
            else:
                self._result(it, "unchanged", "already had the value", found)
        elif same_value(found, change.old):
            it.writable_at = self.client.clock.now()
            it.sent = False  # read back after a lost answer: our PATCH did not land
        else:
            self._result(
                it,
                "conflict",
                f"value changed since the plan: expected {_show(change.old)}, found {_show(found)}",
                found,
            )

    # --- swap ---------------------------------------------------------------------------

    async def _patch(self, items: list[_Item]) -> list[float | None]:
        requests = [
            {
                "id": str(it.index),
                "method": "PATCH",
                "url": f"/users/{quote(it.change.dn)}",
                "headers": {"Content-Type": "application/json"},
                "body": patch_body(it.change.attribute, it.change.new),
            }
            for it in items
        ]
        answer = await self.client.batch(requests)
        self.client.writes.record(_answers(answer, items))
        if answer.envelope is None:
            # No answer: Graph may have applied any of them. Read back before resending.
            log.info("entra_batch_lost", error=answer.problem, changes=len(items))
            for it in items:
                _uncertain(it)
            return [None]
        if answer.envelope.status != 200:
            return [self._envelope(answer.envelope, items, write=True)]
        hints: list[float | None] = []
        for it in items:
            reply = answer.replies.get(str(it.index))
            if reply is None:
                _uncertain(it)
                hints.append(None)
            elif reply.ok:
                self._result(it, "applied")
            elif reply.status == 429:
                hints.append(reply.retry_after())  # nothing applied: the read still stands
            elif reply.status in RETRIED_STATUSES:
                _uncertain(it)  # a 5xx may come after the write took effect
                hints.append(reply.retry_after())
            elif reply.status == 404:
                self._result(it, "conflict", "user no longer exists")
            elif reply.status in (401, 403):
                self._abort(_refused_write(reply, it.change))
            else:
                self._result(it, "failed", reply.describe())
        return hints

    def _envelope(self, envelope: Reply, items: list[_Item], write: bool) -> float | None:
        """A $batch answered as a whole with an error status."""
        if envelope.status == 429:
            return envelope.retry_after()  # not processed
        if envelope.status in RETRIED_STATUSES:
            if write:
                for it in items:
                    _uncertain(it)
            return envelope.retry_after()
        if envelope.status == 403:
            refused = _refused_write(envelope, items[0].change) if write else None
            self._abort(refused or _refused_read(envelope))
        else:
            self._abort(f"Graph refused the $batch request: {envelope.describe()}")
        return None


def _answers(answer: BatchAnswer, items: list[_Item]) -> list[Reply | None]:
    """Each item's answer in a $batch: its sub-response, the envelope's error status
    when the $batch failed as a whole, None when no answer came."""
    envelope = answer.envelope
    if envelope is None or envelope.status != 200:
        return [envelope] * len(items)
    return [answer.replies.get(str(it.index)) for it in items]


def _uncertain(it: _Item) -> None:
    it.sent = True
    it.writable_at = None


def _refused_write(reply: Reply, change: Change) -> str:
    permission = (
        "CustomSecAttributeAssignment.ReadWrite.All"
        if change.attribute.lower().startswith(CUSTOM_SECURITY)
        else "User.ReadWrite.All"
    )
    return (
        f"Graph refused to write ({reply.status} {reply.code}: {reply.message}); the app "
        f"needs the application permission {permission} with admin consent"
    )


def _refused_read(reply: Reply) -> str:
    return (
        f"Graph refused to read users ({reply.status} {reply.code}: {reply.message}); the "
        "app needs the application permission User.ReadWrite.All with admin consent"
    )


def _show(value: Any) -> str:
    return "(empty)" if value is None else repr(value)


def read_url(change: Change) -> str:
    top = change.attribute.split(".", 1)[0]
    return f"/users/{quote(change.dn)}?$select=id,{top}"


def value_of(change: Change, body: Any) -> str | None:
    """The change's attribute in a GET /users/{id} answer (None when empty)."""
    flat: dict[str, str] = {}
    flatten(body or {}, "", flat)
    return flat.get(change.attribute.lower()) or None


def flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    """Graph JSON -> lower-case dotted names with string values (booleans as true/false)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key.startswith("@odata"):
                continue
            flatten(inner, f"{prefix}{key.lower()}.", out)
        return
    name = prefix[:-1]
    if value is None or isinstance(value, list):
        return
    out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)


def patch_body(attribute: str, value: str | None) -> dict[str, Any]:
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


async def read_back(client: GraphClient, changes: Sequence[Change]) -> list[ReadBack]:
    """Each change's attribute as Graph holds it now (GONE for a deleted user)."""
    replies = await client.get_many({str(i): read_url(c) for i, c in enumerate(changes)})
    values: list[ReadBack] = []
    for i, change in enumerate(changes):
        reply = replies[str(i)]
        if reply.status == 404:
            values.append(GONE)
        elif reply.ok:
            values.append(value_of(change, reply.body))
        else:
            raise DirectoryError(f"cannot read back {change.employee}: {reply.describe()}")
    return values
