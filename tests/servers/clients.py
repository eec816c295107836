"""Run OpenLDAP's command-line clients against a test server and normalise their LDIF.

The CLI clients are independent of ldap3, which the code under test uses, so a test
that checks the directory with them does not share a bug with the code it checks.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Collection, Sequence
from pathlib import Path

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn

# Paged search works on both servers and keeps Samba's 1,000-entry page limit
# (MaxPageSize) from truncating a large dump.
PAGED_SEARCH = ("-E", "pr=500/noprompt")


class LdapToolError(RuntimeError):
    """An OpenLDAP client exited non-zero; the message carries its command and stderr."""

    def __init__(self, command: Sequence[str], returncode: int, stderr: str) -> None:
        self.command = list(command)
        self.returncode = returncode
        self.stderr = stderr
        shown = " ".join(_mask_password(command))
        super().__init__(f"{shown} exited {returncode}: {stderr.strip()}")


def _mask_password(command: Sequence[str]) -> list[str]:
    masked = list(command)
    for index, arg in enumerate(masked[:-1]):
        if arg == "-w":
            masked[index + 1] = "***"
    return masked


def ldap_tool_env(ca_file: Path | None) -> dict[str, str]:
    """Environment for an OpenLDAP client: trust only `ca_file` and demand a valid cert.

    ~/.ldaprc and ./ldaprc are ignored so a developer's own settings cannot change
    what the tests see.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LDAP")}
    env["LDAPRC"] = "/nonexistent-persona-sync-ldaprc"
    if ca_file is not None:
        env["LDAPTLS_CACERT"] = str(ca_file)
        env["LDAPTLS_REQCERT"] = "demand"
    return env


def run_ldap_tool(
    command: Sequence[str],
    *,
    ca_file: Path | None,
    input_text: str | None = None,
    timeout: float = 120.0,
) -> str:
    """Run `command` (ldapsearch, ldapadd, ...) and return its stdout.

    Raises LdapToolError when it exits non-zero.
    """
    result = subprocess.run(
        list(command),
        input=input_text,
        capture_output=True,
        text=True,
        env=ldap_tool_env(ca_file),
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise LdapToolError(command, result.returncode, result.stderr)
    return result.stdout


def _dn_sort_key(dn: str) -> tuple[str, ...]:
    """Parents sort before children: compare RDNs from the root down, case-folded."""
    try:
        rdns = [f"{attr}={value}" for attr, value, _sep in parse_dn(dn, escape=False)]
    except LDAPInvalidDnError:
        rdns = dn.split(",")
    return tuple(rdn.strip().casefold() for rdn in reversed(rdns))


def _attribute_name(line: str) -> str:
    """`cn: x`, `cn:: eA==`, `member;range=0-1: x` -> `cn` / `member` (case-folded)."""
    name = line.split(":", 1)[0]
    return name.split(";", 1)[0].casefold()


def _decode_dn(line: str) -> str:
    if line.startswith("dn:: "):
        return base64.b64decode(line[5:]).decode("utf-8")
    return line[4:]


def sorted_ldif(ldif_text: str, *, exclude: Collection[str] = ()) -> str:
    """Normalise unwrapped LDIF (`ldapsearch -LLL -o ldif-wrap=no`) for exact comparison.

    Entries are ordered by DN (parents first), attribute lines by name then value;
    attributes named in `exclude` (case-insensitive) are dropped. Comments and search
    references are dropped too.
    """
    excluded = {name.casefold() for name in exclude}
    entries: list[tuple[tuple[str, ...], str, list[str]]] = []
    for block in ldif_text.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln and not ln.startswith("#")]
        if not lines or not lines[0].startswith("dn:"):
            continue
        dn_line, attribute_lines = lines[0], lines[1:]
        kept = sorted(
            (ln for ln in attribute_lines if _attribute_name(ln) not in excluded),
            key=lambda ln: (_attribute_name(ln), ln),
        )
        entries.append((_dn_sort_key(_decode_dn(dn_line)), dn_line, kept))
    entries.sort(key=lambda entry: entry[0])
    return "".join("\n".join([dn_line, *lines]) + "\n\n" for _key, dn_line, lines in entries)


def search_dump(
    *,
    url: str,
    bind_dn: str,
    password: str,
    base: str,
    ca_file: Path | None,
    exclude: Collection[str] = (),
) -> str:
    """Dump every entry under `base` (user attributes only) as sorted LDIF."""
    output = run_ldap_tool(
        [
            "ldapsearch",
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-x",
            "-H",
            url,
            "-D",
            bind_dn,
            "-w",
            password,
            *PAGED_SEARCH,
            "-b",
            base,
            "-s",
            "sub",
            "(objectClass=*)",
            "*",
        ],
        ca_file=ca_file,
    )
    return sorted_ldif(output, exclude=exclude)
