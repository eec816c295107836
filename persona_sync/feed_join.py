"""Feeds joined to the employees: ``<feed>.<column>`` attributes beside the directory's.

The sync config's ``feeds:`` names each export with the directory attribute that holds its
key (``hr: {path: hr-export.csv, key: employee_id, matches: employeeNumber}``).
:func:`load_feeds` reads every configured feed once per run into a :class:`FeedSet`, whose
:meth:`FeedSet.join` gives an employee the matching row's columns as attributes
(``hr.grade``, lower case like every attribute name): one dict lookup per feed and employee,
no file read. The engine, explain and the report never know a value came from a feed; only
explain says where (:class:`FeedCell`: ``hr-export.csv:17, column grade``).

A feed-qualified name (``hr.grade``) is never asked of the directory (:func:`feed_of`).
What the rules name is checked against the feeds' columns (:meth:`FeedSet.problems`); the
plan's provenance holds each feed's checksum, row count and modification time, so a plan
made from one export is not applied after another replaced it (:func:`verify_feeds`); and a
feed much smaller than at the last run stops the run unless forced (:func:`check_shrink`).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from persona_sync.config import DIRECTORY_PREFIXES, LoadedConfig
from persona_sync.employee import Employee
from persona_sync.errors import PlanError, RuleError, SafetyLimitExceeded
from persona_sync.feeds import Feed, FeedCell, join_key, load_feed
from persona_sync.logs import get_logger
from persona_sync.rules.model import RuleSet

if TYPE_CHECKING:
    from persona_sync.snapshot import Snapshot

log = get_logger(__name__)

#: Examples a plan names of employees without a feed row, and of rows matching nobody.
EXAMPLES = 5

_QUALIFIED = re.compile(r"^([a-z][a-z0-9_]*)\.(.+)$")


def feed_of(attribute: str) -> str | None:
    """The feed a lower-case attribute name reads (``hr`` for ``hr.grade``); None for a
    directory attribute (no dot, or a dotted Entra name such as
    ``onpremisesextensionattributes.extensionattribute10``)."""
    match = _QUALIFIED.match(attribute)
    if match is None or match.group(1) in DIRECTORY_PREFIXES:
        return None
    return match.group(1)


@dataclass(frozen=True)
class JoinedFeed:
    """One loaded feed with its join: ``facts`` maps each row's join key to the attributes
    it gives (``hr.grade``: ``7``; empty fields left out, as empty attributes are)."""

    name: str
    feed: Feed
    matches: str  # the directory attribute, lower case
    shown: str  # the path as the config gives it
    max_shrink_percent: float
    facts: Mapping[str, Mapping[str, str]]
    attributes: Mapping[str, str]  # attribute (hr.grade) -> column as written (grade)

    @property
    def rows(self) -> int:
        return len(self.feed.rows)

    def digests(self) -> dict[str, bytes]:
        """Each row's join key -> a digest of what it gives the engine (line numbers left
        out: a row that only moved is no change)."""
        return {key: row_digest(facts) for key, facts in self.facts.items()}

    def provenance(self) -> dict[str, Any]:
        return {
            "path": self.shown,
            "checksum": "sha256:" + self.feed.checksum,
            "rows": self.rows,
            "modified": self.feed.modified,
        }


def row_digest(facts: Mapping[str, str]) -> bytes:
    text = "\x1f".join(f"{name}\x1e{value}" for name, value in sorted(facts.items()))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class FeedSet:
    """The run's feeds, loaded once; empty when the config has none."""

    def __init__(self, feeds: tuple[JoinedFeed, ...] = ()) -> None:
        self.feeds = feeds
        self.by_name = {f.name: f for f in feeds}
        self._tables = tuple((f.matches, f.facts) for f in feeds)

    def __bool__(self) -> bool:
        return bool(self.feeds)

    def join(self, employee: Employee) -> Employee:
        """The employee with the matching rows' columns as attributes (itself when none
        matches): the hot path, one dict lookup per feed."""
        attributes = employee.attributes
        merged: dict[str, str] | None = None
        for matches, facts in self._tables:
            value = attributes.get(matches)
            if value:
                found = facts.get(value.strip().casefold())
                if found is not None:
                    if merged is None:
                        merged = dict(attributes)
                    merged.update(found)
        return employee if merged is None else Employee(employee.id, employee.dn, merged)

    def cells(self, employee: Employee) -> dict[str, FeedCell]:
        """Attribute -> the file, line and column it comes from, for an employee as the
        directory gives them (before :meth:`join`)."""
        found: dict[str, FeedCell] = {}
        for joined in self.feeds:
            row = joined.feed.row_for(employee.attributes.get(joined.matches))
            if row is None:
                continue
            for attribute, column in joined.attributes.items():
                if row.values.get(column):
                    found[attribute] = FeedCell(joined.name, joined.shown, row.line, column)
        return found

    def provenance(self) -> dict[str, Any] | None:
        """Name -> path, checksum, rows and modification time; None without feeds (a plan
        without feeds keeps the shape it always had)."""
        return {f.name: f.provenance() for f in self.feeds} or None

    def problems(self, rule_set: RuleSet, *, unknown_feeds: bool) -> list[RuleError]:
        """The rules' feed-qualified attributes that name no column of their feed, located
        where ``from:`` names them; with ``unknown_feeds``, those of feeds the config does
        not define too (else they are only logged: the fact reads its next source)."""
        errors: list[RuleError] = []
        for attribute in rule_set.attributes:
            name = feed_of(attribute)
            if name is None:
                continue
            joined = self.by_name.get(name)
            if joined is not None:
                column = attribute[len(name) + 1 :]
                if attribute in joined.attributes:
                    continue
                listed = ", ".join(joined.feed.columns)
                hint = difflib.get_close_matches(
                    column, [c.lower() for c in joined.feed.columns], n=1, cutoff=0.7
                )
                guess = f"did you mean {name}.{hint[0]}? " if hint else ""
                text = f"feed {name} has no column {column!r} ({guess}columns: {listed})"
            elif unknown_feeds:
                known = ", ".join(self.by_name) or "none"
                text = f"unknown feed {name!r} in {attribute!r} (feeds in the config: {known})"
            else:
                log.info("rule_reads_unknown_feed", attribute=attribute, feed=name)
                continue
            locations = rule_set.attribute_usage.get(attribute) or (None,)
            errors.extend(RuleError(location, text) for location in locations)
        return errors


def load_feeds(config: LoadedConfig) -> FeedSet:
    """Read every feed the config names (a located error for the first bad one)."""
    loaded = []
    for name, spec in config.spec.feeds.items():
        feed = load_feed(name, config.feed_path(name), spec.key, spec.format, spec.delimiter)
        attributes = {sys.intern(f"{name}.{c.lower()}"): c for c in feed.columns}
        facts = {
            key: {
                attribute: value
                for attribute, column in attributes.items()
                if (value := row.values.get(column))
            }
            for key, row in feed.rows.items()
        }
        loaded.append(
            JoinedFeed(
                name,
                feed,
                spec.matches.lower(),
                str(spec.path),
                spec.max_shrink_percent,
                facts,
                attributes,
            )
        )
        log.info("feed_loaded", feed=name, rows=len(feed.rows), path=str(feed.path))
    return FeedSet(tuple(loaded))


def check_shrink(feeds: FeedSet, last: Mapping[str, Any] | None, force: bool) -> None:
    """Stop when a feed has fewer rows than at the last run by more than its limit: a
    truncated HR export must not demote thousands of people."""
    if force or not last:
        return
    for joined in feeds.feeds:
        before = (last.get(joined.name) or {}).get("rows")
        if not isinstance(before, int) or before <= 0 or joined.rows >= before:
            continue
        shrink = (before - joined.rows) * 100 / before
        if shrink > joined.max_shrink_percent:
            raise SafetyLimitExceeded(
                f"feed {joined.name} ({joined.shown}) has {_count(joined.rows, 'row')}, "
                f"{before} at the last run: {shrink:.1f}% fewer, more than its limit of "
                f"{joined.max_shrink_percent:g}% (feeds.{joined.name}.max_shrink_percent); "
                "nothing was written. Check the export; if it is complete, rerun with --force"
            )


def verify_feeds(planned: Mapping[str, Any] | None, feeds: FeedSet) -> None:
    """Refuse a plan whose feeds changed since it was made (as for rules and config)."""
    now = feeds.provenance() or {}
    for name, then in sorted((planned or {}).items()):
        current = now.get(name)
        if current is None or current["checksum"] != then.get("checksum"):
            raise PlanError(
                f"the feed {name} ({then.get('path')}) changed since this plan was made: "
                "make a new plan"
            )


def refresh_feeds(
    store: Snapshot, feeds: FeedSet, moved: set[str] | None
) -> tuple[set[str], list[str]]:
    """Bring the snapshot's copy of the feeds up to date with the files just loaded.

    ``moved``: the keys whose directory attributes a delta read changed (their join values
    are recorded again), or None after a full read (everyone's are). Returns the keys of
    the employees that a changed, added or removed row joins, to re-evaluate (none after a
    full read: everyone is), and for a delta one note per feed for the ``read:`` lines.
    Each feed's checksum, rows, modification time and join attribute go into the
    snapshot's header: the next run's baseline (:func:`check_shrink`).
    """
    stored: Mapping[str, Any] = store.get("feeds") or {}
    for name in stored:
        if name not in feeds.by_name:
            store.drop_feed(name)
    again: set[str] = set()
    notes: list[str] = []
    header: dict[str, Any] = {}
    for joined in feeds.feeds:
        name, before = joined.name, stored.get(joined.name) or {}
        relink = moved is None or before.get("matches") != joined.matches
        if relink:
            store.link_feed(name, joined.matches, join_key)
        elif moved:
            store.link_feed(name, joined.matches, join_key, moved)
        provenance = joined.provenance()
        changed = added = removed = 0
        whom: set[str] = set()
        if before.get("checksum") != provenance["checksum"]:
            fresh, old = joined.digests(), store.feed_digests(name)
            touched = {key for key, digest in fresh.items() if old.get(key) != digest}
            gone = old.keys() - fresh.keys()
            store.put_feed_rows(name, {key: fresh[key] for key in touched}, gone)
            added = len(touched - old.keys())
            changed, removed = len(touched) - added, len(gone)
            if moved is not None:
                whom = store.joined_to(name, touched | gone)
        if moved is not None:
            again |= whom
            notes.append(
                f"feed {name}: {_count(changed, 'row')} changed, {added} added, {removed} "
                f"removed; {_count(len(whom), 'employee')} joined to them"
                if changed or added or removed
                else f"feed {name}: no row changed"
            )
        header[name] = {**provenance, "matches": joined.matches}
    if header or stored:
        store.set_meta(feeds=header)
    return again, notes


def feed_summary(store: Snapshot, feeds: FeedSet) -> dict[str, Any] | None:
    """Per feed, for the plan: its rows, the employees in scope no row joins and the rows
    that join no employee, each with a few examples (computed from the whole snapshot, so
    a delta plan says what a full one would)."""
    if not feeds:
        return None
    summary: dict[str, Any] = {}
    for joined in feeds.feeds:
        without, first = store.unjoined(joined.name, EXAMPLES)
        held = store.joined_values(joined.name)
        orphans = sorted(
            (row for key, row in joined.feed.rows.items() if key not in held),
            key=lambda row: row.line,
        )
        summary[joined.name] = {
            "path": joined.shown,
            "rows": joined.rows,
            "employees_without_row": without,
            "employees_without_row_examples": first,
            "rows_without_employee": len(orphans),
            "rows_without_employee_examples": [
                {"key": row.values[joined.feed.key].strip(), "line": row.line}
                for row in orphans[:EXAMPLES]
            ],
        }
    return summary


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"
