"""The servers a crash campaign runs against, each with its own record of what was written.

A target can say how many writes it applied so far (to pick a kill point), freeze itself at
a kill point (so the client cannot finish before the SIGKILL lands), thaw, wait until no
connection of a dead client is left (so none of its writes can land later), and hand over
its write log and every employee's current value.

- slapd: the auditlog overlay's LDIF (one record per successful modify, written by slapd in
  the write's own thread); frozen with SIGSTOP; idle when cn=Monitor lists only the
  connection asking.
- Graph fake: its `writes` log; frozen by an `after` action that blocks the fake's handler
  thread right after the Nth PATCH (or GET) it processed; idle when it holds no connection.
"""

from __future__ import annotations

import base64
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Protocol

from tests.fakegraph import FakeEntra
from tests.ldap.conftest import canonical_dn, entries
from tests.proof.journals import Key, ServerWrite, change_key, value
from tests.servers.slapd import SlapdServer

IDLE_TIMEOUT = 60.0
END_OF_MODIFY = b"# end modify"


class CrashTarget(Protocol):
    name: str
    attribute: str
    poll_seconds: float

    def write_count(self) -> int: ...

    def arm(self, kind: str, count: int) -> None:
        """Freeze once this run has made `count` more writes ("write") or reads ("read-back")."""

    def frozen(self) -> bool: ...

    def thaw(self) -> None: ...

    def wait_idle(self) -> None: ...

    def server_writes(self) -> list[ServerWrite]: ...

    def values(self) -> dict[Key, str | None]: ...


def _wait(condition: Callable[[], bool], what: str, timeout: float = IDLE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.01)


class SlapdTarget:
    name = "slapd"
    poll_seconds = 0.001  # slapd writes thousands a second: look often, overshoot little

    def __init__(self, server: SlapdServer, employees: list[str], attribute: str) -> None:
        self.server = server
        self.attribute = attribute
        self._employees = [canonical_dn(dn) for dn in employees]
        self._seen = 0  # bytes of the audit log already counted
        self._count = 0
        self._goal: int | None = None

    def write_count(self) -> int:
        path = self.server.audit_log_file
        try:
            with path.open("rb") as handle:
                # Records are appended whole (under slapd's mutex, one fclose per record), but
                # a read may end inside one: count up to the last complete marker only.
                handle.seek(self._seen)
                chunk = handle.read()
        except FileNotFoundError:
            return 0
        end = chunk.rfind(END_OF_MODIFY)
        if end >= 0:
            self._count += chunk.count(END_OF_MODIFY, 0, end + len(END_OF_MODIFY))
            self._seen += end + len(END_OF_MODIFY)
        return self._count

    def arm(self, kind: str, count: int) -> None:
        if kind != "write":
            raise ValueError(f"slapd kill points count writes, not {kind}")
        self._goal = self.write_count() + count

    def frozen(self) -> bool:
        if self._goal is None or self.write_count() < self._goal:
            return False
        self.server.pause()
        return True

    def thaw(self) -> None:
        self._goal = None
        self.server.resume()

    def wait_idle(self) -> None:
        _wait(lambda: self.server.open_connections() == 1, "slapd closing the dead client")

    def server_writes(self) -> list[ServerWrite]:
        text = self.server.audit_log_file.read_text(encoding="utf-8")
        return audit_writes(text, self.attribute)

    def values(self) -> dict[Key, str | None]:
        found = entries(self.server.dump(self.server.people_dn))
        prefix = f"{self.attribute.casefold()}: "
        current: dict[Key, str | None] = {}
        for dn in self._employees:
            lines = [ln for ln in found[dn] if ln.casefold().startswith(prefix)]
            current[(dn, self.attribute.casefold())] = lines[0][len(prefix) :] if lines else None
        return current


def audit_writes(text: str, attribute: str) -> list[ServerWrite]:
    """The modifies of `attribute` in slapo-auditlog LDIF, in order. Complete records only
    (`# modify ...` to `# end modify ...`); wrapped lines and base64 values are decoded."""
    writes = []
    wanted = attribute.casefold()
    for block in text.split("\n# end modify")[:-1]:
        start = block.rfind("# modify ")
        if start < 0:
            continue
        record = block[start:]
        lines = _unfold(record.splitlines()[1:])
        dn = next(v for name, v in lines if name == "dn")
        old: str | None = None
        new: str | None = None
        touched = False
        operation = ""
        for name, item in lines:
            if name in ("add", "delete", "replace"):
                operation = name if item.casefold() == wanted else ""
                if operation:
                    touched = True
                    if operation in ("delete", "replace"):
                        new = None
            elif name.casefold() == wanted and operation:
                if operation == "delete":
                    old = value(item)
                else:
                    new = value(item)
        if touched:
            writes.append(ServerWrite(change_key(dn, attribute), old, new, record.strip()))
    return writes


def _unfold(lines: list[str]) -> list[tuple[str, str]]:
    joined: list[str] = []
    for line in lines:
        if line.startswith(" ") and joined:
            joined[-1] += line[1:]
        elif line and not line.startswith("#") and line != "-":
            joined.append(line)
    pairs = []
    for line in joined:
        name, _, rest = line.partition(":")
        if rest.startswith(":"):
            pairs.append((name, base64.b64decode(rest[1:].strip()).decode("utf-8")))
        else:
            pairs.append((name, rest.strip()))
    return pairs


class GraphTarget:
    name = "graph"
    poll_seconds = 0.01  # the fake blocks itself at the kill point; it shares our GIL

    def __init__(self, fake: FakeEntra, user_ids: list[str], attribute: str) -> None:
        self.fake = fake
        self.attribute = attribute
        self._user_ids = user_ids
        self._frozen = threading.Event()
        self._release = threading.Event()

    def write_count(self) -> int:
        return len(self.fake.writes)

    def arm(self, kind: str, count: int) -> None:
        method = {"write": "PATCH", "read-back": "GET"}[kind]
        frozen, release = self._frozen, self._release

        def freeze() -> None:
            # Runs in the fake's handler thread right after the Nth operation: that
            # request's answer (and the rest of its batch) waits here while the client is
            # killed. Bound to this kill point's events: if it fires late (the run ended
            # first), the thaw has already released it.
            frozen.set()
            release.wait(IDLE_TIMEOUT)

        self.fake.faults.after(count, freeze, methods=[method])

    def frozen(self) -> bool:
        return self._frozen.is_set()

    def thaw(self) -> None:
        self.fake.faults.reset()
        self._release.set()
        self._frozen, self._release = threading.Event(), threading.Event()

    def wait_idle(self) -> None:
        try:
            _wait(lambda: self.fake.open_connections == 0, "the fake closing the dead client")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the fake's threads:\n{_fake_threads()}") from None

    def server_writes(self) -> list[ServerWrite]:
        return [
            ServerWrite(
                change_key(w.user_id, w.property),
                value(w.old),
                value(w.new),
                f"PATCH /users/{w.user_id} {w.property}: {w.old!r} -> {w.new!r}",
            )
            for w in list(self.fake.writes)
            if w.property.casefold() == self.attribute.casefold()
        ]

    def values(self) -> dict[Key, str | None]:
        outer, _, inner = self.attribute.partition(".")
        current: dict[Key, str | None] = {}
        for user_id in self._user_ids:
            user = self.fake.users[user_id]
            held = (user.get(outer) or {}).get(inner) if inner else user.get(outer)
            current[change_key(user_id, self.attribute)] = value(held)
        return current


def _fake_threads() -> str:
    """Where the fake's connection threads are, for a report of a connection that stays."""
    frames = sys._current_frames()
    shown = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or 0)
        stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
        if "fakegraph" in stack:
            shown.append(f"{thread.name}:\n{stack}")
    return "\n".join(shown) or "(none)"
