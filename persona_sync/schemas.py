"""JSON Schemas for the files people write, generated from the pydantic specs.

Editors that speak the YAML language server autocomplete rule files that start with
``# yaml-language-server: $schema=../schemas/rules.schema.json``. A test fails when the
committed schemas under ``schemas/`` no longer match the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from persona_sync.errors import PersonaSyncError


def _models() -> dict[str, tuple[type[BaseModel], str]]:
    from persona_sync.rules.cases import CaseFile
    from persona_sync.rules.spec import RuleFile

    models: dict[str, tuple[type[BaseModel], str]] = {
        "rules.schema.json": (RuleFile, "persona-sync rule file"),
        "cases.schema.json": (CaseFile, "persona-sync rule test cases"),
    }
    try:
        from persona_sync.config import SyncConfig
    except ImportError:  # pragma: no cover - config arrives with the plan/apply work
        return models
    models["config.schema.json"] = (SyncConfig, "persona-sync sync configuration")
    return models


def render_schemas() -> dict[str, str]:
    """File name -> schema text, deterministic (sorted keys, trailing newline)."""
    rendered = {}
    for name, (model, title) in _models().items():
        schema: dict[str, Any] = model.model_json_schema(by_alias=True)
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://persona-sync.dev/schemas/{name}",
            **schema,
            "title": title,
        }
        rendered[name] = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return rendered


def stale_schemas(folder: Path) -> list[str]:
    """Names of schema files in ``folder`` that are missing or differ from the code."""
    stale = []
    for name, text in render_schemas().items():
        path = folder / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def write_schemas(folder: Path) -> list[Path]:
    """Write every schema into ``folder``; return the files that changed."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PersonaSyncError(f"cannot create {folder}: {exc.strerror}") from None
    changed = []
    for name in stale_schemas(folder):
        path = folder / name
        try:
            path.write_text(render_schemas()[name], encoding="utf-8")
        except OSError as exc:
            raise PersonaSyncError(f"cannot write {path}: {exc.strerror}") from None
        changed.append(path)
    return changed
