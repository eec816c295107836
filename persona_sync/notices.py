"""Notices: one line for the person running a command, about something happening now.

A backend that waits a long time (Graph throttling, an outage it rides out) says so with
:func:`notice` ("waiting 12 s: Graph throttled 40 of 200 writes (429, Retry-After)"), so a
run that is quiet for a minute is not mistaken for a hung one. Library code never prints:
the CLI decides where notices go with :func:`notices_to` (stderr, or nowhere under
``--quiet``). Every notice is also logged (event ``notice``), for JSON logs with ``-v``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from persona_sync.logs import get_logger

log = get_logger(__name__)

Sink = Callable[[str], None]

_sink: ContextVar[Sink | None] = ContextVar("persona_sync_notice_sink", default=None)


def notice(text: str) -> None:
    """Tell the person running the command (if the command shows notices)."""
    log.info("notice", text=text)
    sink = _sink.get()
    if sink is not None:
        sink(text)


@contextlib.contextmanager
def notices_to(sink: Sink | None) -> Iterator[None]:
    """Send the notices made inside the block to ``sink`` (None: only log them)."""
    token = _sink.set(sink)
    try:
        yield
    finally:
        _sink.reset(token)
