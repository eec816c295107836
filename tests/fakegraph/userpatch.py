"""PATCH /users/{id}: validate the whole body first, then apply it, so a refused PATCH
changes nothing (as on Graph, an update is one directory transaction)."""

from __future__ import annotations

from typing import Any

from . import errors
from .directory import (
    EXTENSION_ATTRIBUTES,
    ON_PREMISES_MASTERED,
    READ_ONLY,
    USER_PROPERTIES,
    Directory,
    Write,
)

WRITE_USERS = frozenset({"User.ReadWrite.All", "Directory.ReadWrite.All"})
WRITE_ATTRIBUTES = frozenset({"CustomSecAttributeAssignment.ReadWrite.All"})
ATTRIBUTE_VALUE_TYPE = "#microsoft.directoryservices.customsecurityattributevalue"
EXTENSION_MAX_LENGTH = 256
EXTENSION_ATTRIBUTE_MAX_LENGTH = 1024  # AD's extensionAttributeN is a 1,024-character string


def patch_user(
    directory: Directory, user: dict[str, Any], body: Any, roles: frozenset[str]
) -> list[Write]:
    """Apply `body` to `user`; returns the property changes, in order. Raises GraphError
    (and changes nothing) when any part of the body is refused."""
    if not isinstance(body, dict):
        raise errors.bad_json()
    plain = {k: v for k, v in body.items() if not k.startswith("@")}
    needs_users = any(k.lower() != "customsecurityattributes" for k in plain)
    needs_attributes = any(k.lower() == "customsecurityattributes" for k in plain)
    if (needs_users and not roles & WRITE_USERS) or (
        needs_attributes and not roles & WRITE_ATTRIBUTES
    ):
        raise errors.forbidden()
    planned: list[tuple[str, str | None, Any]] = []  # (property, nested key, new value)
    for raw_name, value in plain.items():
        name = directory.canonical_user_property(raw_name)
        if name is None:
            raise errors.undeclared_property(raw_name)
        if name in READ_ONLY:
            raise errors.read_only(name)
        if user.get("onPremisesSyncEnabled") and name in ON_PREMISES_MASTERED:
            raise errors.synced_user()
        if name == "onPremisesExtensionAttributes":
            planned.extend(_plan_extension_attributes(value))
        elif name == "customSecurityAttributes":
            planned.extend(_plan_security_attributes(directory, value))
        elif name not in USER_PROPERTIES:
            planned.append((name, None, _check_extension(directory, name, value)))
        else:
            planned.append((name, None, _check_plain(name, value)))
    return _apply(directory, user, planned)


def _check_plain(name: str, value: Any) -> Any:
    kind = USER_PROPERTIES[name]
    if kind == "boolean" and not isinstance(value, bool):
        raise errors.invalid_value(name, "expected a boolean.")
    if kind == "string" and value is not None and not isinstance(value, str):
        raise errors.invalid_value(name, "expected a string.")
    if kind == "collection" and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        raise errors.invalid_value(name, "expected a collection of strings.")
    return value


def _check_extension(directory: Directory, name: str, value: Any) -> Any:
    data_type = directory.extensions[name.lower()].data_type
    if value is None:
        return None
    if data_type == "String":
        if not isinstance(value, str):
            raise errors.invalid_value(name, "expected a string.")
        if len(value) > EXTENSION_MAX_LENGTH:
            raise errors.invalid_value(
                name, f"the value is longer than {EXTENSION_MAX_LENGTH} characters."
            )
    elif data_type == "Boolean" and not isinstance(value, bool):
        raise errors.invalid_value(name, "expected a boolean.")
    elif data_type in {"Integer", "LargeInteger"} and (
        isinstance(value, bool) or not isinstance(value, int)
    ):
        raise errors.invalid_value(name, "expected an integer.")
    return value


def _plan_extension_attributes(value: Any) -> list[tuple[str, str | None, Any]]:
    name = "onPremisesExtensionAttributes"
    if not isinstance(value, dict):
        raise errors.invalid_value(name, "expected an object.")
    planned: list[tuple[str, str | None, Any]] = []
    for key, item in value.items():
        if key.startswith("@"):
            continue
        attribute = next((a for a in EXTENSION_ATTRIBUTES if a.lower() == key.lower()), None)
        if attribute is None:
            raise errors.unknown_property(key, "microsoft.graph.onPremisesExtensionAttributes")
        if item is not None and not isinstance(item, str):
            raise errors.invalid_value(f"{name}.{attribute}", "expected a string.")
        if item is not None and len(item) > EXTENSION_ATTRIBUTE_MAX_LENGTH:
            raise errors.invalid_value(
                f"{name}.{attribute}",
                f"the value is longer than {EXTENSION_ATTRIBUTE_MAX_LENGTH} characters.",
            )
        planned.append((name, attribute, item))
    return planned


def _plan_security_attributes(
    directory: Directory, value: Any
) -> list[tuple[str, str | None, Any]]:
    name = "customSecurityAttributes"
    if not isinstance(value, dict):
        raise errors.invalid_value(name, "expected an object.")
    planned: list[tuple[str, str | None, Any]] = []
    for attribute_set, attributes in value.items():
        if not isinstance(attributes, dict):
            raise errors.invalid_value(f"{name}.{attribute_set}", "expected an object.")
        if str(attributes.get("@odata.type", "")).lower() != ATTRIBUTE_VALUE_TYPE:
            raise errors.invalid_value(
                f"{name}.{attribute_set}",
                'an attribute set needs "@odata.type": '
                '"#Microsoft.DirectoryServices.CustomSecurityAttributeValue".',
            )
        for attribute, item in attributes.items():
            if "@" in attribute:
                continue
            kind = directory.attribute_definitions.get((attribute_set.lower(), attribute.lower()))
            if kind is None:
                raise errors.invalid_value(
                    f"{name}.{attribute_set}.{attribute}",
                    "no such custom security attribute is defined.",
                )
            expected = {"String": str, "Boolean": bool, "Integer": int}[kind]
            if item is not None and not isinstance(item, expected):
                raise errors.invalid_value(
                    f"{name}.{attribute_set}.{attribute}", f"expected a {kind} value."
                )
            planned.append((name, f"{attribute_set}.{attribute}", item))
    return planned


def _apply(
    directory: Directory, user: dict[str, Any], planned: list[tuple[str, str | None, Any]]
) -> list[Write]:
    applied: list[Write] = []
    for name, nested, new in planned:
        if name == "onPremisesExtensionAttributes" and nested is not None:
            old = user[name][nested]
            user[name] = {**user[name], nested: new}
            label = f"{name}.{nested}"
        elif name == "customSecurityAttributes" and nested is not None:
            attribute_set, _, attribute = nested.partition(".")
            values = {k: dict(v) for k, v in (user[name] or {}).items()}
            old = values.get(attribute_set, {}).get(attribute)
            values.setdefault(attribute_set, {})[attribute] = new
            user[name] = values
            label = f"{name}.{nested}"
        else:
            old = user.get(name)
            user[name] = new
            label = name
        write = Write(user["id"], label, old, new)
        applied.append(write)
        directory.writes.append(write)
        directory.touch(user["id"], name)
    return applied
