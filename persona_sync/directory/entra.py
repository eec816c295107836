"""Microsoft Entra ID through Microsoft Graph: msal for the app token, msgraph-sdk for HTTP.

This module reads users, looks up managers outside the scope and sets up directory
extensions; entra_graph.py holds the connection (token, retries, error translation) and
entra_write.py the compare-and-swap writes. Payloads are Graph's own JSON, so extension
attributes, nested ``onPremisesExtensionAttributes`` and custom security attributes keep
their Graph names, and ``$batch`` sub-responses keep their error bodies.

An employee's id is the user principal name; its dn is the object id, which is what
``manager`` links name and what the snapshot keys it by. Disabled users are outside the
scope (unless include_disabled), but still head their reports' chains: lookup_managers
fetches them by id. Incremental reads (``/users/delta``) live in entra_delta.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from persona_sync.config import EntraDirectoryConfig
from persona_sync.directory.base import (
    Cancel,
    Change,
    ChangeResult,
    Checks,
    Cursor,
    DeltaRead,
    Directory,
    DirectoryAborted,
    ReadBack,
)
from persona_sync.directory.entra_auth import Credential, load_credential
from persona_sync.directory.entra_checks import entra_checks
from persona_sync.directory.entra_delta import REREAD_LIMIT, DeltaReader
from persona_sync.directory.entra_graph import Clock, GraphClient, Reply, graph_error
from persona_sync.directory.entra_write import Writer, flatten, read_back
from persona_sync.employee import Employee
from persona_sync.errors import DirectoryError
from persona_sync.logs import get_logger

__all__ = ["Credential", "EntraDirectory", "load_credential"]

log = get_logger(__name__)

PAGE_SIZE = 999
ALWAYS_SELECTED = ("id", "userPrincipalName", "accountEnabled", "onPremisesSyncEnabled")
MANAGER_SELECT = "$select=id,userPrincipalName&$expand=manager($select=id)"
ON_PREMISES = "onpremisesextensionattributes."
OWNED_BY = (
    "grant the app the application permission Application.ReadWrite.OwnedBy with admin "
    "consent, and make the app an owner of its own registration"
)
SYNCED_REASON = (
    "mastered on-premises (synced from Active Directory): write the persona in AD; "
    "Entra Connect carries it to Entra ID"
)


class EntraDirectory(Directory):
    """Users of one Entra ID tenant."""

    batch_size = 2000  # per journal batch; sent as $batch requests of 20
    reread_limit = REREAD_LIMIT  # delta: more changed users than this, a full read

    def __init__(
        self, spec: EntraDirectoryConfig, credential: Credential, clock: Clock | None = None
    ) -> None:
        self.spec = spec
        self.credential = credential
        self.identity = f"entra:{spec.tenant_id.casefold()}"
        self.graph = GraphClient(spec, credential, clock)
        self._loop = asyncio.new_event_loop()
        self._properties: frozenset[str] | None = None

    # --- plumbing ---------------------------------------------------------------------

    def _run(self, coroutine: Awaitable[Any]) -> Any:
        return self._loop.run_until_complete(coroutine)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self.graph.aclose())
            self._loop.close()

    def diagnose(self, targets: Sequence[str]) -> Checks:
        return entra_checks(self, targets)

    def token(self) -> str:
        """An app token from msal (cached by msal); Entra's errors explained."""
        return self.graph.token()

    def _get(self, url: str) -> Any:
        return self._run(self.graph.get(url))

    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> Reply:
        """A GET retried within the budget; its final reply (2xx or an error)."""
        reply: Reply = self._run(self.graph.fetch(url, headers))
        return reply

    def get_many(self, urls: Mapping[str, str]) -> dict[str, Reply]:
        """GETs in $batch requests, each retried within the budget; the final replies."""
        replies: dict[str, Reply] = self._run(self.graph.get_many(urls))
        return replies

    # --- reading ----------------------------------------------------------------------

    def key(self, employee: Employee) -> str:
        """The object id (the employee's dn), which survives renames of the UPN."""
        return employee.dn.casefold()

    def graph_properties(self) -> frozenset[str]:
        """Lower-case names of the Graph user properties, from the SDK's own model."""
        if self._properties is None:
            from msgraph.generated.models.user import User

            self._properties = frozenset(k.lower() for k in User().get_field_deserializers())
        return self._properties

    def select(self, attributes: Sequence[str]) -> list[str]:
        """The $select for these attributes (top-level Graph names, lower-case, sorted)."""
        known = self.graph_properties()
        selected = {a.lower() for a in ALWAYS_SELECTED}
        for attribute in attributes:
            name = attribute.lower()
            top = name.split(".", 1)[0]
            if name == "manager":
                continue  # comes from $expand
            if top in known or top.startswith("extension_"):
                selected.add(top)
        return sorted(selected)

    def read(self, attributes: Sequence[str]) -> Iterator[Employee]:
        select = self.select(attributes)
        members = self.group_members() if self.spec.scope.group_id else None
        return self.read_all(select, members)

    def read_delta(self, attributes: Sequence[str], cursor: Cursor | None) -> DeltaRead:
        """Users changed since ``cursor`` from /users/delta (see entra_delta), or all of
        them, with the reason, when there is no cursor or it cannot be used."""
        return DeltaReader(self, list(attributes), self.reread_limit).read(cursor)

    def read_all(self, select: list[str], members: set[str] | None) -> Iterator[Employee]:
        """Every user in scope (``members``: the group's, when the scope is a group)."""
        url: str | None = f"/users?{self._query(select)}&$top={PAGE_SIZE}"
        count = 0
        while url is not None:
            reply = self.fetch(url)
            if not reply.ok:
                raise DirectoryError(self.read_error(reply, select))
            page = reply.body or {}
            for item in page.get("value", []):
                if members is not None and item.get("id") not in members:
                    continue
                count += 1
                yield _employee(item)
            url = page.get("@odata.nextLink")
        log.info("entra_read", users=count)

    def user_url(self, select: list[str], user: str) -> str:
        """The read of one user by object id with the scope's filter: no user in the
        answer when it is out of scope."""
        literal = "'" + user.replace("'", "''") + "'"  # an OData string literal
        return "/users?" + self._query(select, f"id eq {literal}")

    def employee(self, item: dict[str, Any]) -> Employee:
        return _employee(item)

    def _query(self, select: list[str], only: str | None = None) -> str:
        filters = [only] if only else []
        if not self.spec.scope.include_disabled:
            filters.append("accountEnabled eq true")
        if self.spec.scope.filter:
            filters.append(f"({self.spec.scope.filter})")
        query = f"$select={','.join(select)}&$expand=manager($select=id)"
        if filters:
            query += "&$filter=" + quote(" and ".join(filters), safe="'()")
        return query

    def read_error(self, reply: Reply, select: Sequence[str]) -> str:
        """What a refused read means; a directory extension Graph does not know is one
        nobody created yet (or one of another app)."""
        if reply.status == 400:
            message = reply.message.casefold()
            for name in select:
                if name.startswith("extension_") and name.casefold() in message:
                    return self._unknown_extension(name, reply)
        return graph_error(reply)

    def _unknown_extension(self, name: str, reply: Reply) -> str:
        short = name.split("_", 2)[2] if name.count("_") >= 2 else name
        ours = self.extension_name(short)
        said = f"Graph answered {reply.status} {reply.code}: {reply.message}"
        if ours.casefold() != name.casefold():
            return (
                f"the directory extension {name} does not exist ({said}); its name is not "
                f"this app's: persona-sync creates {ours} with `persona-sync entra "
                f"create-extension {short}`: use that name as the target"
            )
        return (
            f"the directory extension {name} does not exist ({said}); create it with "
            f"`persona-sync entra create-extension {short}`"
        )

    def group_members(self) -> set[str]:
        """Object ids of the scope group's transitive members (users only)."""
        members: set[str] = set()
        url: str | None = (
            f"/groups/{self.spec.scope.group_id}/transitiveMembers/"
            f"microsoft.graph.user?$select=id&$top={PAGE_SIZE}"
        )
        while url is not None:
            page = self._get(url) or {}
            members.update(str(m["id"]) for m in page.get("value", []))
            url = page.get("@odata.nextLink")
        return members

    def lookup_managers(self, dns: Sequence[str]) -> list[Employee]:
        """Users outside the scope (disabled, filtered out, not in the group) that head
        employees' chains: id (UPN), object id and their own manager, nothing else."""
        if not dns:
            return []
        replies = self._run(
            self.graph.get_many({dn: f"/users/{quote(dn)}?{MANAGER_SELECT}" for dn in dns})
        )
        found: list[Employee] = []
        for dn in dns:
            reply = replies[dn]
            if reply.ok and isinstance(reply.body, dict) and reply.body.get("id"):
                found.append(_employee(reply.body))
            elif reply.status != 404:  # a deleted manager is the org chart's "not found"
                raise DirectoryError(f"reading manager {dn} failed: {reply.describe()}")
        log.info("entra_managers_looked_up", wanted=len(dns), found=len(found))
        return found

    def unwritable_reason(self, employee: Employee, attribute: str) -> str | None:
        if (
            attribute.lower().startswith(ON_PREMISES)
            and employee.attributes.get("onpremisessyncenabled") == "true"
        ):
            return SYNCED_REASON
        return None

    # --- writing ----------------------------------------------------------------------

    def apply(self, changes: Sequence[Change], cancel: Cancel | None = None) -> list[ChangeResult]:
        """Compare-and-swap in $batch requests (see entra_write); raises DirectoryAborted
        at the first error that would repeat for every change."""
        writer = Writer(self.graph)
        self._run(writer.apply(changes, cancel))
        if writer.aborted is not None:
            done = [writer.results[i] for i in sorted(writer.results)]
            raise DirectoryAborted(writer.aborted, done) from None
        return [writer.results[i] for i in range(len(changes))]

    def read_back(self, changes: Sequence[Change]) -> list[ReadBack]:
        result: list[ReadBack] = self._run(read_back(self.graph, changes))
        return result

    # --- set-up helpers ---------------------------------------------------------------

    def extension_name(self, name: str) -> str:
        return f"extension_{self.spec.client_id.replace('-', '')}_{name}"

    def ensure_extension(self, name: str, dry_run: bool) -> tuple[str, bool]:
        """Create the directory extension ``name`` on this app if missing.

        Returns its full name and whether it was (or, with dry_run, would be) created.
        """
        full = self.extension_name(name)
        app = self._app_get(f"/applications?$filter=appId eq '{self.spec.client_id}'&$select=id")
        found = (app or {}).get("value", [])
        if not found:
            raise DirectoryError(
                f"application {self.spec.client_id} not found: the app may not read its own "
                f"registration; {OWNED_BY}"
            )
        object_id = found[0]["id"]
        existing = self._app_get(f"/applications/{object_id}/extensionProperties")
        if any(p.get("name") == full for p in (existing or {}).get("value", [])):
            return full, False
        if not dry_run:
            self._run(self._create_extension(object_id, name))
        return full, True

    def _app_get(self, url: str) -> Any:
        """A read of the app's registration; a refusal names the permission it needs."""
        reply = self.fetch(url)
        if reply.status == 403:
            raise DirectoryError(
                f"Graph refused to read the app's registration ({reply.status} {reply.code}: "
                f"{reply.message}); {OWNED_BY}"
            )
        if not reply.ok:
            raise DirectoryError(graph_error(reply))
        return reply.body

    async def _create_extension(self, object_id: str, name: str) -> None:
        """POST once more only after a 429 (nothing created); after a lost answer or a 5xx
        the extension may exist, and running the command again finds it."""
        from persona_sync.directory.entra_graph import Backoff, Lost

        body = {"name": name, "dataType": "String", "targetObjects": ["User"]}
        url = f"/applications/{object_id}/extensionProperties"
        clock = self.graph.clock
        deadline = clock.now() + self.graph.budget
        backoff = Backoff(self.spec.retry_cap)
        while True:
            try:
                reply = await self.graph.send("POST", url, body)
            except Lost as exc:
                problem = f"Microsoft Graph did not answer ({exc})"
                break
            self.graph.writes.record([reply])
            if reply.status != 429:
                if reply.ok:
                    return
                if reply.status == 403:
                    raise DirectoryError(
                        f"Graph refused to create the extension ({reply.status} {reply.code}: "
                        f"{reply.message}); {OWNED_BY}"
                    )
                if reply.status < 500:
                    raise DirectoryError(graph_error(reply))
                problem = reply.describe()
                break
            delay = backoff.delay([reply.retry_after()])
            if clock.now() + delay > deadline:
                raise DirectoryError(f"{reply.describe()}; nothing created, try again later")
            await self.graph.pause(delay, self.graph.writes.why(backoff.hinted))
        raise DirectoryError(
            f"{problem}: the extension may have been created; run the command again to see"
        )


def _employee(item: dict[str, Any]) -> Employee:
    attributes: dict[str, str] = {}
    flatten(item, "", attributes)
    manager = item.get("manager")
    if isinstance(manager, dict) and manager.get("id"):
        attributes["manager"] = str(manager["id"])
    attributes.pop("manager.id", None)
    return Employee(str(item.get("userPrincipalName") or item["id"]), str(item["id"]), attributes)
