"""slapd without syncprov: the entryCSN margin from the config, and deletion sweeps on a
schedule (directory.deletion_sweep_every_minutes)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory import ldap_csn
from persona_sync.directory.base import Cursor, DeltaEnd
from persona_sync.directory.ldap import LdapDirectory
from persona_sync.secrets import Secret
from tests.ldap.test_delta_slapd import ATTRIBUTES, PEOPLE, SWEEP_NOTE, modify, person
from tests.servers.plugin import require_slapd
from tests.servers.slapd import SlapdServer

pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def server() -> Iterator[SlapdServer]:
    require_slapd()
    with SlapdServer() as server:
        server.add_ldif(
            person(server, "ceo", "Chief Executive Officer", None)
            + person(server, "alice", "Software Engineer")
            + person(server, "bob", "Registered Nurse")
            + person(server, "carol", "Accountant")
        )
        yield server


def directory(server: SlapdServer, **options: Any) -> LdapDirectory:
    spec = LdapDirectoryConfig.model_validate(
        {
            "type": "ldap",
            "preset": "openldap",
            "urls": [server.ldaps_url],
            "ca_file": str(server.ca_file),
            "bind": {"user": server.service_dn},
            "base_dns": [server.people_dn],
            **options,
        }
    )
    return LdapDirectory(spec, Secret(server.service_password, "test"))


def read(found: LdapDirectory, cursor: Cursor | None) -> tuple[set[str], list[str], DeltaEnd]:
    delta = found.read_delta(ATTRIBUTES, cursor)
    ids = {e.id for e in delta.entries}
    return ids, list(delta.notes), delta.finish()


def ids_of(found: LdapDirectory, keys: object) -> set[str]:
    assert isinstance(keys, set)
    by_key = {found.key(e): e.id for e in found.read(["cn"])}
    return {by_key.get(k, k) for k in keys}


def test_the_margin_comes_from_the_config(
    server: SlapdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ldap_csn, "CSN_MARGIN", timedelta(minutes=2))
    for margin, seen in ((None, {"alice", *PEOPLE}), (0, {"alice"})):
        options = {} if margin is None else {"entrycsn_margin_seconds": margin}
        with directory(server, **options) as found:
            _, _, end = read(found, None)
            assert end.cursor is not None
            modify(server, "alice", "title", f"Head of Nursing {margin}")
            ids, _, _ = read(found, end.cursor)
            assert ids == seen


def test_deletions_are_swept_on_the_schedule(server: SlapdServer) -> None:
    with directory(server, entrycsn_margin_seconds=0, deletion_sweep_every_minutes=60) as found:
        ids, notes, end = read(found, None)  # a full read counts as a sweep
        assert ids == set(PEOPLE)
        assert notes == [SWEEP_NOTE]
        assert end.cursor is not None
        swept = end.cursor.state["swept"]
        assert swept == end.cursor.taken
        server.modify_ldif(f"dn: uid=carol,{server.people_dn}\nchangetype: delete\n\n")
        modify(server, "bob", "title", "Head Nurse")

        ids, notes, end = read(found, end.cursor)  # within the hour: no sweep
        assert ids == {"bob"}
        assert notes == [
            SWEEP_NOTE,
            "deletions and moves out of scope are looked for every 60 min "
            "(directory.deletion_sweep_every_minutes); the last sweep was 0 min ago: not "
            "this time",
        ]
        assert (end.removed, end.present) == ((), None)
        assert end.cursor is not None and end.cursor.state["swept"] == swept

        old = (datetime.now(UTC) - timedelta(minutes=61)).isoformat(timespec="seconds")
        late = replace(end.cursor, state={**end.cursor.state, "swept": old})
        ids, notes, end = read(found, late)  # an hour later: swept, carol is gone
        assert (ids, notes) == (set(), [SWEEP_NOTE])
        assert end.removed == ()
        assert ids_of(found, end.present) == {"ceo", "alice", "bob"}
        assert end.cursor is not None and end.cursor.state["swept"] == end.cursor.taken


def test_a_cursor_without_a_sweep_time_sweeps(server: SlapdServer) -> None:
    with directory(server, entrycsn_margin_seconds=0) as found:
        _, _, end = read(found, None)
        assert end.cursor is not None and "swept" not in end.cursor.state
    with directory(server, entrycsn_margin_seconds=0, deletion_sweep_every_minutes=60) as found:
        for swept in (None, "yesterday"):
            state = dict(end.cursor.state)
            if swept is not None:
                state["swept"] = swept
            ids, notes, again = read(found, replace(end.cursor, state=state))
            assert notes == [SWEEP_NOTE]
            assert again.present is not None and len(again.present) == len(
                ids_of(found, again.present)
            )
            assert again.cursor is not None and again.cursor.state["swept"] == again.cursor.taken
