"""check-connection for LDAP: the bind, the server, the target attributes in the schema, and
a write probe that changes nothing.

The probe deletes a value no entry has, which the server refuses either with "no such
value" (allowed) or "insufficient access" (not allowed).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from persona_sync.directory.base import Checks, Finding
from persona_sync.directory.ldap_stream import DECODER
from persona_sync.employee import Employee
from persona_sync.errors import PersonaSyncError

if TYPE_CHECKING:
    from persona_sync.directory.ldap import LdapDirectory


def connection_checks(directory: LdapDirectory, targets: Sequence[str]) -> Checks:
    spec = directory.spec
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
    yield decoder_finding()
    for attribute in targets:
        try:
            directory.check_targets([attribute])
        except PersonaSyncError as exc:
            yield Finding("target", False, str(exc))
            return False
        yield Finding("target", True, f"{attribute}: in the schema, single-valued")
    return True


def decoder_finding() -> Finding:
    """Which walk decodes the entries a read returns: the compiled one is built at install
    when a C compiler is there; without it a full plan takes about a third longer."""
    if DECODER == "compiled":
        return Finding("decoder", True, "entries decoded by the compiled decoder")
    return Finding(
        "decoder",
        True,
        "entries decoded in pure Python (a full plan takes about a third longer): "
        "reinstall persona-sync where a C compiler and Python's headers are installed "
        "(Debian: apt install gcc python3-dev) to build the compiled decoder",
        warning=True,
    )


def write_probe(
    directory: LdapDirectory, sample: Employee, targets: Sequence[str]
) -> Iterator[Finding]:
    for attribute in targets:
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


def _secure(urls: list[str], start_tls: bool) -> bool:
    return start_tls or all(u.startswith("ldaps://") for u in urls)
