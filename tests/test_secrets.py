"""Secrets come from a file, an environment variable or a prompt; never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_sync.cli.base import terminal_prompt
from persona_sync.config import load_config
from persona_sync.errors import ConfigError, ValidationFailed
from persona_sync.secrets import resolve_secret


def test_file_then_variable_then_prompt(tmp_path: Path) -> None:
    secret_file = tmp_path / "s"
    secret_file.write_text("from-file\n")
    env = {"X_SECRET": "from-env"}
    asked: list[str] = []

    def prompt(label: str) -> str:
        asked.append(label)
        return "typed"

    assert (
        resolve_secret("bind password", "X_SECRET", secret_file, prompt, env).value == "from-file"
    )
    assert resolve_secret("bind password", "X_SECRET", None, prompt, env).value == "from-env"
    typed = resolve_secret("bind password", "X_SECRET", None, prompt, {})
    assert (typed.value, typed.source, asked) == ("typed", "prompt", ["Bind password"])
    assert "typed" not in repr(typed) and str(typed) == "<secret from prompt>"


def test_missing_and_empty_secrets(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_secret("client secret", "X_SECRET", None, None, {})
    assert str(caught.value) == (
        "no client secret: set the environment variable X_SECRET, or name a file with the "
        "secret (never put it on the command line)"
    )
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError) as caught:
        resolve_secret("client secret", "X_SECRET", empty, None, {})
    assert str(caught.value) == f"the client secret file {empty} is empty"


def test_no_prompt_without_a_terminal() -> None:
    assert terminal_prompt() is None  # pytest's stdin is not a terminal


@pytest.mark.parametrize(
    ("directory", "column"),
    [
        (
            "{type: ldap, preset: openldap, urls: [ldaps://x], base_dns: [dc=x], "
            "bind: {user: cn=a, password_env: 'Zq8-SECRET!'}}",
            113,
        ),
        (
            "{type: entra, tenant_id: t, client_id: c, "
            "credential: {client_secret_env: 'Zq8-SECRET!'}}",
            86,
        ),
    ],
)
def test_a_secret_pasted_as_a_variable_name_is_not_echoed(
    tmp_path: Path, directory: str, column: int
) -> None:
    (tmp_path / "rules").mkdir()
    config = tmp_path / "persona-sync.yaml"
    config.write_text(f"rules: rules\ndirectory: {directory}\ntargets: {{persona: employeeType}}\n")
    with pytest.raises(ValidationFailed) as caught:
        load_config(config)
    assert str(caught.value) == (
        f"{config}:2:{column}: expected the NAME of an environment variable (letters, digits, "
        "'_'), not its value; never put a secret in the config"
    )
    assert "Zq8" not in str(caught.value)
