"""The project's one error root and the errors users see.

Every error a user can cause derives from :class:`PersonaSyncError`; the CLI prints its
message on one line and exits 1. Errors about a place in a file carry a :class:`Location`
so the message reads ``path:line:col: message`` like a compiler's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Location:
    """A place in a text file; line and column count from 1."""

    path: str
    line: int
    column: int

    def __str__(self) -> str:
        if self.line == 0:  # not in a file, e.g. an environment variable
            return self.path
        return f"{self.path}:{self.line}:{self.column}"


class PersonaSyncError(Exception):
    """Root of every error persona-sync raises on purpose."""

    @property
    def message(self) -> str:
        return str(self)


class LocatedError(PersonaSyncError):
    """An error at a place in a file: ``path:line:col: message``.

    Control characters in the text (a key or value quoted from a hostile file) are shown
    escaped, so the message stays on one line.
    """

    def __init__(self, location: Location | None, text: str) -> None:
        self.location = location
        self.text = one_line(text)
        super().__init__(one_line(f"{location}: {text}") if location else self.text)


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped (``\\n``, ``\\x00``)."""
    return _UNPRINTABLE.sub(lambda m: repr(m.group())[1:-1], text)


class RuleError(LocatedError):
    """A mistake in a rule file, a case file or the sync configuration."""


class FileFormatError(LocatedError):
    """A directory file (LDIF or CSV) that cannot be read: says which line."""


class ValidationFailed(PersonaSyncError):
    """Several located errors found in one pass; all are reported at once."""

    def __init__(self, errors: Sequence[LocatedError]) -> None:
        self.errors = sorted(errors, key=_sort_key)
        super().__init__("\n".join(e.message for e in self.errors))

    @classmethod
    def raise_if_any(cls, errors: Iterable[LocatedError]) -> None:
        found = list(errors)
        if found:
            raise cls(found)


def _sort_key(error: LocatedError) -> tuple[str, int, int, str]:
    loc = error.location
    if loc is None:
        return ("", 0, 0, error.text)
    return (loc.path, loc.line, loc.column, error.text)


class ConfigError(PersonaSyncError):
    """The sync configuration or a command-line option is wrong."""


class DirectoryError(PersonaSyncError):
    """A directory backend failed: unreachable, refused, or unreadable."""


class PlanError(PersonaSyncError):
    """A plan file cannot be applied: tampered, stale, or for another directory."""


class SafetyLimitExceeded(PersonaSyncError):
    """A run would change more employees than the configured limit allows."""


class LockHeld(PersonaSyncError):
    """Another run holds the state folder's lock."""
