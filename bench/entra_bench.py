"""Apply 10,000 persona changes to Entra ID through the real msal + msgraph-sdk, against
the project's fake Graph (tests/fakegraph) over HTTPS on loopback.

    python bench/entra_bench.py                 # both runs below, 10,000 users
    python bench/entra_bench.py --users 2000

Run 1, quota: 20 ms latency per HTTP request and Graph's write quota (3,000 writes per
150 s per app and tenant) scaled 30x faster, i.e. 3,000 writes per 5 s. The floor is what
the quota and latency allow at best: the quota's windows plus one read and one write
round trip. Target: within 1.2x of the floor.
Run 2, no quota, no added latency: raw writes per second. Target: at least 1,000/s.
Both print their figures; nothing is asserted (bench, not test).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from persona_sync.config import EntraDirectoryConfig  # noqa: E402
from persona_sync.directory.base import Change  # noqa: E402
from persona_sync.directory.entra import Credential, EntraDirectory  # noqa: E402
from persona_sync.secrets import Secret  # noqa: E402
from tests.fakegraph import FakeEntra  # noqa: E402

TARGET = "onPremisesExtensionAttributes.extensionAttribute10"
QUOTA = (3000, 5.0)
LATENCY = 0.020


@dataclass(frozen=True)
class Served:
    tenant_id: str
    client_id: str
    secret: str
    authority: str
    graph_url: str
    ca_file: str
    user_ids: list[str]


def serve(connection: Any, users: int, quota: bool, folder: str) -> None:
    """The fake Graph in its own process, as the real one would be: set up, then serve
    until told to stop; report how many sub-requests were throttled and written."""
    with FakeEntra() as fake:
        fake.app = fake.new_app(Path(folder), roles=("User.ReadWrite.All",))
        ids = [fake.add_user(jobTitle="Software Engineer") for _ in range(users)]
        if quota:
            fake.faults.latency = LATENCY
            fake.faults.write_quota = QUOTA
        connection.send(
            Served(
                fake.tenant_id,
                fake.app.client_id,
                fake.app.secret,
                fake.authority,
                fake.graph_url,
                str(fake.ca_file),
                ids,
            )
        )
        connection.recv()  # stop
        throttled = sum(1 for r in fake.requests if r.status == 429)
        connection.send((throttled, len(fake.writes)))


def directory_for(served: Served, concurrency: int) -> EntraDirectory:
    spec = EntraDirectoryConfig(
        type="entra",
        tenant_id=served.tenant_id,
        client_id=served.client_id,
        authority_host=served.authority.rsplit("/", 1)[0],
        graph_endpoint=served.graph_url.removesuffix("/v1.0"),
        ca_file=Path(served.ca_file),
        concurrency=concurrency,
    )
    return EntraDirectory(spec, Credential(secret=Secret(served.secret, "bench")))


def apply_all(
    users: int, concurrency: int, quota: bool, folder: str
) -> tuple[float, dict[str, int], int, int]:
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(target=serve, args=(child, users, quota, folder))
    server.start()
    served: Served = parent.recv()
    changes = [
        Change(f"u{i}", user_id, TARGET, None, "engineer")
        for i, user_id in enumerate(served.user_ids)
    ]
    directory = directory_for(served, concurrency)
    try:
        directory.token()  # the token is not part of the write time
        started = time.perf_counter()
        counts: dict[str, int] = {}
        for start in range(0, len(changes), directory.batch_size):
            for result in directory.apply(changes[start : start + directory.batch_size]):
                counts[result.status] = counts.get(result.status, 0) + 1
        elapsed = time.perf_counter() - started
    finally:
        directory.close()
        parent.send("stop")
        throttled, written = parent.recv()
        server.join()
    return elapsed, counts, throttled, written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=8)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        elapsed, counts, throttled, written = apply_all(
            options.users, options.concurrency, True, f"{temp}/a"
        )
        count, window = QUOTA
        floor = (math.ceil(options.users / count) - 1) * window + 2 * LATENCY
        print(
            f"quota run            {options.users:,} changes in {elapsed:.2f} s ({counts}); "
            f"{throttled:,} sub-requests answered 429; {written:,} writes on the server"
        )
        print(
            f"floor                {floor:.2f} s (quota {count:,} writes / {window:g} s, "
            f"{LATENCY * 1000:.0f} ms latency)"
        )
        print(
            f"ratio to floor       {elapsed / floor:.2f}x (target <= 1.2x: "
            f"{'met' if elapsed <= 1.2 * floor else 'NOT met'})"
        )
        elapsed, counts, _, written = apply_all(
            options.users, options.concurrency, False, f"{temp}/b"
        )
        rate = options.users / elapsed
        print(
            f"no quota             {options.users:,} changes in {elapsed:.2f} s = {rate:,.0f} "
            f"writes/s ({counts}; {written:,} writes on the server); target >= 1,000/s: "
            f"{'met' if rate >= 1000 else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
