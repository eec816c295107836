"""Compare-and-swap writes on LDAP: what each answer means, and what to do after a loss.

A change is one modify that deletes the old value and adds the new one (a plain add when
the attribute was empty), so the server refuses it when the value is no longer the old one.
The answers, and what they mean here:

- 0 success: ``applied``.
- 16 noSuchAttribute: the old value is gone (someone changed it). Re-read: the new value
  -> ``unchanged``; another value -> ``conflict``; still the old one (by :func:`same_value`,
  e.g. another case on a case-exact attribute) -> send again with the stored spelling.
- 19 constraintViolation (OpenLDAP) / 20 attributeOrValueExists (AD) on a plain add: a value
  appeared since the plan. Re-read: the new value -> ``unchanged``, another -> ``conflict``,
  still empty -> ``failed`` with the server's message (the add itself is refused). With an
  old value (delete + add) 19/20 cannot be a race: ``failed`` with the server's message.
- 32 noSuchObject: ``conflict`` (the entry is gone).
- 65 objectClassViolation with ``auxiliary_class`` set: send again, adding the class.
- Refusals that would repeat for every change stop the batch at the first (see
  :data:`REFUSES_ALL`, :data:`REFUSES_UNLESS_ALLOWED`): nothing more is sent, the answers in
  flight are collected, and :class:`DirectoryAborted` carries what was decided. Until an
  answer shows the account may write, one modify is in flight at a time, so an account
  without write access is stopped after sending one.
- Anything else: ``failed`` with "LDAP <code> <description>: <server's message>".

A lost connection leaves the requests in flight undecided: each is read back. The new value
-> ``applied`` (our write landed); the old value -> sent again on a new connection; another
value -> ``conflict``. A write once lost stays ours: if a later answer or read finds the new
value, it is ``applied`` (a late landing of the lost request), not ``unchanged``. One the
run could not settle is ``unknown`` (the next run reads it back); one never sent is left out
of the results (the runner journals it as not sent), or ``skipped`` on a cancel.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ldap3 import MODIFY_ADD, MODIFY_DELETE

from persona_sync.directory.base import (
    Cancel,
    Change,
    ChangeResult,
    DirectoryAborted,
    Gone,
    ReadBack,
    Status,
    same_value,
)
from persona_sync.directory.ldap_pipeline import Modification, ModifyPipeline, PipelineLost
from persona_sync.errors import DirectoryError
from persona_sync.logs import get_logger

log = get_logger(__name__)

_SUCCESS = 0
_NO_SUCH_ATTRIBUTE = 16
_A_VALUE_APPEARED = frozenset({19, 20})  # constraintViolation, attributeOrValueExists
_NO_SUCH_OBJECT = 32
_ACCESS_DENIED = 50
_UNWILLING = 53
_OBJECT_CLASS_VIOLATION = 65
# The server checks access before values: these answers show the account may write.
_SHOWS_WRITE_ACCESS = frozenset({_SUCCESS, _NO_SUCH_ATTRIBUTE, *_A_VALUE_APPEARED})

#: Answers that refuse every write on this server, whatever the entry: stop at the first.
REFUSES_ALL = {
    8: "the server requires a protected connection for writes: use ldaps:// or start_tls: true",
    10: "the server refers writes to another server (a read-only replica?): point "
    "directory.urls at a writable server",
    13: "the server requires a protected connection for writes: use ldaps:// or start_tls: true",
    51: "the server is busy: rerun later",
    52: "the server is unavailable: rerun later",
}
#: Refusals that repeat for every change, unless the account may write some entries (AD's
#: protected admin accounts refuse a writer that may write everyone else): stop at the first
#: unless an answer of this run showed write access (before it or among those in flight).
#: 50 insufficientAccessRights; 53 unwillingToPerform, which slapd gives for a read-only
#: database or replica and AD for an attribute it will not let anyone write. Not 65
#: objectClassViolation: it depends on each entry's classes.
REFUSES_UNLESS_ALLOWED = frozenset({_ACCESS_DENIED, _UNWILLING})

NOT_SENT_INTERRUPTED = "not sent: run interrupted"
UNKNOWN = (
    "sent, but the answer was lost with the connection and the value could not be read back: "
    "it may or may not be written; the next run reads it back"
)
WRITTEN_ANSWER_LOST = "written (the answer was lost with the connection; read back)"
_MAX_ROUNDS = 6

Why = Literal["mismatch", "appeared", "lost"]


@dataclass(frozen=True)
class WriteSettings:
    window: int
    auxiliary_class: str | None
    user: str  # the bind account, named in messages
    urls: str  # the servers, named in messages
    reconnects: int  # connection losses tolerated per batch


@dataclass
class _Pending:
    """A change not decided yet."""

    with_class: bool = False  # add the auxiliary class with the value
    old: str | None = None  # the old value to delete, as the server spells it
    lost: bool = False  # sent once without an answer: a later "new value" is our write
    answer: dict[str, Any] | None = None  # the refusal being re-read (19/20)


class WriteBatch:
    """One ``apply`` call: send, collect, re-read, resend, until every change is decided.

    ``connect`` returns the writer (opening it if needed), ``drop`` forgets a lost one,
    ``read`` gives an entry's current value (raises DirectoryError when it cannot).
    ``may_write`` says an earlier batch of the run showed the account may write; until an
    answer shows it, one modify is in flight at a time, so an account without write access
    is stopped by its first refusal with nothing else sent.
    """

    def __init__(
        self,
        changes: Sequence[Change],
        settings: WriteSettings,
        connect: Callable[[], ModifyPipeline],
        drop: Callable[[], None],
        read: Callable[[str, str], ReadBack],
        cancel: Cancel | None,
        may_write: bool,
    ) -> None:
        self.changes = changes
        self.settings = settings
        self._connect, self._drop, self._read = connect, drop, read
        self.cancel = cancel
        self.may_write = may_write
        self.results: dict[int, ChangeResult] = {}
        self.pending = {i: _Pending(old=c.old) for i, c in enumerate(changes)}
        self.queue: deque[int] = deque(range(len(changes)))
        self.in_flight: dict[int, int] = {}  # message id -> change index
        self.reread: dict[int, Why] = {}
        self.stop: str | None = None  # why nothing more is sent
        self._stop_code: int | None = None  # the refusal that stopped it
        self._denied: list[tuple[int, dict[str, Any]]] = []  # refusals a success would lift

    # --- the rounds ---------------------------------------------------------------------

    def run(self) -> list[ChangeResult]:
        losses = 0
        for _round in range(_MAX_ROUNDS):
            lost = self._send_and_collect()
            if lost is not None:
                losses += 1
                log.warning("ldap_connection_lost", error=lost, attempt=losses)
            self._settle()
            if self.stop is None and lost is not None and losses > self.settings.reconnects:
                self.stop = f"connection to {self.settings.urls} lost {losses} times: {lost}"
            if self.stop is not None:
                raise DirectoryAborted(self.stop, self._decided())
            if self._cancelled():
                return self._ordered(NOT_SENT_INTERRUPTED)
            if not self.queue:
                return self._ordered(None)
        for index in self.queue:  # only a value that flips under us gets here...
            if not self.pending[index].lost:  # (... or a lost write: that one is unknown)
                self._decide(index, "conflict", "the value keeps changing while being written")
        return self._ordered(None)

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.requested

    def _send_and_collect(self) -> str | None:
        """Send the queue with at most ``window`` in flight and collect every answer.

        Returns why the connection was lost (what was in flight is then to be re-read).
        """
        try:
            writer = self._connect()
        except DirectoryError as exc:
            self.stop = f"connection lost and not regained: {exc}" if self._any_lost() else str(exc)
            return None
        sending: int | None = None
        try:
            while True:
                window = self.settings.window if self.may_write else 1
                while (
                    self.queue
                    and len(self.in_flight) < window
                    and self.stop is None
                    and not self._cancelled()
                ):
                    sending = self.queue.popleft()
                    message_id = writer.send(self.changes[sending].dn, self._modification(sending))
                    self.in_flight[message_id], sending = sending, None
                if not self.in_flight:
                    return None
                # Sends what was queued, then takes every answer that has come: the window
                # is refilled once per read, not once per answer.
                for message_id, answer in writer.answers():
                    index = self.in_flight.pop(message_id, None)
                    if index is not None:
                        self._on_answer(index, answer)
        except PipelineLost as exc:
            self._drop()
            unanswered = list(self.in_flight.values()) + ([] if sending is None else [sending])
            for index in unanswered:
                self.reread[index] = "lost"
                self.pending[index].lost = True
            self.in_flight.clear()
            return str(exc)

    # --- one answer -------------------------------------------------------------------

    def _on_answer(self, index: int, answer: dict[str, Any]) -> None:
        change, pending = self.changes[index], self.pending[index]
        code = answer.get("result")
        if code in _SHOWS_WRITE_ACCESS:
            self._write_access_shown()
        if code == _SUCCESS:
            self._decide(index, "applied")
        elif (
            code == _OBJECT_CLASS_VIOLATION
            and self.settings.auxiliary_class
            and not pending.with_class
            and change.new is not None
        ):
            pending.with_class = True
            self.queue.append(index)
        elif code == _NO_SUCH_ATTRIBUTE:
            self.reread[index] = "mismatch"
        elif code in _A_VALUE_APPEARED and not pending.old:
            pending.answer = answer
            self.reread[index] = "appeared"
        elif code == _NO_SUCH_OBJECT:
            self._decide(index, "conflict", "entry no longer exists")
        else:
            self._refused(index, code, answer)

    def _write_access_shown(self) -> None:
        """An answer proves the account may write: refusals so far were about their entries."""
        self.may_write = True
        if self._stop_code in REFUSES_UNLESS_ALLOWED:
            self.stop = self._stop_code = None
            for index, answer in self._denied:
                self._decide(index, "failed", self._refusal(self.changes[index], answer))
        self._denied.clear()

    def _refused(self, index: int, code: int | None, answer: dict[str, Any]) -> None:
        change = self.changes[index]
        if self.stop is None and code is not None:
            reason = self._stops_all(change, code, answer)
            if reason is not None:
                self.stop, self._stop_code = reason, code
        if self.stop is not None and code == self._stop_code:
            # The same refusal as the stop: one message, which the runner shows once.
            self._decide(index, "failed", self.stop)
            if code in REFUSES_UNLESS_ALLOWED:
                self._denied.append((index, answer))
        else:
            self._decide(index, "failed", self._refusal(change, answer))

    def _stops_all(self, change: Change, code: int, answer: dict[str, Any]) -> str | None:
        """Why this refusal will repeat for every change (None when it need not)."""
        if code in REFUSES_ALL:
            return f"{_server_said(answer)}; {REFUSES_ALL[code]}"
        if code not in REFUSES_UNLESS_ALLOWED or self.may_write:
            return None
        if code == _ACCESS_DENIED:
            return (
                f"permission denied: {self.settings.user} may not write {change.attribute} "
                f"(refused on {change.dn}: {_server_said(answer)}); stopped at the first "
                f"refusal: grant the account write access to {change.attribute} on the "
                "employees' entries, then rerun"
            )
        return (
            f"the server will not write {change.attribute} (refused on {change.dn}: "
            f"{_server_said(answer)}); stopped at the first refusal"
        )

    def _refusal(self, change: Change, answer: dict[str, Any]) -> str:
        code = answer.get("result")
        if code == _ACCESS_DENIED:
            return (
                f"permission denied: {self.settings.user} may not write {change.attribute} on "
                "this entry (LDAP 50)"
            )
        if code == _OBJECT_CLASS_VIOLATION:
            return (
                f"the entry's object classes do not allow {change.attribute} (LDAP 65); set "
                "directory.auxiliary_class"
            )
        return _server_said(answer)

    # --- re-reading -------------------------------------------------------------------

    def _settle(self) -> None:
        """Decide each change whose answer needs the current value (or had no answer)."""
        for index in sorted(self.reread):
            why = self.reread.pop(index)
            change, pending = self.changes[index], self.pending[index]
            try:
                current = self._read(change.dn, change.attribute)
            except DirectoryError as exc:
                self.reread[index] = why
                self._unreadable(
                    f"connection lost and not regained: {exc}" if why == "lost" else str(exc)
                )
                return
            if isinstance(current, Gone):
                self._decide(index, "conflict", "entry no longer exists")
            elif same_value(current, change.new):
                if why == "lost" or pending.lost:
                    self._decide(index, "applied", WRITTEN_ANSWER_LOST, current)
                else:
                    self._decide(index, "unchanged", "already had the value", current)
            elif why == "appeared" and not current and pending.answer is not None:
                # Nothing is there, yet the add was refused: the value itself is refused.
                self._decide(index, "failed", _server_said(pending.answer))
            elif same_value(current, change.old):
                # Not written (lost before it landed, or a value flipped back and forth), or
                # the stored spelling differs in case on a case-exact attribute: send again,
                # deleting the value exactly as stored.
                pending.old = current
                self.queue.append(index)
            else:
                self._decide(
                    index,
                    "conflict",
                    f"value changed since the plan: expected {_show(change.old)}, found "
                    f"{_show(current)}",
                    current,
                )

    def _unreadable(self, reason: str) -> None:
        """The current values cannot be read: decide what the answers say, then stop."""
        for index, why in self.reread.items():
            pending = self.pending[index]
            if why == "mismatch":
                self._decide(index, "conflict", f"value changed since the plan ({reason})")
            elif why == "appeared" and pending.answer is not None:
                said = _server_said(pending.answer)
                self._decide(index, "failed", f"{said} (the value could not be re-read: {reason})")
            # "lost": left pending, so it ends unknown
        self.reread.clear()
        if self.stop is None:
            self.stop = reason

    # --- results ----------------------------------------------------------------------

    def _decide(
        self, index: int, status: Status, message: str = "", found: str | None = None
    ) -> None:
        self.results[index] = ChangeResult(self.changes[index], status, message, found)
        self.pending.pop(index, None)

    def _any_lost(self) -> bool:
        return any(p.lost for p in self.pending.values())

    def _decided(self) -> list[ChangeResult]:
        """What is known, for an abort: decided changes, and ``unknown`` for those sent and
        never settled (they may yet land); never-sent ones are left out."""
        for index, pending in list(self.pending.items()):
            if pending.lost:
                self._decide(index, "unknown", UNKNOWN)
        return [self.results[i] for i in sorted(self.results)]

    def _ordered(self, not_sent: str | None) -> list[ChangeResult]:
        for index in list(self.pending):
            if self.pending[index].lost:
                self._decide(index, "unknown", UNKNOWN)
            else:
                self._decide(index, "skipped", not_sent or "not sent")
        return [self.results[i] for i in range(len(self.changes))]

    def _modification(self, index: int) -> Modification:
        change, pending = self.changes[index], self.pending[index]
        operations: list[tuple[str, list[str]]] = []
        if pending.old is not None:
            operations.append((MODIFY_DELETE, [pending.old]))
        if change.new is not None:
            operations.append((MODIFY_ADD, [change.new]))
        modification: Modification = {change.attribute: operations}
        if pending.with_class and self.settings.auxiliary_class:
            modification["objectClass"] = [(MODIFY_ADD, [self.settings.auxiliary_class])]
        return modification


def _server_said(answer: dict[str, Any]) -> str:
    """The server's own words: "LDAP 19 constraintViolation: <diagnostic message>"."""
    text = f"LDAP {answer.get('result')} {answer.get('description') or ''}".rstrip()
    message = str(answer.get("message") or "").strip()
    referrals = answer.get("referrals") or []
    if referrals:
        message = (message + " " if message else "") + "to " + ", ".join(map(str, referrals))
    return f"{text}: {message}" if message else text


def _show(value: str | None) -> str:
    return "(empty)" if not value else repr(value)
