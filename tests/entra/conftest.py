"""A workspace pointing persona-sync at the fake Entra ID / Graph server."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from persona_sync.config import EntraDirectoryConfig
from persona_sync.directory.entra import Credential, EntraDirectory
from persona_sync.directory.entra_graph import Clock
from persona_sync.secrets import Secret
from tests.conftest import DEFAULT_RULES
from tests.fakegraph import FakeEntra

ON_PREMISES = "onPremisesExtensionAttributes.extensionAttribute10"


def entra_directory(
    fake: FakeEntra, secret: str | None = None, clock: Clock | None = None, **settings: Any
) -> EntraDirectory:
    """The Entra ID backend pointed at the fake, through its API (no CLI)."""
    assert fake.app is not None
    spec = EntraDirectoryConfig(
        type="entra",
        tenant_id=fake.tenant_id,
        client_id=fake.app.client_id,
        authority_host=fake.origin,
        graph_endpoint=fake.origin,
        ca_file=Path(fake.ca_file),
        **settings,
    )
    credential = Credential(secret=Secret(secret or fake.app.secret, "test"))
    return EntraDirectory(spec, credential, clock)


class FakeClock(Clock):
    """Time that passes only when someone sleeps: a 12-second Retry-After takes none."""

    def __init__(self) -> None:
        self.time = 1000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.time += seconds
        await asyncio.sleep(0)


@dataclass
class Tenant:
    fake: FakeEntra
    root: Path
    users: dict[str, str]

    @property
    def config(self) -> Path:
        return self.root / "persona-sync.yaml"

    def write_config(self, target: str = ON_PREMISES, extra: str = "") -> None:
        authority_host = self.fake.authority.rsplit("/", 1)[0]
        graph = self.fake.graph_url.removesuffix("/v1.0")
        assert self.fake.app is not None
        self.config.write_text(
            f"rules: {DEFAULT_RULES}\n"
            "directory:\n  type: entra\n"
            f"  tenant_id: {self.fake.tenant_id}\n  client_id: {self.fake.app.client_id}\n"
            f"  authority_host: {authority_host}\n  graph_endpoint: {graph}\n"
            f"  ca_file: {self.fake.ca_file}\n{extra}"
            f"targets:\n  persona: {target}\n"
            "safety:\n  max_change_percent: 100\n"
            "state_dir: state\n",
            encoding="utf-8",
        )

    def value(self, name: str, attribute: str = ON_PREMISES) -> object:
        user = self.fake.users[self.users[name]]
        if "." in attribute:
            outer, inner = attribute.split(".")
            return (user.get(outer) or {}).get(inner)
        return user.get(attribute)

    def add_staff(self, count: int, prefix: str = "s", **props: Any) -> list[str]:
        """Cloud-only engineers (persona "engineer"): `count` more planned writes."""
        defaults = {"jobTitle": "Software Engineer", "officeLocation": "Munich HQ"}
        return [
            self.fake.add_user(
                userPrincipalName=f"{prefix}{n}@contoso.example", **{**defaults, **props}
            )
            for n in range(count)
        ]

    def journal(self) -> list[dict[str, Any]]:
        """Every record of every run, in file order (one run per test here)."""
        folder = self.root / "state" / "journal"
        return [
            json.loads(line)
            for path in sorted(folder.glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()
        ]

    def journalled(self) -> dict[str, list[str]]:
        """User id -> the results journalled for it, in order."""
        results: dict[str, list[str]] = {}
        for record in self.journal():
            if record["type"] == "write":
                results.setdefault(record["dn"], []).append(record["result"])
        return results

    def written(self) -> Counter[str]:
        """User id -> how many PATCHes changed its target attribute."""
        return Counter(w.user_id for w in self.fake.writes)


SUMMARY = re.compile(r"(\d+) (applied|already set|conflicts|failed|unconfirmed|not sent)")


def summary(stderr: str) -> dict[str, int]:
    """The counts of the run summary line ("run ...: 3 applied, 0 already set, ...")."""
    line = next(x for x in stderr.splitlines() if x.startswith("run "))
    return {name: int(number) for number, name in SUMMARY.findall(line.split("; journal")[0])}


@pytest.fixture
def tenant(
    fake_entra: FakeEntra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Tenant]:
    fake = fake_entra
    boss = fake.add_user(
        userPrincipalName="ceo@contoso.example",
        jobTitle="Chief Executive Officer",
        officeLocation="Munich HQ",
    )
    users = {
        "boss": boss,
        "nurse": fake.add_user(
            userPrincipalName="nurse@contoso.example",
            jobTitle="Registered Nurse",
            officeLocation="North Clinic",
            manager=boss,
        ),
        "engineer": fake.add_user(
            userPrincipalName="eng@contoso.example",
            jobTitle="Software Engineer",
            officeLocation="Munich HQ",
            manager=boss,
        ),
        "synced": fake.add_user(
            userPrincipalName="synced@contoso.example",
            jobTitle="Cashier",
            officeLocation="Store 9",
            onPremisesSyncEnabled=True,
        ),
        "disabled": fake.add_user(
            userPrincipalName="gone@contoso.example",
            jobTitle="Chief Financial Officer",
            accountEnabled=False,
        ),
    }
    assert fake.app is not None
    monkeypatch.setenv("PERSONA_SYNC_CLIENT_SECRET", fake.app.secret)
    monkeypatch.chdir(tmp_path)
    workspace = Tenant(fake, tmp_path, users)
    workspace.write_config()
    yield workspace
