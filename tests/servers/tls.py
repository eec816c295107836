"""Test certificate authority and server certificates for the directory servers.

One CA per test process signs a certificate for every name a test may dial
(127.0.0.1, localhost and the Samba DC's host name), so clients can verify the
server strictly instead of switching verification off.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import trustme

# Every name a client in the test suite uses to reach a server. The DC's own name is
# included so a client that follows a referral or uses the DC's FQDN still verifies.
SERVER_IDENTITIES = ("127.0.0.1", "localhost", "dc1.example.test")


@dataclass(frozen=True)
class TlsFiles:
    """Paths of the PEM files one server uses, written by `write_tls_files`."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@functools.cache
def _pem_material() -> tuple[bytes, bytes, bytes]:
    """Return (CA cert, server cert chain, server key) PEM; made once per process."""
    ca = trustme.CA(organization_name="persona-sync tests")
    leaf = ca.issue_cert(*SERVER_IDENTITIES, common_name="dc1.example.test")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return ca.cert_pem.bytes(), chain, leaf.private_key_pem.bytes()


def write_tls_files(directory: Path) -> TlsFiles:
    """Write the test CA, server certificate and key into `directory`.

    The key file is mode 0600: Samba refuses to load a key others can read.
    """
    ca_pem, cert_pem, key_pem = _pem_material()
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server.key",
    )
    files.ca_file.write_bytes(ca_pem)
    files.cert_file.write_bytes(cert_pem)
    fd = os.open(files.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as key_out:
        key_out.write(key_pem)
    return files
