"""Directory backends. :func:`open_directory` picks one from the sync configuration."""

from __future__ import annotations

from persona_sync.config import LoadedConfig
from persona_sync.directory.base import Directory


def open_directory(config: LoadedConfig) -> Directory:
    """The configured backend; backends import their vendor libraries lazily."""
    spec = config.spec.directory
    if spec.type == "file":
        from persona_sync.directory.files import FileDirectory

        return FileDirectory(config.resolve(spec.path), spec.format, spec.id_attributes)
    raise AssertionError(f"unknown directory type {spec.type}")  # pragma: no cover
