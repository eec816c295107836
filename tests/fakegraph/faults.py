"""Fault injection for the Graph side of the fake (the identity endpoint never faults).

The guarantee persona-sync's "nothing lost, nothing written twice" tests rely on: a
fault is decided BEFORE the request touches the directory. A request or $batch
sub-request answered 429 or 503, or whose connection is dropped, changed nothing; a
dropped $batch applied none of its sub-requests; a write refused by the write quota
changed nothing. So a client that sees a failure may always retry, and a client that saw
a success must never retry. (With `latency`, a client that gives up before the answer
closes its connection; the fake notices and drops the request unprocessed.)

Where each fault applies:
- `latency` and `drop_ratio`: per HTTP request (a $batch counts once);
- `throttle_ratio`, `unavailable_ratio`, scripted outcomes and `write_quota`: per
  operation, that is per HTTP request other than $batch, and per $batch sub-request;
  the $batch envelope itself is never throttled, as on Graph.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Literal

Outcome = Literal[429, 503, "drop"]
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


class Faults:
    """Switches for failures. Ratios are fractions between 0 and 1, drawn from a random
    generator seeded with `seed` (reproducible for a client that sends requests one at a
    time; concurrent clients interleave draws). Set attributes at any time.

    - throttle_ratio: fraction of operations answered 429 TooManyRequests with
      `Retry-After: retry_after` (in a $batch, in the sub-response's headers)
    - unavailable_ratio: fraction answered 503 serviceNotAvailable, same Retry-After
    - drop_ratio: fraction of HTTP requests whose connection is closed with no answer
    - latency: seconds added before each HTTP request is processed
    - retry_after: seconds in Retry-After (default 1; 0 allowed)
    - write_quota: (count, per_seconds): at most `count` writes (PATCH/POST/PUT/DELETE
      operations) in any sliding window of `per_seconds`; beyond, 429 with a Retry-After
      saying when the window frees a place
    - methods: if set, ratios and scripted outcomes apply only to operations with these
      HTTP methods (e.g. {"PATCH"}); a $batch matches if any sub-request matches
    """

    def __init__(self, seed: int = 0) -> None:
        self.throttle_ratio = 0.0
        self.unavailable_ratio = 0.0
        self.drop_ratio = 0.0
        self.latency = 0.0
        self.retry_after = 1
        self.write_quota: tuple[int, float] | None = None
        self.methods: frozenset[str] | None = None
        self._lock = threading.Lock()
        self._script: deque[Outcome] = deque()
        self._writes: deque[float] = deque()
        self.seed = seed

    @property
    def seed(self) -> int:
        return self._seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._seed = value
        self._random = random.Random(value)

    def script(self, *outcomes: Outcome) -> None:
        """Queue exact outcomes for the next matching operations, before any ratio:
        e.g. `script(429, 429)` throttles the next two, `script("drop")` drops the next
        (in a $batch, a scripted "drop" drops the whole $batch)."""
        for outcome in outcomes:
            if outcome not in (429, 503, "drop"):
                raise ValueError(f"unknown outcome {outcome!r}: use 429, 503 or 'drop'")
        with self._lock:
            self._script.extend(outcomes)

    @property
    def scripted(self) -> int:
        """How many scripted outcomes are still queued."""
        return len(self._script)

    def reset(self) -> None:
        """Everything off again, the script and the write window emptied."""
        with self._lock:
            self._script.clear()
            self._writes.clear()
        self.throttle_ratio = self.unavailable_ratio = self.drop_ratio = self.latency = 0.0
        self.retry_after = 1
        self.write_quota = None
        self.methods = None

    # -- decisions (used by the server) --------------------------------------------------

    def _matches(self, methods: Iterable[str]) -> bool:
        return self.methods is None or any(m.upper() in self.methods for m in methods)

    def drop_request(self, methods: Iterable[str]) -> bool:
        """Whether to drop this HTTP request (methods: its own, or its sub-requests')."""
        if not self._matches(list(methods)) or self.drop_ratio <= 0:
            return False
        with self._lock:
            return self._random.random() < self.drop_ratio

    def operation_outcome(self, method: str) -> Outcome | None:
        """The fault for one operation, or None to process it."""
        if not self._matches([method]):
            return None
        with self._lock:
            if self._script:
                return self._script.popleft()
            draw = self._random.random()
        if draw < self.throttle_ratio:
            return 429
        if draw < self.throttle_ratio + self.unavailable_ratio:
            return 503
        return None

    def admit_write(self, method: str) -> int | None:
        """None if a write may proceed (and counts it), else the Retry-After seconds."""
        if method.upper() not in WRITE_METHODS or self.write_quota is None:
            return None
        count, per_seconds = self.write_quota
        now = time.monotonic()
        with self._lock:
            while self._writes and self._writes[0] <= now - per_seconds:
                self._writes.popleft()
            if len(self._writes) >= count:
                return max(1, math.ceil(self._writes[0] + per_seconds - now))
            self._writes.append(now)
            return None
