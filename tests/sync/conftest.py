"""A workspace: a small awkward LDIF directory, a config and the default rules."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_RULES

DIRECTORY = """\
version: 1

# An export as ldifde would write it: comments, a base64 DN, an escaped comma.
dn: CN=Boss,OU=People,DC=example,DC=com
changetype: add
cn: Boss
sAMAccountName: boss
title: Chief Executive Officer
physicalDeliveryOfficeName: Munich HQ
userAccountControl: 512

dn: CN=Smith\\, John,OU=People,DC=example,DC=com
cn: Smith, John
sAMAccountName: jsmith
title: Registered Nurse
manager: CN=Boss,OU=People,DC=example,DC=com
physicalDeliveryOfficeName: North Clinic
msDS-cloudExtensionAttribute1: engineer

dn:: Q049TcO8bGxlclwsIErDtnJnLE9VPVBlb3BsZSxEQz1leGFtcGxlLERDPWNvbQ==
cn:: TcO8bGxlciwgSsO2cmc=
sAMAccountName: jmuller
title: Software Engineer
manager: CN=Boss,OU=People,DC=example,DC=com
physicalDeliveryOfficeName: Munich HQ
description: a long description that is folded over two lines as ldapsearch
  does it
msDS-cloudExtensionAttribute1: engineer

dn: CN=Legacy,OU=People,DC=example,DC=com
sAMAccountName: legacy
title: Cashier
physicalDeliveryOfficeName: Store 1
msDS-cloudExtensionAttribute1: legacy-tag

dn: CN=Gone,OU=People,DC=example,DC=com
sAMAccountName: gone
title: Cashier
userAccountControl: 514

dn: CN=Backup,OU=Service Accounts,DC=example,DC=com
sAMAccountName: svc-backup
title: Backup job
"""

CONFIG = """\
rules: {rules}
directory:
  type: file
  path: company.ldif
targets:
  persona: msDS-cloudExtensionAttribute1
safety:
  max_changes: 500
  max_change_percent: 100
state_dir: state
"""


@dataclass
class Workspace:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "persona-sync.yaml"

    @property
    def directory(self) -> Path:
        return self.root / "company.ldif"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def text(self) -> str:
        return self.directory.read_text(encoding="utf-8")


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    ws = Workspace(tmp_path)
    ws.directory.write_text(DIRECTORY, encoding="utf-8")
    ws.config.write_text(CONFIG.format(rules=DEFAULT_RULES), encoding="utf-8")
    # not monkeypatch.chdir: tests call monkeypatch.undo() to end their own patches
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield ws
    finally:
        os.chdir(cwd)
