"""The fake tenant's data: users, groups, applications, extension properties and the
change sequence that delta queries read.

Users are plain dicts keyed by Graph property names, so tests can read them as Graph
would return them. Two keys are the fake's own: "manager" holds the manager's object id
(Graph exposes it only as a navigation property) and extension values are stored under
their full names (extension_{appIdWithoutDashes}_{name}).
"""

from __future__ import annotations

import copy
import itertools
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, NamedTuple

EXTENSION_ATTRIBUTES = tuple(f"extensionAttribute{n}" for n in range(1, 16))
EXTENSION_NAME = re.compile(r"^extension_[0-9a-f]{32}_[A-Za-z0-9_]+$", re.IGNORECASE)

# The user properties the fake knows, with the kind of value each holds.
USER_PROPERTIES: dict[str, str] = {
    "id": "string",
    "accountEnabled": "boolean",
    "displayName": "string",
    "givenName": "string",
    "surname": "string",
    "userPrincipalName": "string",
    "mail": "string",
    "mailNickname": "string",
    "jobTitle": "string",
    "department": "string",
    "companyName": "string",
    "officeLocation": "string",
    "city": "string",
    "state": "string",
    "country": "string",
    "streetAddress": "string",
    "postalCode": "string",
    "usageLocation": "string",
    "preferredLanguage": "string",
    "employeeId": "string",
    "employeeType": "string",
    "employeeHireDate": "string",
    "userType": "string",
    "businessPhones": "collection",
    "mobilePhone": "string",
    "createdDateTime": "string",
    "onPremisesSyncEnabled": "boolean",
    "onPremisesImmutableId": "string",
    "onPremisesSamAccountName": "string",
    "onPremisesDistinguishedName": "string",
    "onPremisesDomainName": "string",
    "onPremisesUserPrincipalName": "string",
    "onPremisesExtensionAttributes": "complex",
    "customSecurityAttributes": "complex",
}

# Returned when a request has no $select (Graph's documented default set for users).
DEFAULT_USER_SELECT = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id",
)  # fmt: skip

# Set by the directory itself, never by PATCH.
READ_ONLY = frozenset({
    "id", "createdDateTime", "onPremisesSyncEnabled", "onPremisesImmutableId",
    "onPremisesSamAccountName", "onPremisesDistinguishedName", "onPremisesDomainName",
    "onPremisesUserPrincipalName",
})  # fmt: skip

# Properties that cloud-side writes cannot change for users synced from Active Directory
# (onPremisesSyncEnabled true): AD is their source. Directory extensions registered by an
# application, custom security attributes, usageLocation and preferredLanguage stay
# writable, as on the real service.
ON_PREMISES_MASTERED = frozenset(USER_PROPERTIES) - READ_ONLY - {
    "usageLocation", "preferredLanguage", "customSecurityAttributes",
}  # fmt: skip


@dataclass
class ExtensionProperty:
    """A directory extension declared on an application (extensionProperty resource)."""

    id: str
    name: str  # the full name, extension_{appIdWithoutDashes}_{shortName}
    data_type: str
    target_objects: tuple[str, ...]
    app_object_id: str
    app_display_name: str

    def resource(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "deletedDateTime": None,
            "appDisplayName": self.app_display_name,
            "dataType": self.data_type,
            "isMultiValued": False,
            "isSyncedFromOnPremises": False,
            "name": self.name,
            "targetObjects": list(self.target_objects),
        }


@dataclass
class Application:
    """An app registration with its credentials, granted application permissions (app
    roles of Microsoft Graph) and whether an admin consented to them."""

    client_id: str
    object_id: str
    display_name: str
    secrets: list[str] = field(default_factory=list)
    certificates: list[Any] = field(default_factory=list)  # cryptography x509.Certificate
    roles: set[str] = field(default_factory=set)
    consent: bool = True
    # Object ids of the service principals owning this application object; by default
    # the app owns its own registration, so Application.ReadWrite.OwnedBy covers it.
    owners: set[str] = field(default_factory=set)

    def resource(self) -> dict[str, Any]:
        return {
            "id": self.object_id,
            "appId": self.client_id,
            "displayName": self.display_name,
            "signInAudience": "AzureADMyOrg",
        }


class Write(NamedTuple):
    """One property change applied by a PATCH, in the order applied. Nested properties
    are dotted: "onPremisesExtensionAttributes.extensionAttribute1",
    "customSecurityAttributes.Persona.value"."""

    user_id: str
    property: str
    old: Any
    new: Any


_counter = itertools.count(1)


class Directory:
    """All state of the fake tenant. Every access from the server holds `lock`."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self.lock = threading.RLock()
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.applications: dict[str, Application] = {}  # by object id
        self.extensions: dict[str, ExtensionProperty] = {}  # by lower-case full name
        self.attribute_definitions: dict[tuple[str, str], str] = {}  # (set, name) -> type
        self.writes: list[Write] = []
        self.sequence = 0
        # user id -> property -> sequence number of its last change; removed users too
        self.changed: dict[str, dict[str, int]] = {}
        self.removed: dict[str, int] = {}
        # soft-deleted users (Graph's deletedItems), restorable; delta: @removed "changed"
        self.deleted_users: dict[str, dict[str, Any]] = {}

    # -- users --------------------------------------------------------------------------

    def add_user(self, **props: Any) -> str:
        """Create a user; unknown property names raise (typos would otherwise pass)."""
        with self.lock:
            number = next(_counter)
            user_id = str(props.pop("id", None) or uuid.uuid4())
            manager = props.pop("manager", None)
            user: dict[str, Any] = {name: None for name in USER_PROPERTIES}
            user.update(
                id=user_id,
                accountEnabled=True,
                userType="Member",
                displayName=f"User {number}",
                userPrincipalName=f"user{number}@contoso.example",
                businessPhones=[],
                createdDateTime="2024-01-01T00:00:00Z",
                onPremisesExtensionAttributes={name: None for name in EXTENSION_ATTRIBUTES},
                customSecurityAttributes={},
            )
            for name, value in props.items():
                self._store(user, self._canonical(name), value)
            user["manager"] = manager
            self.users[user_id] = user
            self.removed.pop(user_id, None)
            self.deleted_users.pop(user_id, None)
            self.touch(user_id, *user)
            return user_id

    def remove_user(self, user_id: str) -> None:
        """Delete a user for good, or purge a deleted one (delta: @removed with reason
        "deleted")."""
        with self.lock:
            if self.deleted_users.pop(user_id, None) is not None:
                self.sequence += 1
                self.removed[user_id] = self.sequence
            else:
                self._take_out(user_id)

    def delete_user(self, user_id: str) -> None:
        """Delete a user as DELETE /users/{id} does: into deleted items, restorable for 30
        days (delta: @removed with reason "changed"); it also leaves its groups."""
        with self.lock:
            self.deleted_users[user_id] = self._take_out(user_id)

    def restore_user(self, user_id: str) -> None:
        """Restore a soft-deleted user (delta reports it again, with no annotation; its
        group memberships are not restored, as on Graph)."""
        with self.lock:
            user = self.deleted_users.pop(user_id)
            self.users[user_id] = user
            self.removed.pop(user_id, None)
            self.touch(user_id, *user)

    def removal_reason(self, user_id: str) -> str:
        """What delta says of a user no longer there: "changed" while it is restorable."""
        return "changed" if user_id in self.deleted_users else "deleted"

    def _take_out(self, user_id: str) -> dict[str, Any]:
        user = self.users.pop(user_id)
        self.sequence += 1
        self.removed[user_id] = self.sequence
        for group in self.groups.values():
            if user_id in group["members"]:
                group["members"].remove(user_id)
        return user

    def set_property(self, user_id: str, name: str, value: Any) -> None:
        """Change a user as another admin would: no write is logged, delta sees it.

        `name` is a property ("department", "manager", an extension name) or a dotted
        nested one ("onPremisesExtensionAttributes.extensionAttribute3")."""
        with self.lock:
            user = self.users[user_id]
            head, _, rest = name.partition(".")
            head = "manager" if head == "manager" else self._canonical(head)
            if rest and head == "onPremisesExtensionAttributes":
                user[head] = {**user[head], rest: value}
            elif rest and head == "customSecurityAttributes":
                attribute_set, _, attribute = rest.partition(".")
                values = {k: dict(v) for k, v in user[head].items()}
                values.setdefault(attribute_set, {})[attribute] = value
                user[head] = values
            elif rest:
                raise KeyError(f"{head} has no nested properties")
            else:
                self._store(user, head, value)
            self.touch(user_id, head)

    def find_user(self, key: str) -> dict[str, Any] | None:
        """A user by object id or userPrincipalName (both case-insensitive, as Graph)."""
        key = key.lower()
        user = self.users.get(key)  # ids are stored lower-case: the common case is O(1)
        if user is not None and user["id"].lower() == key:
            return user
        for user in self.users.values():
            if user["id"].lower() == key or (user["userPrincipalName"] or "").lower() == key:
                return user
        return None

    def touch(self, user_id: str, *properties: str) -> None:
        self.sequence += 1
        marks = self.changed.setdefault(user_id, {})
        for name in properties:
            marks[name] = self.sequence

    def canonical_user_property(self, name: str) -> str | None:
        """The property's Graph spelling (Graph matches names case-insensitively), or None
        when neither a known property nor a declared user extension."""
        for known in USER_PROPERTIES:
            if known.lower() == name.lower():
                return known
        extension = self.extensions.get(name.lower())
        if extension is not None and "User" in extension.target_objects:
            return extension.name
        return None

    def _canonical(self, name: str) -> str:
        canonical = self.canonical_user_property(name)
        if canonical is not None:
            return canonical
        if EXTENSION_NAME.match(name):
            return name  # test data may hold extensions no app declared (yet)
        raise KeyError(f"unknown user property {name!r}")

    @staticmethod
    def _store(user: dict[str, Any], name: str, value: Any) -> None:
        if name == "onPremisesExtensionAttributes":
            unknown = set(value or {}) - set(EXTENSION_ATTRIBUTES)
            if unknown:
                raise KeyError(f"unknown extension attributes {sorted(unknown)}")
            value = {**{n: None for n in EXTENSION_ATTRIBUTES}, **(value or {})}
        elif name == "customSecurityAttributes":
            value = copy.deepcopy(value or {})
        user[name] = value

    # -- groups -------------------------------------------------------------------------

    def add_group(
        self, members: list[str], display_name: str | None = None, group_id: str | None = None
    ) -> str:
        """Create a group; members are user ids or ids of other groups (nesting)."""
        with self.lock:
            group_id = group_id or str(uuid.uuid4())
            for member in members:
                if member not in self.users and member not in self.groups:
                    raise KeyError(f"no user or group {member!r}")
            self.groups[group_id] = {
                "id": group_id,
                "displayName": display_name or f"Group {next(_counter)}",
                "members": list(members),
            }
            return group_id

    def transitive_user_ids(self, group_id: str) -> list[str]:
        seen_groups: set[str] = set()
        found: dict[str, None] = {}

        def walk(gid: str) -> None:
            if gid in seen_groups:
                return
            seen_groups.add(gid)
            for member in self.groups[gid]["members"]:
                if member in self.groups:
                    walk(member)
                elif member in self.users:
                    found[member] = None

        walk(group_id)
        return list(found)

    # -- applications and extensions ----------------------------------------------------

    def application_by_client_id(self, client_id: str) -> Application | None:
        for app in self.applications.values():
            if app.client_id.lower() == client_id.lower():
                return app
        return None

    def declare_extension(
        self, app: Application, short_name: str, data_type: str, target_objects: list[str]
    ) -> ExtensionProperty:
        full = f"extension_{app.client_id.replace('-', '')}_{short_name}"
        extension = ExtensionProperty(
            id=str(uuid.uuid4()),
            name=full,
            data_type=data_type,
            target_objects=tuple(target_objects),
            app_object_id=app.object_id,
            app_display_name=app.display_name,
        )
        self.extensions[full.lower()] = extension
        return extension

    def define_custom_security_attribute(
        self, attribute_set: str, name: str, type: str = "String"
    ) -> None:
        """Declare a custom security attribute; only declared ones can be assigned."""
        if type not in {"String", "Boolean", "Integer"}:
            raise ValueError(f"unsupported attribute type {type!r}")
        with self.lock:
            self.attribute_definitions[(attribute_set.lower(), name.lower())] = type
