"""OpenLDAP delta reads ("csn" cursors): syncrepl where slapd offers it, else entryCSN.

Every entry carries entryCSN, the change sequence number of its last change (microseconds,
a counter, the server id); modifyTimestamp's one-second resolution would miss two changes
in the same second.

- With slapo-syncprov (contextCSN on the naming context, the syncrepl control in the
  rootDSE, entryUUID as the stable id) a read is a syncrepl refreshOnly search (RFC 4533)
  whose cookie is the saved contextCSN: the server sends the entries changed since, and
  either the entryUUIDs of every entry still in scope (present phase, 256 to a message) or,
  with a session log, those deleted or moved out (delete phase). The next cursor is the
  contextCSN read before the search. A refresh sends nothing newer than the contextCSN,
  and when concurrent writes commit out of order syncprov leaves it at the earlier CSN,
  below the later write, until the next write: entries above it are read with
  ``(entryCSN>=...)`` after the refresh.
- Without it: ``(entryCSN>=X)`` with the preset filter, X being the highest entryCSN seen
  less a margin, ``directory.entrycsn_margin_seconds`` or :data:`CSN_MARGIN` (a write takes
  its CSN before it commits, so it may commit after a later one; re-reading a few minutes
  of changes is harmless, missing one is not, but each re-read entry costs a decode and a
  comparison with its row: a margin holding 20,000 writes costs about a second).
  Deletions and moves out of scope come from a sweep of every entry's entryUUID, which
  costs what ``ldapsearch ... entryUUID`` of the whole scope costs (0.5-1.5 s at 100,000,
  most of it the server's); ``directory.deletion_sweep_every_minutes`` sweeps at most that
  often (the cursor keeps when the last sweep began; a full read counts as one).

The cursor also names the server (host:port): another one answering means a full read,
since a replica may lag behind the one the cursor came from.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ldap3 import Connection
from ldap3.core import exceptions as ldap_errors

from persona_sync.directory import ldap_wire as wire
from persona_sync.directory.base import Cursor, DeltaEnd, DeltaRead
from persona_sync.directory.ldap_cursor import (
    DeltaSource,
    attributes_of,
    context_of,
    failure,
    make_cursor,
    now,
    server_of,
    sweep,
    texts,
    usable,
)
from persona_sync.directory.ldap_moves import moved_entries
from persona_sync.employee import Employee
from persona_sync.errors import DirectoryError
from persona_sync.logs import get_logger

log = get_logger(__name__)

KIND = "csn"
CSN_MARGIN = timedelta(minutes=2)

SYNC_REQUEST = "1.3.6.1.4.1.4203.1.9.1.1"
SYNC_STATE = "1.3.6.1.4.1.4203.1.9.1.2"
SYNC_DONE = "1.3.6.1.4.1.4203.1.9.1.3"
SYNC_INFO = "1.3.6.1.4.1.4203.1.9.1.4"
# Refusals of a cookie: e-syncRefreshRequired; unwillingToPerform, which slapd 2.5 sends
# for a cookie newer than its own state ("consumer state is newer than provider!").
CANNOT_CONTINUE = (4096, 53)


def read_delta(source: DeltaSource, wanted: list[str], cursor: Cursor | None) -> DeltaRead:
    """Entries changed since ``cursor`` on OpenLDAP (all of them when it cannot be used)."""
    return _OpenLdap(source, wanted).read(cursor)


@dataclass(frozen=True, order=True)
class Csn:
    """An OpenLDAP change sequence number: ``YYYYmmddHHMMSS.ffffffZ#count#sid#mod``
    (hexadecimal counters); ordered as the server's CSNOrderingMatch orders them."""

    time: datetime
    count: int
    sid: int
    mod: int

    _FORM = re.compile(r"(\d{14}\.\d{6})Z#([0-9a-f]{6})#([0-9a-f]{3})#([0-9a-f]{6})", re.I)

    @classmethod
    def parse(cls, text: str) -> Csn:
        match = cls._FORM.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"{text!r} is not an entryCSN")
        stamp, count, sid, mod = match.groups()
        time = datetime.strptime(stamp, "%Y%m%d%H%M%S.%f").replace(tzinfo=UTC)
        return cls(time, int(count, 16), int(sid, 16), int(mod, 16))

    def __str__(self) -> str:
        return f"{self.time:%Y%m%d%H%M%S.%f}Z#{self.count:06x}#{self.sid:03x}#{self.mod:06x}"

    def earlier(self, margin: timedelta) -> Csn:
        """The lowest CSN a read from this one must include: ``margin`` earlier, for writes
        that took their CSN before this one and committed after it (no margin: the next
        CSN after this one)."""
        if margin:
            return Csn(self.time - margin, 0, 0, 0)
        return Csn(self.time, self.count, self.sid, self.mod + 1)


class _OpenLdap:
    def __init__(self, source: DeltaSource, wanted: list[str]) -> None:
        self.source = source
        self.wanted = wanted
        self.link = source.link

    def read(self, cursor: Cursor | None) -> DeltaRead:
        taken = now()
        connection = self.link.reader
        server = server_of(connection)
        root = attributes_of(
            self.link.entry("", ["namingContexts", "supportedControl"], "reading the rootDSE")
        )
        context = self._context_csns(texts(root.get("namingcontexts", [])))
        syncrepl = (
            bool(context)
            and SYNC_REQUEST in texts(root.get("supportedcontrol", []))
            and self.source.stable_attribute == "entryuuid"
        )
        state, reason = usable(cursor, KIND, {"csn": list, "server": str}, self.source, self.wanted)
        since: list[Csn] = []
        if state is not None:
            try:
                since = [Csn.parse(str(text)) for text in state["csn"]]
            except ValueError as exc:
                reason = f"the saved cursor cannot be used ({exc}): full read"
            if not since and not reason:
                reason = "the saved cursor cannot be used (no entryCSN): full read"
            elif state["server"] != server and not reason:
                reason = f"another server answered ({server}, not {state['server']}): full read"
        notes = (
            []
            if syncrepl
            else [
                "syncrepl is not available (it needs slapo-syncprov, a contextCSN this account "
                "may read and entryUUID as the stable id): deletions and moves out of scope are "
                f"found by a sweep of every entry's {self.source.stable_attribute}"
            ]
        )
        if not reason and syncrepl:
            refresh = _Refresh(self.source, self.wanted, since)
            refused = refresh.start()
            if refused:
                reason = refused
            else:
                return DeltaRead(
                    itertools.chain(
                        refresh.entries(),
                        refresh.above(context),
                        moved_entries(self.source, self.wanted, f"(entryCSN>={min(since)})"),
                    ),
                    lambda: self._end(context, server, taken, connection, refresh.end()),
                    full=False,
                )
        if reason:
            log.info("ldap_delta_full", reason=reason)
            if syncrepl:
                entries = self.source.reading.search(self.source.search_filter, self.wanted)
                return DeltaRead(
                    entries,
                    lambda: self._end(context, server, taken, connection, DeltaEnd(None)),
                    full=True,
                    reason=reason,
                )
            high = _HighWater(self.source, self.wanted, [])
            return DeltaRead(
                high.entries(self.source.search_filter),
                lambda: self._end(high.mark(), server, taken, connection, DeltaEnd(None), taken),
                full=True,
                reason=reason,
                notes=notes,
            )
        high = _HighWater(self.source, self.wanted, since)
        spec = self.source.spec
        margin = (
            CSN_MARGIN
            if spec.entrycsn_margin_seconds is None
            else timedelta(seconds=spec.entrycsn_margin_seconds)
        )
        lowest = min(since).earlier(margin)
        changed = f"(&{self.source.search_filter}(entryCSN>={lowest}))"
        swept = _last_sweep(state or {})
        due = _sweep_due(spec.deletion_sweep_every_minutes, swept, taken)
        if due is not None:
            notes = [*notes, due]

        def finish() -> DeltaEnd:
            if due is not None:  # not yet: nothing is known removed
                return self._end(high.mark(), server, taken, connection, DeltaEnd(None), swept)
            present = set(sweep(self.source, self.source.search_filter, "sweeping the entries"))
            return self._end(
                high.mark(), server, taken, connection, DeltaEnd(None, present=present), taken
            )

        moved = moved_entries(self.source, self.wanted, f"(entryCSN>={lowest})")
        return DeltaRead(
            itertools.chain(high.entries(changed), moved), finish, full=False, notes=notes
        )

    def _context_csns(self, naming_contexts: Sequence[str]) -> list[Csn]:
        """The contextCSN of the naming context holding the bases (syncprov keeps it)."""
        contexts = {context_of(base, naming_contexts) for base in self.source.spec.base_dns}
        found: list[Csn] = []
        for context in sorted(c for c in contexts if c is not None):
            item = self.link.entry(context, ["contextCSN"], f"reading the contextCSN of {context}")
            for text in texts(attributes_of(item).get("contextcsn", [])):
                try:
                    found.append(Csn.parse(text))
                except ValueError:
                    return []  # not a CSN we know: use entryCSN instead
        return found

    def _end(
        self,
        mark: list[Csn],
        server: str,
        taken: str,
        connection: Connection,
        end: DeltaEnd,
        swept: str | None = None,
    ) -> DeltaEnd:
        """The end of a read with the next cursor; ``swept``: when the last sweep of the
        entries (or full read) began, kept when sweeps are scheduled."""
        if not mark:
            return end  # nothing seen, nothing to continue from: the next read is full
        if self.link.reader is not connection and server_of(self.link.reader) != server:
            log.warning("ldap_delta_server_changed", was=server, now=server_of(self.link.reader))
            return DeltaEnd(None, end.removed, end.present)
        state: dict[str, object] = {"csn": [str(c) for c in sorted(mark)], "server": server}
        if self.source.spec.deletion_sweep_every_minutes and swept is not None:
            state["swept"] = swept
        return DeltaEnd(
            make_cursor(KIND, state, self.source, self.wanted, taken), end.removed, end.present
        )


class _HighWater:
    """Entries read with their entryCSN, the highest kept (then dropped unless asked for).

    A full read sees every entry's CSN: they are compared as slapd writes them (fixed
    widths, lower-case hex, so text order is CSN order; parsing each costs about 10 us,
    a second on 100,000 entries) and only the highest is parsed.
    """

    def __init__(self, source: DeltaSource, wanted: list[str], since: list[Csn]) -> None:
        self.source = source
        self.wanted = wanted
        self.since = max(since) if since else None
        self.highest = ""

    def entries(self, search_filter: str) -> Iterator[Employee]:
        keep = "entrycsn" in self.wanted
        highest = ""
        try:
            for employee in self.source.reading.search(search_filter, [*self.wanted, "entrycsn"]):
                attributes = employee.attributes
                text = attributes.get("entrycsn", "")
                if text > highest:
                    highest = text
                if not keep and isinstance(attributes, dict):  # the reader's own, fresh dict
                    attributes.pop("entrycsn", None)
                yield employee
        finally:
            self.highest = highest

    def mark(self) -> list[Csn]:
        try:
            found = Csn.parse(self.highest) if self.highest else None
        except ValueError as exc:
            raise DirectoryError(f"the server sent an entryCSN of another form: {exc}") from None
        candidates = [c for c in (self.since, found) if c is not None]
        return [max(candidates)] if candidates else []


class _Refresh:
    """A syncrepl refreshOnly search under each base, from the saved CSNs (RFC 4533)."""

    def __init__(self, source: DeltaSource, wanted: list[str], since: list[Csn]) -> None:
        self.source = source
        self.wanted = wanted
        self.cookie = ("rid=000,csn=" + ";".join(str(c) for c in since)).encode()
        self.present: set[str] = set()
        self.removed: set[str] = set()
        self.given: set[str] = set()
        self.delete_phase: list[str] = []  # bases answered with deletions, not presence
        self.first: Iterator[wire.Message] | None = None

    def _search(self, base: str) -> Iterator[wire.Message]:
        control = wire.encode(0x30, wire.encode(0x0A, b"\x01") + wire.encode(0x04, self.cookie))
        return wire.search(
            self.source.link,
            base,
            self.source.search_filter,
            self.wanted,
            subtree=self.source.spec.scope == "subtree",
            controls=[(SYNC_REQUEST, True, control)],
        )

    def start(self) -> str:
        """Send the first base's refresh; the reason for a full read if the server refuses."""
        base = self.source.spec.base_dns[0]
        messages = self._search(base)
        try:
            first = next(messages)
        except ldap_errors.LDAPException as exc:
            raise failure(self.source.link, base, exc) from None
        if isinstance(first, wire.Done) and first.code in CANNOT_CONTINUE:
            return (
                f"the server cannot continue from the saved cursor ({wire.describe(first)}): "
                "full read"
            )
        self.first = _chain(first, messages)
        return ""

    def entries(self) -> Iterator[Employee]:
        for index, base in enumerate(self.source.spec.base_dns):
            messages = self.first if index == 0 and self.first is not None else self._search(base)
            try:
                for message in messages:
                    if isinstance(message, wire.Entry):
                        employee = self._entry(message)
                        if employee is not None:
                            self.given.add(self.source.key(employee))
                            yield employee
                    elif isinstance(message, wire.Intermediate) and message.name == SYNC_INFO:
                        self._info(message.value)
                    elif isinstance(message, wire.Done):
                        self._done(base, message)
            except ldap_errors.LDAPException as exc:
                raise failure(self.source.link, base, exc) from None

    def _key(self, raw_uuid: bytes) -> str:
        """The key of an entry known by its entryUUID only (RFC 4122 byte order); 100,000
        of them come in a present phase, so the text is made without uuid.UUID (4x)."""
        if len(raw_uuid) != 16:
            raise DirectoryError(f"the server sent a syncUUID of {len(raw_uuid)} bytes, not 16")
        h = raw_uuid.hex()
        text = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        return self.source.key(Employee(text, "", {self.source.stable_attribute: text}))

    def _entry(self, entry: wire.Entry) -> Employee | None:
        state = entry.controls.get(SYNC_STATE)
        if state is not None:
            _, start, end = wire.element(state, 0)
            fields = list(wire.elements(state, start, end))
            mode = wire.integer(state, fields[0][1], fields[0][2])
            key = self._key(state[fields[1][1] : fields[1][2]])
            if mode == 0:  # present
                self.present.add(key)
                return None
            if mode == 3:  # delete
                self.removed.add(key)
                return None
        return self.source.reading.employee(entry.dn, entry.attributes)

    def _info(self, value: bytes) -> None:
        tag, start, end = wire.element(value, 0)
        if tag != 0xA3:  # syncIdSet; new cookies and phase markers: the cursor is taken before
            return
        deletes = False
        ids: list[bytes] = []
        for field_tag, s, e in wire.elements(value, start, end):
            if field_tag == 0x01:
                deletes = value[s:e] != b"\x00"
            elif field_tag == 0x31:
                ids = [value[a:b] for _, a, b in wire.elements(value, s, e)]
        (self.removed if deletes else self.present).update(self._key(i) for i in ids)

    def _done(self, base: str, done: wire.Done) -> None:
        if done.code != 0:
            raise DirectoryError(f"reading the changes under {base} failed: {wire.describe(done)}")
        value = done.controls.get(SYNC_DONE, b"")
        deletes = False
        if value:
            _, start, end = wire.element(value, 0)
            for tag, s, e in wire.elements(value, start, end):
                if tag == 0x01:
                    deletes = value[s:e] != b"\x00"
        if deletes:
            self.delete_phase.append(base)

    def above(self, context: list[Csn]) -> Iterator[Employee]:
        """The entries whose entryCSN is above the contextCSN read before the refresh,
        which the refresh skips (slapd sends nothing newer than its own state).

        Concurrent writes may commit out of order; syncprov then leaves the contextCSN at
        the earlier one, below the later write, until the next write to the database (in
        a quiet directory: indefinitely). Read after the refresh so that an entry it
        returned is not returned twice; the cursor stays the contextCSN, so a write still
        pending below it is read next time. Such entries come back in every delta until
        the contextCSN passes them: harmless re-reads.
        """
        if not context:
            return
        # several providers (a contextCSN each): above the highest, as a cheap search
        newer = max(context).earlier(timedelta(0))
        search = f"(&{self.source.search_filter}(entryCSN>={newer}))"
        for employee in self.source.reading.search(search, self.wanted):
            key = self.source.key(employee)
            if key not in self.given:
                self.given.add(key)
                yield employee

    def end(self) -> DeltaEnd:
        """Removed keys when every base answered with deletions; else the keys present
        (bases that answered with deletions are swept for theirs)."""
        bases = self.source.spec.base_dns
        if len(self.delete_phase) == len(bases):
            return DeltaEnd(None, removed=self.removed - self.given)
        present = self.present | self.given
        for base in self.delete_phase:
            present.update(
                sweep(self.source, self.source.search_filter, f"sweeping {base}", [base])
            )
        return DeltaEnd(None, present=present)


def _last_sweep(state: Mapping[str, Any]) -> str | None:
    """When the cursor's last sweep began (ISO 8601), None when unknown."""
    swept = state.get("swept")
    if not isinstance(swept, str):
        return None
    try:
        datetime.fromisoformat(swept)
    except ValueError:
        return None
    return swept


def _sweep_due(every_minutes: float, swept: str | None, now: str) -> str | None:
    """None when this read sweeps; else the note saying when the next sweep is due."""
    if not every_minutes or swept is None:
        return None
    age = datetime.fromisoformat(now) - datetime.fromisoformat(swept)
    if age < timedelta(0) or age >= timedelta(minutes=every_minutes):
        return None
    return (
        "deletions and moves out of scope are looked for every "
        f"{every_minutes:g} min (directory.deletion_sweep_every_minutes); the last sweep "
        f"was {age.total_seconds() / 60:.0f} min ago: not this time"
    )


def _chain(first: wire.Message, rest: Iterator[wire.Message]) -> Iterator[wire.Message]:
    yield first
    yield from rest
