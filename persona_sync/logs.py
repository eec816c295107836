"""structlog set-up, done once by the CLI: JSON lines for jobs, readable lines on a TTY.

Library modules take their logger from :func:`get_logger`, which imports structlog only when
a call could print something: a run at the default level (warnings) whose modules log only
at info never imports it (structlog and the asyncio it imports cost about 65 ms of every
command's start-up). Until :func:`configure_logging` runs (the library used without the
CLI), every call goes to structlog as configured by whoever uses the library.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import structlog

LogFormat = Literal["auto", "json", "console"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
_threshold: int | None = None  # the configured level; None: not configured by us
_pending: tuple[int, LogFormat] | None = None  # configured before structlog was imported


def get_logger(name: str) -> Logger:
    """The module's logger: ``structlog.get_logger(name)``, imported when first needed."""
    return Logger(name)


class Logger:
    """A structlog logger made on first use; calls below the configured level cost nothing."""

    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, method: str) -> Any:
        level = _LEVELS.get(method)
        if level is not None and _threshold is not None and level < _threshold:
            return _ignore
        if self._logger is None:
            _apply_pending()
            import structlog

            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, method)


def _ignore(*_args: object, **_kwargs: object) -> None:
    return None


def configure_logging(level: int = logging.WARNING, fmt: LogFormat = "auto") -> None:
    """Send structured logs to stderr; ``auto`` picks console on a TTY, JSON otherwise."""
    global _pending, _threshold
    _threshold = level
    _pending = (level, fmt)
    if "structlog" in sys.modules:  # already loaded: configure it now
        _apply_pending()


def _apply_pending() -> None:
    global _pending
    if _pending is None:
        return
    level, fmt = _pending
    _pending = None
    import structlog

    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(sort_keys=True)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _drop_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


_SECRET_KEYS = ("password", "secret", "token", "credential", "private_key")


def _drop_secrets(_logger: object, _method: str, event: Any) -> Any:
    """Last line of defence: never render a value under a secret-looking key."""
    for key in list(event):
        if any(s in key.lower() for s in _SECRET_KEYS):
            event[key] = "***"
    return event
