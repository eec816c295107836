"""A full read's evaluation of every employee, and the write that stores it.

Up to :data:`HELD_MAX` employees, a full read holds the rows it read (packed: about 430
bytes each) until the org chart is complete, then evaluates them and writes each row
once, decisions included; it reads nothing back from the snapshot. A larger read streams
its rows into the snapshot as they come, so memory stays bounded, and evaluates them from
there (:func:`evaluate_loaded`), a chunk read back and updated at a time.

Held rows are evaluated on two cores when the machine has them (Linux, at least
:data:`PARALLEL_MIN` rows, no other thread in the process): after a full read the
directory server is idle, and so is the second core. A forked worker is given the last
:data:`WORKER_SHARE` of the rows and sends the decisions back chunk by chunk through a
pipe (marshal), while this process evaluates and writes the first part and then writes
the worker's chunks as they come (SQLite has one writer: this process). The worker takes
its chunks from the front of its share; this process, done with its own part, takes the
worker's chunks from the back until the two meet, so neither waits for the other when
one core is slower than the other (a busy neighbour on a virtual machine). A shared page
says who took which chunk; a chunk both took at the same moment is evaluated twice and
this process keeps its own answer (the decisions are the same). The worker is
this process forked, so the rules, org chart, feeds and config are the same and so are
the decisions. It only evaluates: it never touches the snapshot's connection, the
directory's socket or the locks it inherited, and leaves with ``os._exit``, running no
exit handler. When it cannot start or ends before sending every chunk, this process
evaluates the rows it did not get (a warning says so): the plan is the same, and an
error in the rules is raised here exactly as without a worker.

Memory: a page either process writes after the fork is copied. So the worker's rows are
packed before it (it never touches their objects), the snapshot's page cache is small
while it lives, and the old snapshot's rows are deleted only after it (freeing them reads
their pages through the cache). At 100,000 employees the two processes' summed Pss
peaked at 297-311 MB without these, 232-257 MB with them (``bench/ldap_bench.py``; this
process alone: 188 MB).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import marshal
import mmap
import os
import select
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from persona_sync.employee import Employee
from persona_sync.logs import get_logger
from persona_sync.plan import Evaluator, plan_items
from persona_sync.rules.orgchart import Position
from persona_sync.snapshot import PlanItem, Snapshot, labels_text

log = get_logger(__name__)

HELD_MAX = 250_000  # rows a full read holds to evaluate before writing them (~110 MB)
PARALLEL_MIN = 20_000  # held rows below which a worker costs more than it saves
WORKER_SHARE = 0.85  # of the held rows, given to the worker: this process also writes
#: who took a chunk of the worker's share (a byte each on the shared page): nobody yet, the
#: worker, this process
FREE, BY_WORKER, BY_PARENT = 0, 1, 2
CHUNK = 2_000  # rows evaluated, then written or sent, at a time
PIPE_BYTES = 8 << 20  # what the worker may have sent ahead of this process's reading

#: A row as a full read holds it: (key, id, dn, manager link, packed attributes).
HeldRow = tuple[str, str, str, str | None, bytes]
#: A row's decisions: (depth, reports, population, changed, plan items or None, rowid).
Decided = tuple[int | None, int, str | None, int, list[PlanItem] | None, int]
Population = tuple[tuple[str, ...] | None, bool]
Worked = tuple[list[Decided], list[tuple[Population, int]]]  # decisions, population counts


@dataclass
class Evaluation:
    """What a full evaluation did: rows evaluated, how many by the worker, how many of
    the worker's share this process took back, and the population (labels per scenario
    or None, whether a change is planned, employees)."""

    rows: int
    by_worker: int
    population: list[tuple[tuple[str, ...] | None, bool, int]]
    taken_back: int = 0


def evaluate_held(
    store: Snapshot,
    held: list[HeldRow],
    evaluator: Evaluator,
    positions: Sequence[Position | None] | None,
) -> Evaluation:
    """Evaluate the rows a full read held and write them, decisions included: row n of
    ``held`` becomes rowid n + 1 (``positions`` by rowid; None: no org chart).

    With a worker, its share is packed (marshal, a chunk a string) and taken out of
    ``held`` before the fork, and the snapshot's page cache is small while it lives: a
    page that either process writes after the fork is copied, and the worker would
    otherwise touch its rows' objects, and this process its cache, on every shared page.
    """
    total = split = len(held)
    if total >= PARALLEL_MIN and _can_fork():
        split = total - int(total * WORKER_SHARE)
    if split == total:
        return _evaluate(store, held, [], total, evaluator, positions)
    packed = [marshal.dumps(held[first : first + CHUNK]) for first in range(split, total, CHUNK)]
    del held[split:]
    with store.small_cache():
        return _evaluate(store, held, packed, total, evaluator, positions)


def _evaluate(
    store: Snapshot,
    held: list[HeldRow],
    packed: list[bytes],
    total: int,
    evaluator: Evaluator,
    positions: Sequence[Position | None] | None,
) -> Evaluation:
    """``held`` evaluated here, and the ``packed`` chunks after it by a worker (those it
    does not hand back, here too): ``total`` rows."""
    counts: Counter[Population] = Counter()
    split = len(held)
    claims = mmap.mmap(-1, max(len(packed), 1))  # shared with the worker: who took a chunk
    worker = _Worker.start(packed, split, evaluator, positions, claims) if packed else None
    by_worker = taken = 0
    mine: set[int] = set()  # the worker's chunks this process took back

    def take(worked: Worked) -> None:  # the worker's next chunk: write it, unless taken back
        nonlocal by_worker, taken
        decided, counted = worked
        if taken not in mine:
            counts.update(dict(counted))
            _write(store, marshal.loads(packed[taken]), split + taken * CHUNK, decided)
            by_worker += len(decided)
        taken += 1

    def evaluate_chunk(index: int) -> None:  # one of the worker's chunks, here
        first, rows = split + index * CHUNK, marshal.loads(packed[index])
        _write(store, rows, first, decide(_numbered(rows, first), evaluator, positions, counts))

    try:
        store.clear_rows()  # after the fork: the old rows' pages go through this one's cache
        for first in range(0, split, CHUNK):
            rows = held[first : min(first + CHUNK, split)]
            decided = decide(_numbered(rows, first), evaluator, positions, counts)
            _write(store, rows, first, decided)
            if worker is not None:
                worker.poll(take)  # so that the worker never waits on a full pipe
        if worker is not None:
            for index in range(len(packed) - 1, -1, -1):  # from the back, until they meet
                if not take_back(claims, index):
                    break
                mine.add(index)
                evaluate_chunk(index)
                worker.poll(take)
            worker.finish(take)
        for index in range(taken, len(packed)):  # what the worker did not hand back
            if index not in mine:
                evaluate_chunk(index)
    finally:
        if worker is not None:
            worker.stop()
        claims.close()
    rows_back = sum(min(CHUNK, total - split - index * CHUNK) for index in mine)
    return Evaluation(total, by_worker, _population(counts), rows_back)


def take_back(claims: mmap.mmap, index: int) -> bool:
    """Whether this process takes the worker's chunk ``index``: the worker has not."""
    if claims[index] != FREE:
        return False
    claims[index] = BY_PARENT
    return True


def worker_takes(claims: mmap.mmap, index: int) -> bool:
    """Whether the worker takes its chunk ``index``: this process has not (nor, since it
    goes from the back, any later one)."""
    if claims[index] != FREE:
        return False
    claims[index] = BY_WORKER
    return True


def evaluate_loaded(
    store: Snapshot, evaluator: Evaluator, positions: Sequence[Position | None] | None
) -> Evaluation:
    """Evaluate every row a full read loaded into the snapshot and store the decisions
    (``positions`` by rowid; None: no org chart)."""
    counts: Counter[Population] = Counter()
    rows = 0
    for chunk in store.loaded():
        store.decide_loaded(decide(chunk, evaluator, positions, counts))
        rows += len(chunk)
    return Evaluation(rows, 0, _population(counts))


def decide(
    rows: Iterable[tuple[int, str, str, bytes]],
    evaluator: Evaluator,
    positions: Sequence[Position | None] | None,
    counts: Counter[Population],
) -> list[Decided]:
    """Each (rowid, id, dn, packed attributes)'s decisions, its population counted into
    ``counts``."""
    unpack = marshal.loads
    labels: dict[tuple[str, ...] | None, str | None] = {}
    decided: list[Decided] = []
    for rowid, id_, dn, attrs in rows:
        position = positions[rowid] if positions is not None else None
        result = evaluator(Employee(id_, dn, unpack(attrs)), position)
        changed = bool(result.changes)
        population = result.population
        counts[population, changed] += 1
        items = plan_items(result) if changed or result.foreign or result.skipped else None
        depth, reports = (position.depth, position.direct_reports) if position else (None, 0)
        label = labels.get(population, "")
        if label == "":
            label = labels[population] = labels_text(population)
        decided.append((depth, reports, label, int(changed), items, rowid))
    return decided


class _Worker:
    """The forked process that evaluates the packed chunks of rows from rowid ``start`` + 1
    on and sends the decisions back chunk by chunk: an 8-byte length, then ``marshal`` of
    (decisions, population counts)."""

    def __init__(self, pid: int, answer: int) -> None:
        self.pid = pid
        self.answer = answer  # the pipe's read end (non-blocking), or -1 once at its end
        self.waited = False
        self._buffer = bytearray()

    @classmethod
    def start(
        cls,
        packed: Sequence[bytes],
        start: int,
        evaluator: Evaluator,
        positions: Sequence[Position | None] | None,
        claims: mmap.mmap,
    ) -> _Worker | None:
        pipe: tuple[int, ...] = ()
        try:
            pipe = answer, out = os.pipe()
            _widen(out)
            pid = os.fork()
        except OSError as exc:
            for end in pipe:
                os.close(end)
            log.warning("evaluation_worker_lost", reason=f"cannot start: {exc.strerror}")
            return None
        if pid == 0:  # pragma: no cover - the worker (coverage does not follow forks)
            os.close(answer)
            _work(out, packed, start, evaluator, positions, claims)
        os.close(out)
        os.set_blocking(answer, False)
        return cls(pid, answer)

    def poll(self, take: Callable[[Worked], None]) -> None:
        """Hand each chunk that has arrived whole to ``take``, without waiting."""
        while self.answer >= 0:
            try:
                data = os.read(self.answer, 1 << 20)
            except BlockingIOError:
                break
            if not data:
                self._close()
                break
            self._buffer += data
        self._frames(take)

    def finish(self, take: Callable[[Worked], None]) -> None:
        """Every remaining chunk to ``take``, up to the worker's end; a worker that ended
        badly is said so (the rows it did not hand back are the caller's)."""
        while self.answer >= 0:
            select.select([self.answer], [], [])
            self.poll(take)
        self._frames(take)
        _, status = os.waitpid(self.pid, 0)
        self.waited = True
        if status != 0:
            how = (
                f"signal {os.WTERMSIG(status)}"
                if os.WIFSIGNALED(status)
                else f"exit status {os.WEXITSTATUS(status)}"
            )
            log.warning("evaluation_worker_lost", reason=f"it ended with {how}")

    def _frames(self, take: Callable[[Worked], None]) -> None:
        buffer = self._buffer
        while len(buffer) >= 8:
            size = int.from_bytes(buffer[:8], "little")
            if len(buffer) < 8 + size:
                break
            worked: Worked = marshal.loads(bytes(buffer[8 : 8 + size]))
            del buffer[: 8 + size]
            take(worked)

    def _close(self) -> None:
        if self.answer >= 0:
            os.close(self.answer)
            self.answer = -1

    def stop(self) -> None:
        """Reap the worker (killed first when it was not collected: an error here)."""
        self._close()
        if not self.waited:
            with contextlib.suppress(ProcessLookupError):  # it may have ended already
                os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.waited = True


def _widen(pipe: int) -> None:
    """Make the pipe hold PIPE_BYTES (or as much as the system allows): a chunk's answer
    is about 180 KB at 10% changes, and with the default 64 KB the worker would wait for
    this process's next look at the pipe after every 64 KB: a third of its speed."""
    try:
        fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:  # above the system's limit, without the privilege to pass it
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe, fcntl.F_SETPIPE_SZ, _pipe_max())


def _pipe_max() -> int:
    try:
        with open("/proc/sys/fs/pipe-max-size", encoding="ascii") as limit:
            return int(limit.read())
    except (OSError, ValueError):
        return 1 << 20


def _work(
    out: int,
    packed: Sequence[bytes],
    start: int,
    evaluator: Evaluator,
    positions: Sequence[Position | None] | None,
    claims: mmap.mmap,
) -> None:  # pragma: no cover - runs in the worker
    """The worker's whole life: take chunk by chunk from the front until it meets those
    the parent took back, evaluate and send each, leave without exit handlers."""
    code = 1
    try:
        gc.disable()  # short-lived: a collection would only copy the parent's pages
        for index, chunk in enumerate(packed):
            if not worker_claims(claims, index):
                break
            counts: Counter[Population] = Counter()
            rows = _numbered(marshal.loads(chunk), start + index * CHUNK)
            decided = worker_decide(rows, evaluator, positions, counts)
            data = marshal.dumps((decided, list(counts.items())))
            view = memoryview(len(data).to_bytes(8, "little") + data)
            while view:
                view = view[os.write(out, view) :]
        code = 0
    finally:
        os._exit(code)


def _numbered(rows: Sequence[HeldRow], first: int) -> Iterator[tuple[int, str, str, bytes]]:
    """(rowid, id, dn, packed attributes) of ``rows``, the first being rowid ``first`` + 1."""
    for rowid, (_key, id_, dn, _manager, attrs) in enumerate(rows, first + 1):
        yield rowid, id_, dn, attrs


def _write(store: Snapshot, rows: Sequence[HeldRow], first: int, decided: list[Decided]) -> None:
    """``rows`` (the first being rowid ``first`` + 1) written with their decisions."""
    written = []
    for depth, reports, label, changed, _items, rowid in decided:
        key, id_, dn, manager, attrs = rows[rowid - first - 1]
        written.append((rowid, key, id_, dn, manager, attrs, depth, reports, label, changed))
    items = ((rowid, *item) for *_, found, rowid in decided if found for item in found)
    store.load_decided(written, items)


def _can_fork() -> bool:
    """Linux, a second core this process may use, and no other thread (a fork copies only
    the forking thread: a lock another thread held would stay held in the worker)."""
    if not sys.platform.startswith("linux") or _threads() > 1:
        return False
    return len(os.sched_getaffinity(0)) >= 2


def _threads() -> int:
    return threading.active_count()


def _population(counts: Counter[Population]) -> list[tuple[tuple[str, ...] | None, bool, int]]:
    return [(labels, changed, n) for (labels, changed), n in counts.items()]


worker_decide = decide  # what the worker runs: tests replace it to fail in the worker
worker_claims = worker_takes  # how the worker takes a chunk: tests replace it
