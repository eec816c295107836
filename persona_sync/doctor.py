"""check-connection: everything an admin should know before the first sync.

Each check is a :class:`Finding`; a failed one says what to do, a warning says what to
look at (it does not fail the command). Nothing is written: the LDAP write-access probe
deletes a value no entry has, which the server refuses either with "no such value"
(allowed) or "insufficient access" (not allowed).

What is checked depends on the backend (file, LDAP, Entra ID); every backend then reads
the employees, counts those in scope and looks at what the target attributes hold now.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass

from persona_sync.directory.base import Directory
from persona_sync.employee import Employee
from persona_sync.errors import PersonaSyncError
from persona_sync.plan import read_attributes
from persona_sync.session import Session

#: Employees named as examples of values that are not persona ids.
EXAMPLES = 3
#: Characters of a value shown in an example; longer ones are cut.
SHOWN_CHARACTERS = 40


@dataclass(frozen=True)
class Finding:
    """One check's result. ``warning``: it passed, but the admin should look at it."""

    check: str
    ok: bool
    detail: str
    warning: bool = False


#: A backend's own checks; returns whether the common ones that follow make sense.
Checks = Generator[Finding, None, bool]


def diagnose(session: Session, directory: Directory) -> Iterator[Finding]:
    """Run the checks in order; stop after the first one that makes the rest meaningless."""
    spec = session.config.spec.directory
    if spec.type == "ldap":
        checks = _ldap_checks(session, directory)
    elif spec.type == "entra":
        checks = _entra_checks(session, directory)
    else:
        checks = _file_checks(session)
    if not (yield from checks):
        return
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
    yield from _target_values(session, people, in_scope)
    if spec.type == "ldap" and in_scope:
        yield from _write_probe(session, directory, in_scope[0])


def _file_checks(session: Session) -> Checks:
    spec = session.config.spec.directory
    assert spec.type == "file"
    path = session.config.resolve(spec.path)
    if not path.is_file():
        yield Finding("file", False, f"{path}: no such directory file")
        return False
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    shown = f"{path}: not writable (the file and its folder must be writable)"
    yield Finding("file", writable, f"{path}" if writable else shown)
    return True  # an unwritable file can still be read: the checks below still tell


def _ldap_checks(session: Session, directory: Directory) -> Checks:
    from persona_sync.directory.ldap import LdapDirectory

    spec = session.config.spec.directory
    assert spec.type == "ldap" and isinstance(directory, LdapDirectory)
    try:
        root = directory.root_dse()
    except PersonaSyncError as exc:
        yield Finding("connect", False, str(exc))
        return False
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
    for attribute in session.config.spec.targets.values():
        try:
            directory.check_targets([attribute])
        except PersonaSyncError as exc:
            yield Finding("target", False, str(exc))
            return False
        yield Finding("target", True, f"{attribute}: in the schema, single-valued")
    return True


def _entra_checks(session: Session, directory: Directory) -> Checks:
    from persona_sync.directory.entra import EntraDirectory

    spec = session.config.spec.directory
    assert spec.type == "entra" and isinstance(directory, EntraDirectory)
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
    for attribute in session.config.spec.targets.values():
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


def _target_values(
    session: Session, people: Sequence[Employee], in_scope: Sequence[Employee]
) -> Iterator[Finding]:
    """Warn about target attributes that already hold values that are not persona ids.

    Such values are the sign that the attribute is someone else's: another product (or a
    script) keeps its own data there. Every entry read counts, in scope or not.
    """
    personas = {p.casefold() for p in session.engine.rule_set.personas}
    scoped = {id(p) for p in in_scope}
    owns = session.config.spec.owns_attribute
    for attribute in dict.fromkeys(session.config.spec.targets.values()):
        found = sorted(
            (
                (p.id, value, id(p) in scoped)
                for p in people
                if (value := p.get(attribute)) and value.casefold() not in personas
            ),
            key=lambda f: (f[0].casefold(), f[0]),
        )
        if found:
            yield Finding(
                "target values",
                True,
                _foreign_detail(attribute, found, owns),
                warning=True,
            )


def _foreign_detail(attribute: str, found: Sequence[tuple[str, str, bool]], owns: bool) -> str:
    count = len(found)
    values = (
        "1 value that is not a persona id"
        if count == 1
        else f"{count} values that are not persona ids"
    )
    examples = ", ".join(f"{employee}={_shown(value)}" for employee, value, _ in found[:EXAMPLES])
    more = f" and {count - EXAMPLES} more" if count > EXAMPLES else ""
    scoped = sum(1 for *_, in_scope in found if in_scope)
    consequence = (
        "owns_attribute is true, so a sync replaces those in scope: unless they are yours to "
        "replace, choose a free attribute"
        if owns
        else "persona-sync leaves such values alone (the plan lists them as foreign values); "
        "if another product owns them, choose a free attribute"
    )
    return (
        f"{attribute} already holds {values} ({scoped} in scope): {examples}{more}. "
        "Another product may keep its data in this attribute (the Power BI gateway's SSO "
        f"user mapping, for one, can use msDS-cloudExtensionAttribute1); {consequence}"
    )


def _shown(value: str) -> str:
    """A value for one line of output: quoted, control characters escaped, long ones cut."""
    if len(value) > SHOWN_CHARACTERS:
        value = value[: SHOWN_CHARACTERS - 3] + "..."
    return repr(value)


def _write_probe(session: Session, directory: Directory, sample: Employee) -> Iterator[Finding]:
    from persona_sync.directory.ldap import LdapDirectory

    assert isinstance(directory, LdapDirectory)
    for attribute in session.config.spec.targets.values():
        allowed = directory.can_write(sample.dn, attribute)
        if allowed is None:
            yield Finding(
                "write access",
                False,
                f"could not tell whether {attribute} is writable on {sample.dn}",
            )
        elif allowed:
            yield Finding(
                "write access",
                True,
                f"may write {attribute} (probed on {sample.dn}, nothing changed)",
            )
        else:
            yield Finding(
                "write access",
                False,
                f"may NOT write {attribute} on {sample.dn}: grant write access to that one "
                "attribute on user objects (see the README)",
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
