"""Secrets (bind passwords, client secrets) from the environment, a file or a prompt.

Never from a command-line argument, and never logged: :class:`Secret` hides its value
from ``repr`` and ``str`` so a stray log call or traceback cannot print it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from persona_sync.errors import ConfigError

Prompt = Callable[[str], str]


@dataclass(frozen=True)
class Secret:
    value: str = field(repr=False)
    source: str

    def __str__(self) -> str:
        return f"<secret from {self.source}>"


def resolve_secret(
    what: str,
    env_name: str | None,
    file: Path | None,
    prompt: Prompt | None = None,
    environ: Mapping[str, str] | None = None,
) -> Secret:
    """The secret from ``file``, else the variable ``env_name``, else a prompt."""
    env = os.environ if environ is None else environ
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the {what} from {file}: {exc.strerror}") from None
        value = text.rstrip("\r\n")
        if not value:
            raise ConfigError(f"the {what} file {file} is empty")
        return Secret(value, f"file {file}")
    if env_name and env.get(env_name):
        return Secret(env[env_name], f"environment variable {env_name}")
    if prompt is not None:
        value = prompt(f"{what[:1].upper()}{what[1:]}")
        if value:
            return Secret(value, "prompt")
    where = f"set the environment variable {env_name}" if env_name else "configure one"
    raise ConfigError(
        f"no {what}: {where}, or name a file with the secret (never put it on the command line)"
    )
