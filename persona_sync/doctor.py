"""check-connection: everything an admin should know before the first sync.

Each check is a :class:`Finding`; a failed one says what to do. Nothing is written: the
write-access probe deletes a value no entry has, which the server refuses either with
"no such value" (allowed) or "insufficient access" (not allowed).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

from persona_sync.directory.base import Directory
from persona_sync.errors import PersonaSyncError
from persona_sync.plan import read_attributes
from persona_sync.session import Session


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str


def diagnose(session: Session, directory: Directory) -> Iterator[Finding]:
    """Run the checks in order; stop after the first one that makes the rest meaningless."""
    spec = session.config.spec.directory
    targets = list(session.config.spec.targets.values())
    if spec.type == "ldap":
        from persona_sync.directory.ldap import LdapDirectory

        assert isinstance(directory, LdapDirectory)
        try:
            root = directory.root_dse()
        except PersonaSyncError as exc:
            yield Finding("connect", False, str(exc))
            return
        who = spec.bind.user or "anonymous"
        yield Finding(
            "connect",
            True,
            f"{', '.join(spec.urls)} as {who} "
            f"({'TLS' if _secure(spec.urls, spec.start_tls) else 'PLAINTEXT'})",
        )
        server = root.get("vendorname") or root.get("dnshostname") or "unknown server"
        contexts = root.get("defaultnamingcontext") or root.get("namingcontexts", "")
        yield Finding("server", True, f"{server}; naming context {contexts}")
        for attribute in targets:
            try:
                directory.check_targets([attribute])
            except PersonaSyncError as exc:
                yield Finding("target", False, str(exc))
                return
            yield Finding("target", True, f"{attribute}: in the schema, single-valued")
    elif spec.type == "entra":
        from persona_sync.directory.entra import EntraDirectory

        assert isinstance(directory, EntraDirectory)
        try:
            directory.token()
        except PersonaSyncError as exc:
            yield Finding("token", False, str(exc))
            return
        yield Finding("token", True, f"app {spec.client_id} in tenant {spec.tenant_id}")
        roles = token_roles(directory.token())
        if roles is None:
            yield Finding(
                "permissions",
                True,
                "not readable from the token; reading users "
                "below shows read access, the first write shows write access",
            )
        else:
            needed = {"User.ReadWrite.All"}
            lacking = sorted(needed - set(roles))
            yield Finding(
                "permissions",
                not lacking,
                (
                    f"granted: {', '.join(sorted(roles)) or 'none'}"
                    if not lacking
                    else f"missing {', '.join(lacking)} (application permission, admin consent); "
                    f"granted: {', '.join(sorted(roles)) or 'none'}"
                ),
            )
        for attribute in targets:
            if attribute.lower().startswith("extension_"):
                name = attribute.split("_", 2)[2] if attribute.count("_") >= 2 else attribute
                try:
                    full, missing = directory.ensure_extension(name, dry_run=True)
                except PersonaSyncError as exc:
                    yield Finding("target", False, str(exc))
                    return
                if full.lower() != attribute.lower():
                    yield Finding(
                        "target",
                        False,
                        f"{attribute} belongs to another app; this app's extension would be {full}",
                    )
                    return
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
                    return
            else:
                yield Finding("target", True, f"{attribute}: built into Entra ID")
    elif spec.type == "file":
        path = session.config.resolve(spec.path)
        if not path.is_file():
            yield Finding("file", False, f"{path}: no such directory file")
            return
        writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
        yield Finding(
            "file",
            writable,
            f"{path}"
            + ("" if writable else ": not writable (the file and its folder must be writable)"),
        )
    attributes = read_attributes(session.engine, session.config)
    try:
        people = list(directory.read(attributes))
    except PersonaSyncError as exc:
        yield Finding("read", False, str(exc))
        return
    in_scope = [p for p in people if session.engine.in_scope(session.engine.facts(p))]
    yield Finding(
        "employees",
        bool(people),
        f"{len(people)} read, {len(in_scope)} in scope, {len(people) - len(in_scope)} out of scope"
        if people
        else "no entries found: check base_dns and filter",
    )
    if spec.type == "ldap" and in_scope:
        from persona_sync.directory.ldap import LdapDirectory

        assert isinstance(directory, LdapDirectory)
        sample = in_scope[0]
        for attribute in targets:
            allowed = directory.can_write(sample.dn, attribute)
            if allowed is None:
                yield Finding(
                    "write access",
                    False,
                    f"could not tell whether {attribute} is writable on {sample.dn}",
                )
            else:
                yield Finding(
                    "write access",
                    allowed,
                    (
                        f"may write {attribute} (probed on {sample.dn}, nothing changed)"
                        if allowed
                        else f"may NOT write {attribute} on {sample.dn}: grant write access to that "
                        "one attribute on user objects (see the README)"
                    ),
                )


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


def _secure(urls: list[str], start_tls: bool) -> bool:
    return start_tls or all(u.startswith("ldaps://") for u in urls)
