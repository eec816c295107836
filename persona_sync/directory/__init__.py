"""Directory backends. :func:`open_directory` picks one from the sync configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from persona_sync.errors import ConfigError
from persona_sync.secrets import Prompt, resolve_secret

if TYPE_CHECKING:  # importing a backend's modules (directory.base) needs no config
    from persona_sync.config import LoadedConfig
    from persona_sync.directory.base import Directory


def directory_identity(config: LoadedConfig) -> str:
    """The identity ``open_directory(config).identity`` has, without connecting or asking
    for a secret (tests keep the two equal for every backend)."""
    spec = config.spec.directory
    if spec.type == "file":
        return f"file:{config.resolve(spec.path).resolve()}"
    if spec.type == "ldap":
        return "ldap:" + ";".join(dn.casefold() for dn in spec.base_dns)
    return f"entra:{spec.tenant_id.casefold()}"


def open_directory(config: LoadedConfig, prompt: Prompt | None = None) -> Directory:
    """The configured backend; backends import their vendor libraries lazily."""
    spec = config.spec.directory
    if spec.type == "file":
        from persona_sync.directory.files import FileDirectory

        return FileDirectory(
            config.resolve(spec.path),
            spec.format,
            spec.id_attributes,
            spec.object_classes,
            spec.exclude_object_classes,
        )
    if spec.type == "ldap":
        from persona_sync.directory.ldap import LdapDirectory

        password = None
        if spec.bind.method != "anonymous":
            file = config.resolve(spec.bind.password_file) if spec.bind.password_file else None
            password = resolve_secret("bind password", spec.bind.password_env, file, prompt)
        if spec.ca_file is not None:
            spec = spec.model_copy(update={"ca_file": config.resolve(spec.ca_file)})
        return LdapDirectory(spec, password)
    if spec.type == "entra":
        try:
            from persona_sync.directory.entra import EntraDirectory, load_credential
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                f"directory type entra needs the Entra ID extra: pip install 'persona-sync[entra]' "
                f"({exc.name} is missing)"
            ) from None
        if spec.ca_file is not None:
            spec = spec.model_copy(update={"ca_file": config.resolve(spec.ca_file)})
        return EntraDirectory(spec, load_credential(spec, config.base, prompt))
    raise AssertionError(f"unknown directory type {spec.type}")  # pragma: no cover
