"""pytest fixtures for the fake Entra ID / Microsoft Graph server.

Load with `-p tests.fakegraph.plugin` or `pytest_plugins = ["tests.fakegraph.plugin"]` in
the top-level tests/conftest.py. Fixtures:

- `fake_entra`: a fresh FakeEntra for this test (20-30 ms to start), with one app
  registered as `fake_entra.app` (AppCredentials: client_id, secret, key_file, cert_file,
  thumbprint, ...), consented with DEFAULT_ROLES. The test fails if the fake itself hit
  an internal error (a bug in the fake, never in the client).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .server import FakeEntra

TENANT_ID = "7d0c6f3e-5a4b-4c2d-9e8f-1a2b3c4d5e6f"
CLIENT_ID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
DEFAULT_ROLES = ("User.ReadWrite.All", "Application.ReadWrite.OwnedBy")


@pytest.fixture
def fake_entra(tmp_path: Path) -> Iterator[FakeEntra]:
    """A running fake tenant with the persona-sync app registered and consented."""
    with FakeEntra(TENANT_ID) as fake:
        fake.app = fake.new_app(
            tmp_path / "fake-entra-app", roles=DEFAULT_ROLES, client_id=CLIENT_ID
        )
        yield fake
    if fake.server_errors:
        pytest.fail(
            "the fake Graph server failed:\n" + "\n".join(fake.server_errors), pytrace=False
        )
