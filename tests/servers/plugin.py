"""pytest fixtures that start real directory servers.

Load with `pytest_plugins = ["tests.servers.plugin"]` in tests/conftest.py (or
`-p tests.servers.plugin`). Fixtures:

- `slapd`: a fresh OpenLDAP server per test (about 0.1 s to start).
- `slapd_factory`: makes OpenLDAP servers not yet started (to bulk-load data first).
- `slapd_session`: one OpenLDAP server shared by the whole session.
- `samba_dc`: one Samba AD DC shared by the whole session (about 1 s to start; 7-9 s
  the first time on a machine, while the template DC is provisioned).
- `samba_ou`: an OU of the test's own under OU=Staff of `samba_dc`, deleted afterwards.

Tests using any of them get the `servers` marker, so `-m "not servers"` skips them.
When a server's programs are missing the test is skipped with the install command,
except under CI=true, where a silent skip would hide a broken CI image: it fails.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence

import pytest

from .samba import REQUIRED_BINARIES as SAMBA_BINARIES
from .samba import SambaDC, SambaError
from .slapd import REQUIRED_BINARIES as SLAPD_BINARIES
from .slapd import SlapdServer

INSTALL_COMMAND = "sudo bash .ci/install-system-deps"
SERVER_FIXTURES = frozenset({"slapd", "slapd_factory", "slapd_session", "samba_dc", "samba_ou"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "servers: needs real slapd / Samba AD DC")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


def _unavailable(message: str) -> None:
    """Skip locally; fail under CI, whose image must have the servers."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _missing(binaries: Sequence[str]) -> list[str]:
    return [binary for binary in binaries if shutil.which(binary) is None]


def require_slapd() -> None:
    """Skip (or fail under CI) unless slapd and the OpenLDAP clients are installed."""
    if missing := _missing(SLAPD_BINARIES):
        _unavailable(
            f"slapd not installed (missing {', '.join(missing)}): run `{INSTALL_COMMAND}` "
            "(installs slapd ldap-utils samba samba-ad-dc)"
        )


def require_samba() -> None:
    """Skip (or fail under CI) unless a Samba AD DC can run here."""
    if missing := _missing(SAMBA_BINARIES):
        _unavailable(
            f"Samba AD DC not installed (missing {', '.join(missing)}): run "
            f"`{INSTALL_COMMAND}` (installs slapd ldap-utils samba samba-ad-dc ldb-tools)"
        )
    if os.geteuid() != 0:
        _unavailable("Samba AD DC tests must run as root (samba refuses to start otherwise)")


@pytest.fixture
def slapd() -> Iterator[SlapdServer]:
    """A fresh slapd for this test only."""
    require_slapd()
    with SlapdServer() as server:
        yield server


@pytest.fixture
def slapd_factory() -> Iterator[Callable[[], SlapdServer]]:
    """Make servers that are not started yet, e.g. to bulk-load LDIF with slapadd
    (`add_ldif` before `start()`); all are stopped after the test."""
    require_slapd()
    servers: list[SlapdServer] = []

    def make() -> SlapdServer:
        servers.append(SlapdServer())
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def slapd_session() -> Iterator[SlapdServer]:
    """One slapd for the whole session; tests must not depend on each other's data."""
    require_slapd()
    with SlapdServer() as server:
        yield server


@pytest.fixture(scope="session")
def samba_dc() -> Iterator[SambaDC]:
    """The session's Samba AD DC (ports 389/636 are fixed, so there is one per host)."""
    require_samba()
    dc = SambaDC()
    try:
        dc.start()
    except SambaError as error:
        # One clear line (ports taken, provisioning failed) instead of a traceback; pytest
        # caches it, so every Samba test of the session reports it without retrying.
        pytest.fail(str(error), pytrace=False)
    try:
        yield dc
    finally:
        dc.stop()


_ou_numbers = itertools.count(1)


@pytest.fixture
def samba_ou(samba_dc: SambaDC, request: pytest.FixtureRequest) -> Iterator[str]:
    """DN of a new, empty OU under OU=Staff for this test; deleted with its content
    afterwards. Users in it are writable by the service account like all of OU=Staff."""
    label = re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name).strip("-")
    dn = samba_dc.create_ou(f"t{next(_ou_numbers):03d}-{label}"[:60])
    yield dn
    samba_dc.delete_tree(dn)
