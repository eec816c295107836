"""Fixtures for the proof suite: a seeded company in a real slapd or in the Graph fake, and
a workspace whose config lets one unattended `persona-sync sync` write all of it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_RULES
from tests.fakegraph import FakeEntra
from tests.proof.company import company, ldap_dn, ldif, load_graph
from tests.proof.crash import Campaign
from tests.proof.targets import CrashTarget, GraphTarget, SlapdTarget
from tests.servers.plugin import require_slapd
from tests.servers.slapd import SlapdServer

# The number; PERSONA_SYNC_PROOF_SEED explores other companies and kill points.
SEED = int(os.environ.get("PERSONA_SYNC_PROOF_SEED", "9"))
EMPLOYEES = 6000  # about 5,600 changes under the default rules
GRAPH_TARGET = "onPremisesExtensionAttributes.extensionAttribute10"
# Limits that let one unattended sync write the whole company: the rerun after a crash is
# a plain `sync`, without --force.
SAFETY = "safety:\n  max_changes: 100000\n  max_change_percent: 100\n"


@dataclass
class Setup:
    target: CrashTarget
    campaign: Campaign


def _config(root: Path, directory: str, target: str) -> None:
    (root / "persona-sync.yaml").write_text(
        f"rules: {DEFAULT_RULES}\ndirectory:\n{directory}targets:\n  persona: {target}\n"
        f"{SAFETY}state_dir: state\n",
        encoding="utf-8",
    )


@pytest.fixture(params=["ldaps", "ldap"])
def slapd_company(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """slapd with the auditlog overlay and cn=Monitor, loaded with the company.

    Parametrized by transport: LDAPS as shipped, and plain LDAP (allow_plaintext), which
    tells a TLS-only failure from one of the run life cycle."""
    require_slapd()
    people = company(EMPLOYEES, SEED)
    server = SlapdServer(audit_log=True, monitor=True)
    try:
        server.add_ldif(ldif(people, server.people_dn))
        server.start()
        plain = request.param == "ldap"
        _config(
            tmp_path,
            "  type: ldap\n  preset: openldap\n"
            f"  urls: [{server.url if plain else server.ldaps_url}]\n"
            f"  ca_file: {server.ca_file}\n"
            f"  bind: {{user: '{server.service_dn}'}}\n"
            f"  base_dns: ['{server.people_dn}']\n"
            "  auxiliary_class: personaHolder\n" + ("  allow_plaintext: true\n" if plain else ""),
            "personaName",
        )
        target = SlapdTarget(server, [ldap_dn(p, server.people_dn) for p in people], "personaName")
        env = {"PERSONA_SYNC_BIND_PASSWORD": server.service_password}
        yield Setup(target, Campaign(target, tmp_path, env))
    finally:
        server.stop()


@pytest.fixture
def graph_company(fake_entra: FakeEntra, tmp_path: Path) -> Setup:
    """The Graph fake (faults off) loaded with the company."""
    ids = load_graph(fake_entra, company(EMPLOYEES, SEED), GRAPH_TARGET)
    assert fake_entra.app is not None
    _config(
        tmp_path,
        "  type: entra\n"
        f"  tenant_id: {fake_entra.tenant_id}\n  client_id: {fake_entra.app.client_id}\n"
        f"  authority_host: {fake_entra.authority.rsplit('/', 1)[0]}\n"
        f"  graph_endpoint: {fake_entra.graph_url.removesuffix('/v1.0')}\n"
        f"  ca_file: {fake_entra.ca_file}\n",
        GRAPH_TARGET,
    )
    target = GraphTarget(fake_entra, list(ids.values()), GRAPH_TARGET)
    env = {"PERSONA_SYNC_CLIENT_SECRET": fake_entra.app.secret}
    return Setup(target, Campaign(target, tmp_path, env))
