"""check-connection for Entra ID: the token, the application permissions it carries, and
the target attributes (built in, or this app's directory extensions)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from persona_sync.directory.base import Checks, Finding
from persona_sync.errors import PersonaSyncError

if TYPE_CHECKING:
    from persona_sync.directory.entra import EntraDirectory


def entra_checks(directory: EntraDirectory, targets: Sequence[str]) -> Checks:
    spec = directory.spec
    try:
        token = directory.token()
    except PersonaSyncError as exc:
        yield Finding("token", False, str(exc))
        return False
    yield Finding("token", True, f"app {spec.client_id} in tenant {spec.tenant_id}")
    roles = token_roles(token)
    if roles is None:
        yield Finding(
            "permissions",
            True,
            "not readable from the token; reading users "
            "below shows read access, the first write shows write access",
        )
    else:
        lacking = sorted({"User.ReadWrite.All"} - set(roles))
        granted = f"granted: {', '.join(sorted(roles)) or 'none'}"
        yield Finding(
            "permissions",
            not lacking,
            granted
            if not lacking
            else f"missing {', '.join(lacking)} (application permission, admin consent); "
            + granted,
        )
    for attribute in targets:
        if not attribute.lower().startswith("extension_"):
            yield Finding("target", True, f"{attribute}: built into Entra ID")
            continue
        name = attribute.split("_", 2)[2] if attribute.count("_") >= 2 else attribute
        try:
            full, missing = directory.ensure_extension(name, dry_run=True)
        except PersonaSyncError as exc:
            yield Finding("target", False, str(exc))
            return False
        if full.lower() != attribute.lower():
            yield Finding(
                "target",
                False,
                f"{attribute} belongs to another app; this app's extension would be {full}",
            )
            return False
        yield Finding(
            "target",
            not missing,
            f"{attribute}: "
            + (
                f"missing: run `persona-sync entra create-extension {name}`"
                if missing
                else "exists on the app"
            ),
        )
        if missing:
            return False
    return True


def token_roles(token: str) -> list[str] | None:
    """The application permissions in a JWT access token's ``roles`` claim, or None when
    the token is not a readable JWT. Only read to report; Graph enforces them."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, binascii.Error):
        return None
    roles = claims.get("roles", []) if isinstance(claims, dict) else []
    return [str(r) for r in roles] if isinstance(roles, list) else None
