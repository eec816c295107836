"""Helpers for LDAP backend tests: configs for the real servers and dump comparison."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.conftest import DEFAULT_RULES


def write_config(folder: Path, directory: str, target: str) -> Path:
    path = folder / "persona-sync.yaml"
    path.write_text(
        f"rules: {DEFAULT_RULES}\n"
        f"directory:\n{directory}"
        f"targets:\n  persona: {target}\n"
        "safety:\n  max_change_percent: 100\n"
        "state_dir: state\n",
        encoding="utf-8",
    )
    return path


def entries(dump: str) -> dict[str, list[str]]:
    """A sorted LDIF dump as {dn: attribute lines}, base64 values decoded."""
    found: dict[str, list[str]] = {}
    for block in dump.split("\n\n"):
        lines = [line for line in block.splitlines() if line]
        if not lines:
            continue
        dn = canonical_dn(_decode(lines[0])[1])
        found[dn] = sorted(f"{name}: {value}" for name, value in map(_decode, lines[1:]))
    return found


def _decode(line: str) -> tuple[str, str]:
    name, _, rest = line.partition(":")
    if rest.startswith(": "):
        raw = base64.b64decode(rest[2:])
        try:
            return name, raw.decode("utf-8")
        except UnicodeDecodeError:
            return name, "0x" + raw.hex()  # binary: objectGUID, objectSid
    return name, rest.lstrip(" ")


def differences(before: str, after: str) -> dict[str, tuple[list[str], list[str]]]:
    """Per DN: (lines removed, lines added) between two dumps."""
    old, new = entries(before), entries(after)
    changed = {}
    for dn in sorted(set(old) | set(new)):
        removed = sorted(set(old.get(dn, [])) - set(new.get(dn, [])))
        added = sorted(set(new.get(dn, [])) - set(old.get(dn, [])))
        if removed or added:
            changed[dn] = (removed, added)
    return changed


def canonical_dn(dn: str) -> str:
    """A DN with every escape resolved (``\\2C`` and ``\\,`` both become ``,``), case-folded.

    Servers return DNs in their own escaping; tests compare the names, not the spelling.
    """
    out: list[str] = []
    raw = dn.encode("utf-8")
    i = 0
    pending = bytearray()
    while i < len(raw):
        char = raw[i : i + 1]
        if char == b"\\" and i + 2 < len(raw) + 1:
            pair = raw[i + 1 : i + 3]
            if len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair):
                pending += bytes.fromhex(pair.decode())
                i += 3
                continue
            pending += raw[i + 1 : i + 2]
            i += 2
            continue
        pending += char
        i += 1
    out.append(pending.decode("utf-8", "replace"))
    return "".join(out).casefold()
