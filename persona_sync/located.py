"""Validate located YAML with pydantic and turn every failure into ``path:line:col`` errors."""

from __future__ import annotations

import difflib
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from persona_sync.errors import RuleError
from persona_sync.yamlsource import LocatedDocument, PathKey

M = TypeVar("M", bound=BaseModel)


def validate_document(
    model: type[M], doc: LocatedDocument, known_keys: frozenset[str] = frozenset()
) -> tuple[M | None, list[RuleError]]:
    """Validate ``doc.data`` as ``model``; return the instance or every error, located."""
    try:
        return model.model_validate(doc.data), []
    except ValidationError as exc:
        return None, [_located(doc, err, known_keys) for err in exc.errors()]


def data_path(data: Any, loc: tuple[Any, ...]) -> PathKey:
    """Follow pydantic's error location through the data, skipping union tags."""
    path: list[str | int] = []
    current = data
    for part in loc:
        in_mapping = isinstance(current, dict) and isinstance(part, str) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_mapping or in_list:  # anything else is a union tag pydantic added
            current = current[part]
            path.append(part)
    return tuple(path)


def data_at(data: Any, path: PathKey) -> Any:
    for part in path:
        data = data[part]
    return data


def _located(doc: LocatedDocument, err: Any, known_keys: frozenset[str]) -> RuleError:
    loc = tuple(err["loc"])
    path = data_path(doc.data, loc)
    kind = err["type"]
    last = loc[-1] if loc else None
    if kind == "extra_forbidden" and isinstance(last, str):
        text = f"unknown key '{last}'"
        hint = difflib.get_close_matches(last, sorted(known_keys), n=1, cutoff=0.7)
        if hint and hint[0] != last:  # a known key in the wrong place: no "did you mean"
            text += f" (did you mean '{hint[0]}'?)"
        return doc.error(path, text, key=True)
    if kind == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        key = str(ctx.get("discriminator", "type")).strip("'")
        where = (*path, key) if isinstance(data_at(doc.data, path), dict) else path
        owner = next((p for p in reversed(path) if isinstance(p, str)), "")
        return doc.error(
            where,
            f"{owner + '.' if owner else ''}{key}: unknown type {str(ctx.get('tag'))!r} "
            f"(expected: {str(ctx.get('expected_tags', '')).replace(chr(39), '')})",
        )
    if kind == "missing" and isinstance(last, str):
        return doc.error(path, f"missing required key '{last}'")
    message = str(err["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    message = message[:1].lower() + message[1:]
    if last == "[key]":  # a mapping's key that did not validate: point at the key
        return doc.error(path, message, key=True)
    field = next((p for p in reversed(path) if isinstance(p, str)), None)
    if kind in ("value_error", "condition") or field is None:
        return doc.error(path, message)
    return doc.error(path, f"{field}: {message}")


def model_keys(*models: type[BaseModel]) -> frozenset[str]:
    """Every key (by alias) the given models and their nested models accept."""
    keys: set[str] = set()
    seen: set[type[BaseModel]] = set()
    stack = list(models)
    while stack:
        model = stack.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, info in model.model_fields.items():
            keys.add(info.alias or name)
            stack.extend(_nested_models(info.annotation))
    return frozenset(keys)


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_nested_models(arg))
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and not getattr(annotation, "__args__", None):
        found.extend(_nested_models(origin))
    metadata = getattr(annotation, "__metadata__", None)
    if metadata is not None:
        found.extend(_nested_models(annotation.__origin__))
    return found
