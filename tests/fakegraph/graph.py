"""Microsoft Graph v1.0 resources of the fake: users, a user's manager, group members,
applications and their extension properties. $batch lives in batch.py, delta in delta.py.

Every handler takes an Operation (one HTTP request, or one $batch sub-request) whose
bearer token was already resolved to a Grant, and returns an Answer or raises GraphError.
The caller holds the directory lock.
"""

from __future__ import annotations

import re
import secrets
import urllib.parse
from collections.abc import Callable
from typing import Any

from . import errors, odata
from .delta import DeltaQuery
from .directory import Application, Directory
from .operation import READ_USERS, Answer, Operation, require
from .userpatch import patch_user

READ_MEMBERS = frozenset({
    "GroupMember.Read.All", "GroupMember.ReadWrite.All", "Group.Read.All",
    "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All",
})  # fmt: skip
READ_ATTRIBUTES = frozenset({
    "CustomSecAttributeAssignment.Read.All", "CustomSecAttributeAssignment.ReadWrite.All",
})  # fmt: skip
ALL_APPS_READ = frozenset({
    "Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All",
    "Directory.ReadWrite.All",
})  # fmt: skip
ALL_APPS_WRITE = frozenset({"Application.ReadWrite.All"})
OWNED_APPS = "Application.ReadWrite.OwnedBy"
EXTENSION_DATA_TYPES = {"Binary", "Boolean", "DateTime", "Integer", "LargeInteger", "String"}
EXTENSION_TARGETS = {"User", "Group", "AdministrativeUnit", "Application", "Device", "Organization"}


Route = Callable[[Operation, re.Match[str]], Answer]
_ID = r"(?P<id>[^/()]+)"
_APP = r"(?:/(?P<object_id>[^/()]+)|\(appId='\{?(?P<app_id>[^'{}]+)\}?'\))"


class GraphApi:
    """Routes an Operation to its handler."""

    def __init__(self, directory: Directory, graph_url: str, page_size: int = 100) -> None:
        self.directory = directory
        self.graph_url = graph_url
        self.page_size = page_size
        self._cursors: dict[str, str] = {}  # $skiptoken -> last id of the previous page
        self.delta = DeltaQuery(self)
        self.routes: list[tuple[str, re.Pattern[str], Route]] = [
            (
                "GET",
                re.compile(r"^/users/(?:microsoft\.graph\.)?delta(?:\(\))?/?$", re.I),
                self.delta.handle,
            ),
            ("GET", re.compile(r"^/users/?$", re.I), self._list_users),
            ("GET", re.compile(rf"^/users/{_ID}/?$", re.I), self._get_user),
            ("PATCH", re.compile(rf"^/users/{_ID}/?$", re.I), self._patch_user),
            ("GET", re.compile(rf"^/users/{_ID}/manager/?$", re.I), self._get_manager),
            ("GET", re.compile(rf"^/groups/{_ID}/?$", re.I), self._get_group),
            (
                "GET",
                re.compile(
                    rf"^/groups/{_ID}/(?P<kind>members|transitiveMembers)"
                    r"(?P<cast>/(?:microsoft\.)?graph\.user)?/?$",
                    re.I,
                ),
                self._list_members,
            ),
            ("GET", re.compile(r"^/applications/?$", re.I), self._list_applications),
            ("GET", re.compile(rf"^/applications{_APP}/?$", re.I), self._get_application),
            (
                "GET",
                re.compile(rf"^/applications{_APP}/extensionProperties/?$", re.I),
                self._list_extensions,
            ),
            (
                "POST",
                re.compile(rf"^/applications{_APP}/extensionProperties/?$", re.I),
                self._create_extension,
            ),
        ]

    def handle(self, operation: Operation) -> Answer:
        path_matched = False
        for method, pattern, route in self.routes:
            match = pattern.match(operation.path)
            if match is None:
                continue
            path_matched = True
            if method == operation.method:
                return route(operation, match)
        if path_matched:
            raise errors.method_not_allowed()
        segments = [s for s in operation.path.split("/") if s] or [""]
        known = segments[0].split("(")[0].lower() in {"users", "groups", "applications"}
        raise errors.no_segment(segments[-1] if known else segments[0])

    # -- users --------------------------------------------------------------------------

    def _user_query(self, operation: Operation, allowed: set[str]) -> dict[str, Any]:
        for option in operation.query:
            if option.startswith("$") and option.lower() not in allowed:
                raise errors.unsupported_option(option)
        select = odata.parse_select(operation.query.get("$select"), self.directory)
        if select and "customSecurityAttributes" in select:
            require(operation, READ_ATTRIBUTES)
        expand = odata.parse_expand(operation.query.get("$expand"), self.directory)
        return {"select": select, "expand": expand}

    def render(
        self, user: dict[str, Any], select: tuple[str, ...] | None, expand: odata.Expand | None
    ) -> dict[str, Any]:
        out = odata.render_user(user, select, self.directory)
        if expand is not None:
            manager = self.directory.users.get(user.get("manager") or "")
            if manager is not None:
                out["manager"] = {
                    "@odata.type": "#microsoft.graph.user",
                    **odata.render_user(manager, expand.select, self.directory),
                }
        return out

    def _list_users(self, operation: Operation, match: re.Match[str]) -> Answer:
        require(operation, READ_USERS)
        allowed = {"$select", "$filter", "$top", "$expand", "$skiptoken", "$count"}
        query = self._user_query(operation, allowed)
        if "$count" in operation.query and not operation.advanced:
            raise errors.unsupported_query()
        predicate = odata.parse_filter(
            operation.query.get("$filter"), self.directory, operation.advanced
        )
        top = odata.parse_top(operation.query.get("$top"))
        users = sorted(self.directory.users.values(), key=lambda u: str(u["id"]))
        if predicate is not None:
            users = [u for u in users if predicate(u)]
        body = self.page(
            operation,
            "users",
            users,
            top,
            lambda u: self.render(u, query["select"], query["expand"]),
        )
        if operation.advanced:
            body["@odata.count"] = len(users)
        return Answer(200, body)

    def _find_user(self, key: str) -> dict[str, Any]:
        user = self.directory.find_user(key)
        if user is None:
            raise errors.not_found(key)
        return user

    def _get_user(self, operation: Operation, match: re.Match[str]) -> Answer:
        require(operation, READ_USERS)
        query = self._user_query(operation, {"$select", "$expand"})
        user = self._find_user(match["id"])
        body = {
            "@odata.context": f"{self.graph_url}/$metadata#users/$entity",
            **self.render(user, query["select"], query["expand"]),
        }
        return Answer(200, body)

    def _patch_user(self, operation: Operation, match: re.Match[str]) -> Answer:
        user = self._find_user(match["id"])
        patch_user(self.directory, user, operation.json(), operation.grant.roles)
        return Answer(204)

    def _get_manager(self, operation: Operation, match: re.Match[str]) -> Answer:
        require(operation, READ_USERS)
        query = self._user_query(operation, {"$select"})
        user = self._find_user(match["id"])
        manager = self.directory.users.get(user.get("manager") or "")
        if manager is None:
            raise errors.not_found("manager")
        body = {
            "@odata.context": f"{self.graph_url}/$metadata#directoryObjects/$entity",
            "@odata.type": "#microsoft.graph.user",
            **odata.render_user(manager, query["select"], self.directory),
        }
        return Answer(200, body)

    # -- groups -------------------------------------------------------------------------

    def _group(self, key: str) -> dict[str, Any]:
        group = self.directory.groups.get(key)
        if group is None:
            raise errors.not_found(key)
        return group

    def _get_group(self, operation: Operation, match: re.Match[str]) -> Answer:
        require(operation, READ_MEMBERS)
        group = self._group(match["id"])
        return Answer(200, {"id": group["id"], "displayName": group["displayName"]})

    def _list_members(self, operation: Operation, match: re.Match[str]) -> Answer:
        require(operation, READ_MEMBERS)
        allowed = {"$select", "$filter", "$top", "$skiptoken", "$count"}
        query = self._user_query(operation, allowed)
        group = self._group(match["id"])
        transitive = match["kind"].lower() == "transitivemembers"
        ids = self.directory.transitive_user_ids(group["id"]) if transitive else group["members"]
        members: list[dict[str, Any]] = []
        for member_id in ids:
            if member_id in self.directory.users:
                members.append(self.directory.users[member_id])
            elif member_id in self.directory.groups and not match["cast"]:
                members.append(self.directory.groups[member_id])
        if "$filter" in operation.query:
            if not operation.advanced:  # Graph filters members only as an advanced query
                raise errors.unsupported_query()
            predicate = odata.FilterParser(
                operation.query["$filter"], self.directory, advanced=True
            ).parse()
            members = [m for m in members if "members" not in m and predicate(m)]
        members.sort(key=lambda m: str(m["id"]))

        def render(member: dict[str, Any]) -> dict[str, Any]:
            if "members" in member:  # a nested group
                return {
                    "@odata.type": "#microsoft.graph.group",
                    "id": member["id"],
                    "displayName": member["displayName"],
                }
            return {
                "@odata.type": "#microsoft.graph.user",
                **odata.render_user(member, query["select"], self.directory),
            }

        top = odata.parse_top(operation.query.get("$top"))
        return Answer(200, self.page(operation, "directoryObjects", members, top, render))

    # -- paging -------------------------------------------------------------------------

    def page(
        self,
        operation: Operation,
        context: str,
        items: list[dict[str, Any]],
        top: int | None,
        render: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> dict[str, Any]:
        """One page of `items` (sorted by id) after the request's $skiptoken, with an
        @odata.nextLink carrying the other query options and a new opaque $skiptoken."""
        size = top or self.page_size
        token = operation.query.get("$skiptoken")
        if token is not None:
            after = self._cursors.get(token)
            if after is None:
                raise errors.expired_page_token()
            items = [item for item in items if str(item["id"]) > after]
        body: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/$metadata#{context}",
            "value": [render(item) for item in items[:size]],
        }
        if len(items) > size:
            next_token = secrets.token_urlsafe(24)
            self._cursors[next_token] = str(items[size - 1]["id"])
            query = {k: v for k, v in operation.query.items() if k != "$skiptoken"}
            query["$skiptoken"] = next_token
            body["@odata.nextLink"] = self.link(operation.path, query)
        return body

    def link(self, path: str, query: dict[str, str]) -> str:
        encoded = "&".join(
            f"{k}={urllib.parse.quote(v, safe=',()=/$:@')}" for k, v in query.items()
        )
        return f"{self.graph_url}{path}" + (f"?{encoded}" if encoded else "")

    # -- applications -------------------------------------------------------------------

    def _visible(self, operation: Operation, app: Application, write: bool = False) -> bool:
        roles = operation.grant.roles
        if roles & (ALL_APPS_WRITE if write else ALL_APPS_READ):
            return True
        return OWNED_APPS in roles and operation.grant.client_id in app.owners

    def _application(self, operation: Operation, match: re.Match[str], write: bool) -> Application:
        if match["app_id"]:
            app = self.directory.application_by_client_id(match["app_id"])
        else:
            app = self.directory.applications.get(match["object_id"])
        if app is None:
            raise errors.not_found(match["app_id"] or match["object_id"])
        if not self._visible(operation, app, write):
            raise errors.forbidden()
        return app

    def _list_applications(self, operation: Operation, match: re.Match[str]) -> Answer:
        if not operation.grant.roles & (ALL_APPS_READ | {OWNED_APPS}):
            raise errors.forbidden()
        apps = [a for a in self.directory.applications.values() if self._visible(operation, a)]
        text = operation.query.get("$filter")
        if text is not None:
            wanted = re.fullmatch(r"\s*appId\s+eq\s+'([^']*)'\s*", text, re.I)
            if wanted is None:
                raise errors.unsupported_query()
            apps = [a for a in apps if a.client_id.lower() == wanted.group(1).lower()]
        body = {
            "@odata.context": f"{self.graph_url}/$metadata#applications",
            "value": [a.resource() for a in apps],
        }
        return Answer(200, body)

    def _get_application(self, operation: Operation, match: re.Match[str]) -> Answer:
        app = self._application(operation, match, write=False)
        body = {
            "@odata.context": f"{self.graph_url}/$metadata#applications/$entity",
            **app.resource(),
        }
        return Answer(200, body)

    def _list_extensions(self, operation: Operation, match: re.Match[str]) -> Answer:
        app = self._application(operation, match, write=False)
        found = [
            e.resource()
            for e in self.directory.extensions.values()
            if e.app_object_id == app.object_id
        ]
        context = f"{self.graph_url}/$metadata#applications('{app.object_id}')/extensionProperties"
        return Answer(200, {"@odata.context": context, "value": found})

    def _create_extension(self, operation: Operation, match: re.Match[str]) -> Answer:
        app = self._application(operation, match, write=True)
        body = operation.json()
        if not isinstance(body, dict):
            raise errors.bad_json()
        name, data_type = body.get("name"), body.get("dataType")
        targets = body.get("targetObjects")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,120}", name):
            raise errors.invalid_value("name", "letters, digits and '_' only, 1 to 120.")
        if data_type not in EXTENSION_DATA_TYPES:
            raise errors.invalid_value("dataType", f"one of {sorted(EXTENSION_DATA_TYPES)}.")
        if not isinstance(targets, list) or not targets or not set(targets) <= EXTENSION_TARGETS:
            raise errors.invalid_value("targetObjects", f"a list from {sorted(EXTENSION_TARGETS)}.")
        full = f"extension_{app.client_id.replace('-', '')}_{name}"
        if full.lower() in self.directory.extensions:
            raise errors.duplicate_extension(full)
        extension = self.directory.declare_extension(app, name, data_type, targets)
        own = f"applications('{app.object_id}')/extensionProperties"
        location = f"{self.graph_url}/{own}/{extension.id}"
        context = f"{self.graph_url}/$metadata#{own}/$entity"
        return Answer(
            201, {"@odata.context": context, **extension.resource()}, {"Location": location}
        )
