"""Fault injection for the Graph side of the fake (the identity endpoint never faults).

The guarantee persona-sync's "nothing lost, nothing written twice" tests rely on: a
fault is decided BEFORE the request touches the directory. A request or $batch
sub-request answered 429 or 503, or whose connection is dropped, changed nothing; a
dropped $batch applied none of its sub-requests; a write refused by the write quota
changed nothing. So a client that sees a failure may always retry, and a client that saw
a success must never retry. (With `latency`, a client that gives up before the answer
closes its connection; the fake notices and drops the request unprocessed.)

The one exception is deliberate: the "lost answer" faults ("applied-504",
"applied-drop") apply the write FIRST and then lose its answer (504 Gateway Timeout, or
the connection closed), the case a client must settle by reading back, never by
resending blindly. They are logged with `answer_lost` set.

Where each fault applies:
- `latency`, `drop_ratio` and `every_request` rules: per HTTP request (a $batch counts
  once);
- `throttle_ratio`, `unavailable_ratio`, scripted outcomes, `every` rules and
  `write_quota`: per operation, that is per HTTP request other than $batch, and per
  $batch sub-request; the $batch envelope itself is never throttled, as on Graph.

Ratios draw from a seeded generator, so concurrent clients see different faults from run
to run; `every` / `every_request` rules count ("every third PATCH") and `after` runs an
action at an exact count, so a test that needs a fault to happen can rely on it.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

# An operation's fault: 429/503 (refused, nothing applied), "drop" (the whole HTTP request
# dropped unprocessed), "applied-504" (applied, then answered 504 Gateway Timeout: in a
# $batch, the sub-response), "applied-drop" (applied, then the connection closed: in a
# $batch, after every sub-request ran).
Outcome = Literal[429, 503, "drop", "applied-504", "applied-drop"]
OUTCOMES: tuple[Outcome, ...] = (429, 503, "drop", "applied-504", "applied-drop")
# An HTTP request's fault ($batch counts once): "drop" (closed unprocessed), "slow" (held
# up to `slow_seconds`; a client that gives up meanwhile gets it dropped unprocessed),
# "applied-504" / "applied-drop" (processed, then answered 504 / closed).
RequestFault = Literal["drop", "slow", "applied-504", "applied-drop"]
REQUEST_FAULTS: tuple[RequestFault, ...] = ("drop", "slow", "applied-504", "applied-drop")
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass
class _Rule:
    """Every `n`th matching operation or request (the nth, 2nth, ...) gets `fault`."""

    n: int
    fault: Outcome | RequestFault
    methods: frozenset[str] | None
    seen: int = 0


@dataclass
class _Action:
    """Run `action` once, right after the `n`th matching operation was answered."""

    n: int
    action: Callable[[], None]
    methods: frozenset[str] | None
    seen: int = 0
    done: bool = False


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
    - slow_seconds: how long a "slow" request is held (default 30)
    - every(n, outcome) / every_request(n, fault) / after(n, action): counted, exact
      faults (see each method)
    """

    def __init__(self, seed: int = 0) -> None:
        self.throttle_ratio = 0.0
        self.unavailable_ratio = 0.0
        self.drop_ratio = 0.0
        self.latency = 0.0
        self.retry_after = 1
        self.write_quota: tuple[int, float] | None = None
        self.methods: frozenset[str] | None = None
        self.slow_seconds = 30.0
        self._lock = threading.Lock()
        self._script: deque[Outcome] = deque()
        self._writes: deque[float] = deque()
        self._rules: list[_Rule] = []
        self._request_rules: list[_Rule] = []
        self._actions: list[_Action] = []
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
            if outcome not in OUTCOMES:
                raise ValueError(f"unknown outcome {outcome!r}: use one of {OUTCOMES}")
        with self._lock:
            self._script.extend(outcomes)

    def every(self, n: int, outcome: Outcome, methods: Iterable[str] | None = None) -> None:
        """Give `outcome` to every `n`th operation (request or $batch sub-request) with one
        of `methods` (default: any): the nth, the 2nth, ... counted from now. Exact
        whatever the interleaving: of 30 matching operations, every(3, ...) faults 10.
        Scripted outcomes come first; ratios apply to the operations no rule faults."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}: use one of {OUTCOMES}")
        with self._lock:
            self._rules.append(_Rule(_positive(n), outcome, _upper(methods)))

    def every_request(
        self, n: int, fault: RequestFault, methods: Iterable[str] | None = None
    ) -> None:
        """Give `fault` to every `n`th HTTP request to Graph (a $batch counts once and
        matches `methods` if any sub-request does)."""
        if fault not in REQUEST_FAULTS:
            raise ValueError(f"unknown request fault {fault!r}: use one of {REQUEST_FAULTS}")
        with self._lock:
            self._request_rules.append(_Rule(_positive(n), fault, _upper(methods)))

    def after(
        self, n: int, action: Callable[[], None], methods: Iterable[str] | None = None
    ) -> None:
        """Run `action` (e.g. `fake.expire_tokens`) once, right after the `n`th matching
        operation from now was answered (processed, or refused by a fault; a dropped
        request is not counted): a change of state at an exact point of a run."""
        with self._lock:
            self._actions.append(_Action(_positive(n), action, _upper(methods)))

    @property
    def scripted(self) -> int:
        """How many scripted outcomes are still queued."""
        return len(self._script)

    def reset(self) -> None:
        """Everything off again, the script and the write window emptied."""
        with self._lock:
            self._script.clear()
            self._writes.clear()
            self._rules.clear()
            self._request_rules.clear()
            self._actions.clear()
        self.throttle_ratio = self.unavailable_ratio = self.drop_ratio = self.latency = 0.0
        self.retry_after = 1
        self.slow_seconds = 30.0
        self.write_quota = None
        self.methods = None

    # -- decisions (used by the server) --------------------------------------------------

    def _matches(self, methods: Iterable[str]) -> bool:
        return self.methods is None or any(m.upper() in self.methods for m in methods)

    def request_fault(self, methods: Iterable[str]) -> RequestFault | None:
        """The fault for one HTTP request (methods: its own, or its sub-requests'), from
        the `every_request` rules, else "drop" by `drop_ratio`, else None."""
        wanted = [m.upper() for m in methods]
        with self._lock:
            fault = _count(self._request_rules, wanted)
        if fault is not None:
            return fault  # type: ignore[return-value]  # request rules hold RequestFaults
        if not self._matches(wanted) or self.drop_ratio <= 0:
            return None
        with self._lock:
            return "drop" if self._random.random() < self.drop_ratio else None

    def drop_request(self, methods: Iterable[str]) -> bool:
        """Whether to drop this HTTP request by `drop_ratio` (kept for callers of the
        ratio alone; the server asks request_fault)."""
        if not self._matches(list(methods)) or self.drop_ratio <= 0:
            return False
        with self._lock:
            return self._random.random() < self.drop_ratio

    def operation_outcome(self, method: str) -> Outcome | None:
        """The fault for one operation, or None to process it."""
        with self._lock:
            if self._script and self._matches([method]):
                return self._script.popleft()
            counted = _count(self._rules, [method.upper()])
            if counted is not None:
                return counted  # type: ignore[return-value]  # operation rules hold Outcomes
            if not self._matches([method]):
                return None
            draw = self._random.random()
        if draw < self.throttle_ratio:
            return 429
        if draw < self.throttle_ratio + self.unavailable_ratio:
            return 503
        return None

    def answered(self, method: str) -> list[Callable[[], None]]:
        """Count one answered operation (processed or refused); the `after` actions now
        due (the caller runs them outside the directory lock)."""
        due: list[Callable[[], None]] = []
        with self._lock:
            for action in self._actions:
                if action.done or not _method_matches(action.methods, [method.upper()]):
                    continue
                action.seen += 1
                if action.seen >= action.n:
                    action.done = True
                    due.append(action.action)
        return due

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


def _positive(n: int) -> int:
    if n < 1:
        raise ValueError(f"n must be 1 or more, not {n}")
    return n


def _upper(methods: Iterable[str] | None) -> frozenset[str] | None:
    return None if methods is None else frozenset(m.upper() for m in methods)


def _method_matches(methods: frozenset[str] | None, wanted: list[str]) -> bool:
    return methods is None or any(m in methods for m in wanted)


def _count(rules: list[_Rule], methods: list[str]) -> Outcome | RequestFault | None:
    """Count this operation or request in every matching rule (caller holds the lock);
    the fault of the first rule whose turn it is."""
    fault = None
    for rule in rules:
        if not _method_matches(rule.methods, methods):
            continue
        rule.seen += 1
        if rule.seen % rule.n == 0 and fault is None:
            fault = rule.fault
    return fault
