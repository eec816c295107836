"""GET /users/delta (also /users/delta() and /users/microsoft.graph.delta()).

As Microsoft documents it (user: delta; "Use delta query to track changes"; "Get
incremental changes for users"):

- A first call returns every user, page by page with @odata.nextLink; the last page
  carries @odata.deltaLink. Calling the deltaLink returns the users changed since, by a
  PATCH or by the test (set_property, add_user, restore_user, or even editing fake.users
  directly: the comparison is with a snapshot taken when the round started).
- With $select only the selected properties are tracked and returned: a change to another
  property does not make the user appear. "manager" may be selected: the manager comes as
  the annotation manager@delta, a list of one {"@odata.type", "id"}; a manager taken away
  comes with "@removed" in that entry.
- A changed user comes, by default, with every selected property (the unchanged ones with
  their value): "at least the properties that have been updated". A property never set is
  left out; one cleared in this round comes as null. With `Prefer: return=minimal` only the
  properties changed in this round come.
- A deleted user comes as {"id", "@removed": {"reason": "changed"}} while it can still be
  restored (delete_user), with reason "deleted" once it is gone for good (remove_user). A
  restored user comes again as a user, with no annotation.

Choices where the documentation is silent: manager@delta is on every user of a first
round that has a manager, and in later rounds only on users whose manager changed (the
annotation describes a change of the relationship); a property is "never set" when it is
empty and did not change in this round.

Tokens: an unknown or expired $deltatoken gets 400 syncStateNotFound (what Graph answers
for a directory delta token past its 7 days); after `reset_sync()` every earlier
deltaLink gets 410 Gone with a Location header (Graph's "synchronization reset"). A client
should treat both as "do a full read again". `$deltatoken=latest` returns no users and a
deltaLink from now ("sync from now").
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import errors, odata
from .directory import DEFAULT_USER_SELECT
from .operation import READ_USERS, Answer, Operation, require

if TYPE_CHECKING:
    from .graph import GraphApi

USER_TYPE = "#microsoft.graph.user"


@dataclass
class DeltaState:
    """What a deltaLink remembers: the selection and the tenant as it was."""

    select: tuple[str, ...] | None
    manager: bool  # "manager" was selected
    sequence: int
    snapshot: dict[str, dict[str, str]]  # user id -> tracked property -> JSON of its value
    reset: bool = False


@dataclass
class Round:
    """One pass of pages: the ids to report (with the properties changed since the
    previous state, None in a first round), then the state its deltaLink will hold."""

    ids: list[str]
    removed: list[str]
    previous: DeltaState | None
    next_state: DeltaState
    changes: dict[str, set[str]] = field(default_factory=dict)
    pages: dict[str, int] = field(default_factory=dict)  # $skiptoken -> offset


class DeltaQuery:
    def __init__(self, api: GraphApi) -> None:
        self.api = api
        self.directory = api.directory
        self._states: dict[str, DeltaState] = {}
        self._rounds: dict[str, Round] = {}  # $skiptoken -> its round

    def expire_tokens(self) -> None:
        """Forget every deltaLink (as after 7 days): they now get 400 syncStateNotFound."""
        self._states.clear()

    def reset_sync(self) -> None:
        """Make every deltaLink issued so far answer 410 Gone (synchronization reset)."""
        for state in self._states.values():
            state.reset = True

    def handle(self, operation: Operation, match: re.Match[str]) -> Answer:
        require(operation, READ_USERS)
        options = {k.lower(): v for k, v in operation.query.items()}
        for option in options:
            if option in {"$top", "$orderby", "$expand"}:
                raise errors.unsupported_query()  # documented as unsupported on users delta
            if option.startswith("$") and option not in {"$select", "$deltatoken", "$skiptoken"}:
                raise errors.unsupported_option(option)
        prefer = operation.headers.get("prefer", "")
        page_size = _max_page_size(prefer) or self.api.page_size
        minimal = re.search(r"return\s*=\s*minimal", prefer, re.I) is not None
        if "$skiptoken" in options:
            round_ = self._rounds.get(options["$skiptoken"])
            if round_ is None:
                raise errors.expired_page_token()
            return self._page(round_, round_.pages[options["$skiptoken"]], page_size, minimal)
        select, manager = self._select(options.get("$select"))
        token = options.get("$deltatoken")
        if token is None:
            state = self._capture(select, manager)
            round_ = Round(sorted(self.directory.users), [], None, state)
            return self._page(round_, 0, page_size, minimal)
        if token.lower() == "latest":
            state = self._capture(select, manager)
            return Answer(
                200, self._body(state.select, [], "@odata.deltaLink", self._remember(state))
            )
        previous = self._states.get(token)
        if previous is None:
            raise errors.sync_state_not_found()
        if previous.reset:
            raise errors.resync_required(self.api.link("/users/delta()", {}))
        changes, removed = self._changes(previous)
        state = self._capture(previous.select, previous.manager)
        round_ = Round(sorted(changes), removed, previous, state, changes)
        return self._page(round_, 0, page_size, minimal)

    def _select(self, text: str | None) -> tuple[tuple[str, ...] | None, bool]:
        if text is None:
            return None, False
        names = [n.strip() for n in text.split(",")]
        manager = any(n.lower() == "manager" for n in names)
        rest = ",".join(n for n in names if n and n.lower() != "manager")
        select = odata.parse_select(rest, self.directory) or ()
        return select, manager

    def _tracked(
        self, state_select: tuple[str, ...] | None, manager: bool, user: dict[str, Any]
    ) -> dict[str, str]:
        names = [n for n in user if n != "manager"] if state_select is None else list(state_select)
        if manager or state_select is None:
            names.append("manager")
        return {n: json.dumps(user.get(n), sort_keys=True) for n in names if n != "id"}

    def _capture(self, select: tuple[str, ...] | None, manager: bool) -> DeltaState:
        snapshot = {
            uid: self._tracked(select, manager, user) for uid, user in self.directory.users.items()
        }
        return DeltaState(select, manager, self.directory.sequence, snapshot)

    def _changes(self, previous: DeltaState) -> tuple[dict[str, set[str]], list[str]]:
        """Users with a tracked property changed since `previous` (and which ones: a value
        that differs, or one set again, even to what it was), and users gone since."""
        changes: dict[str, set[str]] = {}
        for uid in sorted(self.directory.users):
            now = self._tracked(previous.select, previous.manager, self.directory.users[uid])
            before = previous.snapshot.get(uid)
            marks = self.directory.changed.get(uid, {})
            changed = {
                name
                for name, value in now.items()
                if before is None
                or before.get(name) != value
                or marks.get(name, 0) > previous.sequence
            }
            if changed:
                changes[uid] = changed
        gone = {uid for uid in previous.snapshot if uid not in self.directory.users}
        gone |= {  # deleted since, even if already reported as deleted (purged for good)
            uid
            for uid, sequence in self.directory.removed.items()
            if sequence > previous.sequence and uid not in self.directory.users
        }
        return changes, sorted(gone)

    def _remember(self, state: DeltaState) -> str:
        token = secrets.token_urlsafe(32)
        self._states[token] = state
        return token

    def _page(self, round_: Round, offset: int, size: int, minimal: bool) -> Answer:
        entries = [(uid, False) for uid in round_.ids] + [(uid, True) for uid in round_.removed]
        chunk = entries[offset : offset + size]
        value = [self._render(round_, uid, removed, minimal) for uid, removed in chunk]
        if offset + size < len(entries):
            token = secrets.token_urlsafe(32)
            round_.pages[token] = offset + size
            self._rounds[token] = round_
            body = self._body(round_.next_state.select, value, "@odata.nextLink", token)
        else:
            body = self._body(
                round_.next_state.select,
                value,
                "@odata.deltaLink",
                self._remember(round_.next_state),
            )
        return Answer(200, body)

    def _body(
        self, select: tuple[str, ...] | None, value: list[dict[str, Any]], link: str, token: str
    ) -> dict[str, Any]:
        names = ",".join(select or DEFAULT_USER_SELECT)
        key = "$skiptoken" if link == "@odata.nextLink" else "$deltatoken"
        return {
            "@odata.context": f"{self.api.graph_url}/$metadata#users({names})",
            "value": value,
            link: self.api.link("/users/delta()", {key: token}),
        }

    def _render(self, round_: Round, uid: str, removed: bool, minimal: bool) -> dict[str, Any]:
        user = self.directory.users.get(uid)
        if removed or user is None:
            return {"id": uid, "@removed": {"reason": self.directory.removal_reason(uid)}}
        state = round_.next_state
        changed = round_.changes.get(uid)  # None in a first round: everything is new
        full = odata.render_user(user, state.select, self.directory, nulls_for_extensions=True)
        out: dict[str, Any] = {}
        for name, value in full.items():
            changed_now = changed is not None and name in changed
            if name != "id" and minimal and changed is not None and not changed_now:
                continue  # return=minimal: only what changed in this round
            if value is None and not changed_now:
                continue  # never set: left out (cleared in this round: null)
            out[name] = value
        if state.manager and (changed is None or "manager" in changed):
            manager = user.get("manager")
            before = round_.previous.snapshot.get(uid, {}) if round_.previous else {}
            old = json.loads(before.get("manager", "null"))
            if manager:
                out["manager@delta"] = [{"@odata.type": USER_TYPE, "id": manager}]
            elif old:
                out["manager@delta"] = [
                    {"@odata.type": USER_TYPE, "id": old, "@removed": {"reason": "deleted"}}
                ]
        return out


def _max_page_size(prefer: str) -> int | None:
    match = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", prefer, re.I)
    return int(match.group(1)) if match else None
