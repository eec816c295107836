"""Incremental reads of Entra ID users: /users/delta says who changed; reading those users
by id says what they are now.

Graph reports a change only to a property in the delta's ``$select``, so the selection is
what a full read selects, plus ``manager`` (a changed manager comes as ``manager@delta``)
and the properties the scope filter names (a user who stops or starts matching it then
shows up). Delta supports no ``$filter`` on those properties and no ``$expand``.

Why read the changed users again rather than take the delta's items as they are: whether
an unchanged manager comes with a changed user is not documented (``manager@delta``
describes a change of the link), and the scope (the ``$filter``, disabled accounts, the
group) cannot be asked of a delta. Reading each changed user by id with the $select,
$expand and $filter of a full read yields exactly the entry a full read would, or nothing
when the user left the scope (reported removed). That costs one ``$batch`` sub-request per
changed user; past ``reread_limit`` users a full read is cheaper, and is done instead.

A full read (no cursor yet, or one that cannot be used) first takes ``$deltatoken=latest``
and then reads every user as ``read()`` does. A change made after the token was taken
comes in the next delta (and may be read twice: harmless); none is lost between the two.
The initial delta round would do as well but cannot be filtered: it returns every user,
disabled ones too, page by page.

Group scope: the delta of users says nothing about group membership, so each delta read
also reads the group's transitive members (ids only) and compares them with the cursor's:
who joined is read, who left is removed.

The cursor ("graph-delta") holds the deltaLink (a change-tracking position, not a
credential), what it tracks (tenant, $select, scope) and, for a group scope, the member
ids. Graph keeps delta tokens 7 days: an older cursor, a syncStateNotFound answer or a
410 (synchronization reset) means a full read, and the run says why.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from persona_sync.directory.base import Cursor, DeltaEnd, DeltaRead
from persona_sync.directory.entra_graph import Reply, graph_error
from persona_sync.employee import Employee
from persona_sync.errors import DirectoryError
from persona_sync.logs import get_logger

if TYPE_CHECKING:
    from persona_sync.directory.entra import EntraDirectory

log = get_logger(__name__)

KIND = "graph-delta"
TOKEN_DAYS = 7  # Graph's lifetime of a directory delta token
REREAD_LIMIT = 10_000
PAGE_PREFERENCE = {"Prefer": "odata.maxpagesize=999"}
_LITERAL = re.compile(r"'(?:[^']|'')*'")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Untracked(Exception):
    """The delta link cannot be used any more; ``reason`` says why, in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Tracking:
    """What a delta link tracks; a cursor made for other tracking cannot be used."""

    tenant: str
    select: tuple[str, ...]  # lower-case, sorted; "manager" included
    filter: str | None
    group_id: str | None
    include_disabled: bool

    def scope(self) -> dict[str, Any]:
        fields = asdict(self)
        return {k: fields[k] for k in ("filter", "group_id", "include_disabled")}


class DeltaReader:
    """One delta read of an EntraDirectory (see the module docstring)."""

    def __init__(self, directory: EntraDirectory, attributes: list[str], reread_limit: int) -> None:
        self.directory = directory
        self.graph = directory.graph
        spec = directory.spec
        self.select = directory.select(attributes)
        tracked = {*self.select, "manager", *filter_properties(spec.scope.filter, directory)}
        self.tracking = Tracking(
            spec.tenant_id.casefold(),
            tuple(sorted(tracked)),
            spec.scope.filter,
            spec.scope.group_id,
            spec.scope.include_disabled,
        )
        self.reread_limit = reread_limit

    def read(self, cursor: Cursor | None) -> DeltaRead:
        if cursor is None:
            return self._full("no cursor yet: first run")
        reason = self._unusable(cursor)
        if reason is not None:
            return self._full(reason)
        taken = _now()
        try:
            changed, gone, link = self._round(str(cursor.state["delta_link"]))
        except Untracked as exc:
            return self._full(exc.reason)
        removed = set(gone)
        notes: list[str] = []
        members: set[str] | None = None
        wanted = changed - removed
        if self.tracking.group_id is not None:
            members = self.directory.group_members()
            before = {str(m) for m in cursor.state.get("members") or ()}
            joined, left = members - before, before - members
            removed |= {_key(u) for u in left} | {_key(u) for u in wanted if u not in members}
            wanted = {u for u in wanted if u in members} | joined
            if joined or left:
                notes.append(
                    f"group {self.tracking.group_id}: {len(joined)} joined, {len(left)} left"
                )
        if len(wanted) > self.reread_limit:
            return self._full(
                f"{len(wanted):,} users changed since the last read: one full read costs less "
                f"than reading more than {self.reread_limit:,} users one by one",
                link=link,
                taken=taken,
                members=members,
            )
        following = self._cursor(link, taken, members)
        log.info("entra_delta_read", changed=len(wanted), removed=len(removed))

        def entries() -> Iterator[Employee]:
            for user, employee in self._reread(sorted(wanted), members):
                if employee is None:
                    removed.add(_key(user))  # left the scope (or the tenant) meanwhile
                else:
                    yield employee

        return DeltaRead(
            entries(),
            lambda: DeltaEnd(following, removed=sorted(removed)),
            full=False,
            notes=notes,
        )

    # --- the cursor -------------------------------------------------------------------

    def _unusable(self, cursor: Cursor) -> str | None:
        """Why ``cursor`` cannot be used (None: it can), in words ending "full read"."""
        if cursor.kind != KIND:
            return f"the saved cursor is not a Graph delta link ({cursor.kind}): full read"
        state = cursor.state
        link = state.get("delta_link")
        if not isinstance(link, str) or not link:
            return "the saved cursor holds no delta link: full read"
        if state.get("tenant") != self.tracking.tenant:
            return (
                f"the saved delta link is for tenant {state.get('tenant')}, not "
                f"{self.tracking.tenant}: full read"
            )
        host = urlsplit(link).netloc
        if host.casefold() != urlsplit(self.directory.spec.graph_endpoint).netloc.casefold():
            return f"the saved delta link is for another Graph ({host}): full read"
        before = {str(s) for s in state.get("select") or ()}
        now = set(self.tracking.select)
        if before != now:
            parts = []
            if now - before:
                parts.append("now also " + ", ".join(sorted(now - before)))
            if before - now:
                parts.append("no longer " + ", ".join(sorted(before - now)))
            return (
                f"the attributes read changed ({'; '.join(parts)}) and the delta link did not "
                "track them: full read"
            )
        scope = self.tracking.scope()
        saved = state.get("scope")
        if saved != scope:
            was: Mapping[str, Any] = saved if isinstance(saved, Mapping) else {}
            changes = [
                f"{name} was {_show(was.get(name))}, now {_show(value)}"
                for name, value in scope.items()
                if was.get(name) != value
            ]
            return f"the scope changed ({'; '.join(changes)}): full read"
        if self.tracking.group_id is not None and not isinstance(state.get("members"), list):
            return "the saved cursor holds no group members: full read"
        try:
            taken = _parse_time(cursor.taken)
        except ValueError:
            return f"the saved cursor's time {cursor.taken!r} is not a time: full read"
        age = _now() - taken
        if age > timedelta(days=TOKEN_DAYS):
            return f"the delta token is {_age(age)} old (they last {TOKEN_DAYS}): full read"
        return None

    def _cursor(self, link: str, taken: datetime, members: set[str] | None) -> Cursor:
        state: dict[str, Any] = {
            "delta_link": link,
            "tenant": self.tracking.tenant,
            "select": list(self.tracking.select),
            "scope": self.tracking.scope(),
        }
        if members is not None:
            state["members"] = sorted(members)
        return Cursor(KIND, state, _format_time(taken))

    # --- reading ----------------------------------------------------------------------

    def _full(
        self,
        reason: str,
        link: str | None = None,
        taken: datetime | None = None,
        members: set[str] | None = None,
    ) -> DeltaRead:
        """Every user in scope, after taking the delta position they are read from."""
        taken = taken or _now()
        if link is None:
            link = self._latest()
        if self.tracking.group_id is not None and members is None:
            members = self.directory.group_members()
        following = self._cursor(link, taken, members)
        log.info("entra_full_read", reason=reason)
        return DeltaRead(
            self.directory.read_all(self.select, members),
            lambda: DeltaEnd(following),
            full=True,
            reason=reason,
        )

    def _latest(self) -> str:
        """A delta link from now ($deltatoken=latest: no users, only the link)."""
        url = f"/users/delta?$select={','.join(self.tracking.select)}&$deltatoken=latest"
        reply = self.directory.fetch(url)
        if not reply.ok:
            raise DirectoryError(self.directory.read_error(reply, self.select))
        link = (reply.body or {}).get("@odata.deltaLink")
        if not isinstance(link, str):
            raise DirectoryError("Graph answered $deltatoken=latest without a delta link")
        return link

    def _round(self, link: str) -> tuple[set[str], set[str], str]:
        """One delta round from ``link``, every page: the ids of users changed, the keys
        of users removed (the last mention of a user decides) and the next delta link."""
        last: dict[str, bool] = {}  # user id -> removed
        url = link
        while True:
            reply = self.directory.fetch(url, PAGE_PREFERENCE)
            if not reply.ok:
                raise _delta_failure(reply, self.directory.read_error(reply, self.select))
            body = reply.body if isinstance(reply.body, dict) else {}
            for item in body.get("value") or []:
                if isinstance(item, dict) and item.get("id"):
                    user = str(item["id"])
                    last.pop(user, None)
                    last[user] = "@removed" in item
            following = body.get("@odata.nextLink")
            if isinstance(following, str):
                url = following
                continue
            delta = body.get("@odata.deltaLink")
            if not isinstance(delta, str):
                raise DirectoryError(
                    "Graph answered a delta page without @odata.nextLink or @odata.deltaLink"
                )
            changed = {user for user, gone in last.items() if not gone}
            return changed, {_key(user) for user, gone in last.items() if gone}, delta

    def _reread(
        self, users: list[str], members: set[str] | None
    ) -> Iterator[tuple[str, Employee | None]]:
        """Each user as a full read would return it now, or None when out of scope."""
        step = 20 * self.directory.spec.concurrency * 4
        for start in range(0, len(users), step):
            chunk = users[start : start + step]
            urls = {user: self.directory.user_url(self.select, user) for user in chunk}
            replies = self.directory.get_many(urls)
            for user in chunk:
                reply = replies[user]
                if reply.status == 404:
                    yield user, None
                    continue
                if not reply.ok:
                    raise DirectoryError(self.directory.read_error(reply, self.select))
                found = (reply.body or {}).get("value") or []
                in_group = members is None or user in members
                yield user, (self.directory.employee(found[0]) if found and in_group else None)


def filter_properties(text: str | None, directory: EntraDirectory) -> set[str]:
    """The user properties a $filter names (lower-case): a change to one of them can move
    a user into or out of the scope, so delta must track it."""
    if not text:
        return set()
    words = {w.lower() for w in _WORD.findall(_LITERAL.sub(" ", text))}
    return {w for w in words if w in directory.graph_properties() or w.startswith("extension_")}


def _delta_failure(reply: Reply, message: str) -> Exception:
    code = reply.code
    if code.casefold() == "syncstatenotfound":
        return Untracked(
            f"the delta token expired (Graph answered {reply.status} {code}): full read"
        )
    if reply.status == 410:
        return Untracked(
            f"Graph reset its change tracking (it answered 410 {code or 'Gone'}): full read"
        )
    if code.casefold() == "directory_expiredpagetoken":
        return Untracked(
            f"a page of the delta round expired (Graph answered {reply.status} {code}): full read"
        )
    return DirectoryError(message if message else graph_error(reply))


def _key(user: str) -> str:
    return user.casefold()


def _now() -> datetime:
    return datetime.now(UTC)


def _format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _age(age: timedelta) -> str:
    hours = age.seconds // 3600
    days = f"{age.days} day{'s' if age.days != 1 else ''}"
    return days if not hours else f"{days} and {hours} hour{'s' if hours != 1 else ''}"


def _show(value: Any) -> str:
    return "none" if value is None else repr(value) if isinstance(value, str) else str(value)
