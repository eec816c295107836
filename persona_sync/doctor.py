"""check-connection: everything an admin should know before the first sync.

Each check is a :class:`Finding`; a failed one says what to do, a warning says what to
look at (it does not fail the command). Nothing is written.

Each backend checks its own part first (:meth:`Directory.diagnose`: the file, the LDAP
bind and schema, the Entra token and extensions); then every backend reads the employees,
counts those in scope, looks at what the target attributes hold now, and probes write
access where it can (:meth:`Directory.probe_write`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from persona_sync.directory.base import Directory, Finding
from persona_sync.employee import Employee
from persona_sync.errors import PersonaSyncError
from persona_sync.feed_join import load_feeds
from persona_sync.plan import read_attributes
from persona_sync.session import Session

#: Employees named as examples of values that are not persona ids.
EXAMPLES = 3
#: Characters of a value shown in an example; longer ones are cut.
SHOWN_CHARACTERS = 40


def diagnose(session: Session, directory: Directory) -> Iterator[Finding]:
    """Run the checks in order; stop after the first one that makes the rest meaningless."""
    targets = list(session.config.spec.targets.values())
    if not (yield from directory.diagnose(targets)):
        return
    attributes = read_attributes(session.engine, session.config)
    try:
        people = list(directory.read(attributes))
    except PersonaSyncError as exc:
        yield Finding("read", False, str(exc))
        return
    try:
        feeds = load_feeds(session.config)
    except PersonaSyncError as exc:
        yield Finding("feeds", False, str(exc))
        return
    for joined in feeds.feeds:
        yield Finding("feeds", True, f"{joined.name}: {joined.rows} rows in {joined.shown}")
    in_scope = [p for p in people if session.engine.in_scope(session.engine.facts(feeds.join(p)))]
    yield Finding(
        "employees",
        bool(people),
        f"{len(people)} read, {len(in_scope)} in scope, {len(people) - len(in_scope)} out of scope"
        if people
        else "no entries found: check base_dns and filter",
    )
    yield from _target_values(session, people, in_scope)
    if in_scope:
        yield from directory.probe_write(in_scope[0], targets)


def _target_values(
    session: Session, people: Sequence[Employee], in_scope: Sequence[Employee]
) -> Iterator[Finding]:
    """Warn about target attributes that already hold values that are not persona ids.

    Such values are the sign that the attribute is someone else's: another product (or a
    script) keeps its own data there. Every entry read counts, in scope or not.
    """
    personas = {p.casefold() for p in session.engine.rule_set.personas}
    scoped = {id(p) for p in in_scope}
    owns = session.config.spec.owns_attribute
    for attribute in dict.fromkeys(session.config.spec.targets.values()):
        found = sorted(
            (
                (p.id, value, id(p) in scoped)
                for p in people
                if (value := p.get(attribute)) and value.casefold() not in personas
            ),
            key=lambda f: (f[0].casefold(), f[0]),
        )
        if found:
            yield Finding(
                "target values",
                True,
                _foreign_detail(attribute, found, owns),
                warning=True,
            )


def _foreign_detail(attribute: str, found: Sequence[tuple[str, str, bool]], owns: bool) -> str:
    count = len(found)
    values = (
        "1 value that is not a persona id"
        if count == 1
        else f"{count} values that are not persona ids"
    )
    examples = ", ".join(f"{employee}={_shown(value)}" for employee, value, _ in found[:EXAMPLES])
    more = f" and {count - EXAMPLES} more" if count > EXAMPLES else ""
    scoped = sum(1 for *_, in_scope in found if in_scope)
    consequence = (
        "owns_attribute is true, so a sync replaces those in scope: unless they are yours to "
        "replace, choose a free attribute"
        if owns
        else "persona-sync leaves such values alone (the plan lists them as foreign values); "
        "if another product owns them, choose a free attribute"
    )
    return (
        f"{attribute} already holds {values} ({scoped} in scope): {examples}{more}. "
        "Another product may keep its data in this attribute (the Power BI gateway's SSO "
        f"user mapping, for one, can use msDS-cloudExtensionAttribute1); {consequence}"
    )


def _shown(value: str) -> str:
    """A value for one line of output: quoted, control characters escaped, long ones cut."""
    if len(value) > SHOWN_CHARACTERS:
        value = value[: SHOWN_CHARACTERS - 3] + "..."
    return repr(value)
