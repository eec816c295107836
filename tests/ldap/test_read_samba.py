"""The full read against a real Samba AD DC: objectGUID decoded as AD's tools show it and
used as the key, binary values (objectSid) left out, the same Employees as ldap3 gives."""

from __future__ import annotations

import base64
import uuid
from contextlib import closing

from ldap3 import SUBTREE

from persona_sync.config import LdapDirectoryConfig
from persona_sync.directory.ldap import LdapDirectory
from persona_sync.directory.ldap_conn import LdapLink
from persona_sync.secrets import Secret
from tests.servers.clients import run_ldap_tool
from tests.servers.samba import AdUser, SambaDC

ATTRIBUTES = ["title", "objectSid", "objectGUID", "manager", "description"]


def test_read_decodes_object_guid(samba_dc: SambaDC, samba_ou: str) -> None:
    users = [
        AdUser(
            f"ps-read-{i}", {"title": f"Title {i}", "description": "d" * (i * 90)}, None, samba_ou
        )
        for i in range(1, 8)
    ]
    samba_dc.add_users(users)
    spec = LdapDirectoryConfig.model_validate(
        {
            "type": "ldap",
            "preset": "ad",
            "urls": [samba_dc.url],
            "ca_file": samba_dc.ca_file,
            "bind": {"user": samba_dc.service_user},
            "base_dns": [samba_ou],
            "page_size": 3,
        }
    )
    with closing(LdapDirectory(spec, Secret(samba_dc.service_password, "test"))) as directory:
        ours = {e.dn: e for e in directory.read(ATTRIBUTES)}
        connection = LdapLink(spec, directory.password).connect()
        items = connection.extend.standard.paged_search(
            samba_ou,
            directory.search_filter(),
            SUBTREE,
            attributes=[a.lower() for a in [*ATTRIBUTES, "sAMAccountName"]],
            paged_size=3,
            generator=True,
        )
        theirs = {
            item["dn"]: directory._reading.employee(item["dn"], item["raw_attributes"])
            for item in items
            if item["type"] == "searchResEntry"
        }
        connection.unbind()
        assert ours == theirs
        assert sorted(e.id for e in ours.values()) == [u.name for u in users]
        # objectGUID as an independent client sees it (base64 of the 16 bytes, which AD
        # lays out little-endian in the first three fields).
        output = run_ldap_tool(
            [
                "ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-x", "-H", samba_dc.url,
                "-D", samba_dc.service_user, "-w", samba_dc.service_password, "-b", samba_ou,
                "(objectClass=user)", "objectGUID", "sAMAccountName",
            ],
            ca_file=samba_dc.ca_file,
        )  # fmt: skip
        guids = {}
        for block in output.split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "sAMAccountName" in lines:
                raw = base64.b64decode(lines["objectGUID:"])
                guids[lines["sAMAccountName"]] = str(uuid.UUID(bytes_le=raw))
        assert len(guids) == len(users)
        for employee in ours.values():
            assert "objectsid" not in employee.attributes  # binary: not a fact
            assert employee.attributes["objectguid"] == guids[employee.id]
            assert directory.key(employee) == guids[employee.id]
            assert employee.attributes["description"] == "d" * (int(employee.id[-1]) * 90)
