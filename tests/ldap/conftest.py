"""Helpers for LDAP backend tests: configs for the real servers, dump comparison, a slapd
behind a fault-injecting proxy, and readers of the journal and the logs."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from persona_sync.directory import ldap_stream
from tests.conftest import DEFAULT_RULES
from tests.ldap.proxy import LdapProxy, ldap_proxy
from tests.servers.slapd import SlapdServer

PEOPLE = 300
WINDOW = 20


def slapd_directory(server: SlapdServer) -> str:
    """The config's directory section for the suite's slapd, over LDAPS as the service
    account, the people under its base."""
    return (
        "  type: ldap\n  preset: openldap\n"
        f"  urls: [{server.ldaps_url}]\n  ca_file: {server.ca_file}\n"
        f"  bind: {{user: '{server.service_dn}'}}\n"
        f"  base_dns: ['{server.people_dn}']\n"
        "  auxiliary_class: personaHolder\n"
    )


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


def entries_ldif(slapd: SlapdServer, people: int = PEOPLE) -> str:
    return "".join(
        f"dn: uid=p{i:03d},{slapd.people_dn}\nobjectClass: inetOrgPerson\n"
        f"objectClass: personaHolder\nuid: p{i:03d}\n"
        f"cn: Person {i}\nsn: P\ntitle: Software Engineer\n"
        "physicalDeliveryOfficeName: Munich HQ\n\n"
        for i in range(people)
    )


def proxied_config(slapd: SlapdServer, proxy: LdapProxy, folder: Path, extra: str = "") -> Path:
    """A config that reaches slapd through the proxy, over TLS verified with the test CA."""
    return write_config(
        folder,
        (
            "  type: ldap\n  preset: openldap\n"
            f"  urls: ['ldaps://127.0.0.1:{proxy.port}']\n  ca_file: {slapd.ca_file}\n"
            f"  bind: {{user: '{slapd.service_dn}'}}\n"
            f"  base_dns: ['{slapd.people_dn}']\n"
            f"  auxiliary_class: personaHolder\n  write_window: {WINDOW}\n{extra}"
        ),
        "personaName",
    )


@pytest.fixture
def proxied(
    slapd: SlapdServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[LdapProxy]:
    """PEOPLE engineers on slapd, reached through an LdapProxy; a config for them in the
    test's folder (the working directory), the bind password in the environment."""
    slapd.add_ldif(entries_ldif(slapd))
    with ldap_proxy(slapd.port, tmp_path / "proxy-tls") as proxy:
        proxied_config(slapd, proxy, tmp_path)
        monkeypatch.setenv("PERSONA_SYNC_BIND_PASSWORD", slapd.service_password)
        monkeypatch.chdir(tmp_path)
        yield proxy


def written(slapd: SlapdServer) -> int:
    return slapd.dump().count("personaName: engineer")


def journal_rows(kind: str = "write") -> list[dict[str, object]]:
    return [
        row
        for path in sorted(Path("state/journal").glob("*.jsonl"))
        for row in map(json.loads, path.read_text().splitlines())
        if row["type"] == kind
    ]


def journal_results(result: str, run: str | None = None) -> set[str]:
    """uid of every write the journal records with this result (in one run, or any)."""
    return {
        str(row["dn"]).split(",")[0][4:]
        for row in journal_rows()
        if row["result"] == result and (run is None or row["run_id"] == run)
    }


def server_values(slapd: SlapdServer) -> dict[str, str]:
    """uid -> personaName as an independent client (ldapsearch) sees it."""
    values: dict[str, str] = {}
    for block in slapd.dump(slapd.people_dn).split("\n\n"):
        lines = block.splitlines()
        uid = next((line[5:] for line in lines if line.startswith("uid: ")), None)
        value = next((line[13:] for line in lines if line.startswith("personaName: ")), None)
        if uid and value:
            values[uid] = value
    return values


def log_events(stderr: str, event: str) -> list[dict[str, object]]:
    """The structured log events of that name among stderr's lines."""
    events = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event:
                events.append(record)
    return events


NOT_BUILT = (
    "the compiled decoder (persona_sync/directory/_ber.c) is not built: install the "
    "project with a C compiler and Python's headers (pip install -e .)"
)


@pytest.fixture(params=["compiled", "python"])
def walk(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each decoder of the stream in turn: the compiled one (``_ber.c``) and the Python
    walks it doubles (tests/ldap/test_stream_decoder.py compares them on generated bytes)."""
    if request.param == "python":
        monkeypatch.setattr(ldap_stream, "decode_entries", None)
        monkeypatch.setattr(ldap_stream, "frame_messages", None)
    else:
        assert ldap_stream.decode_entries is not None, NOT_BUILT
        assert ldap_stream.frame_messages is not None, NOT_BUILT
    return str(request.param)
