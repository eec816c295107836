"""Safety limits: a run that would change too much stops before writing, unless forced.

Counted from the plan's changes themselves (never from its summary's numbers): the total
of employees changed, and for each persona with a limit in ``safety.persona_limits`` the
employees the run would move into it. A VIP persona means P1 support: a rule slip that
makes 3,000 people VIP swamps the VIP desk, even when the total stays under its limit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from persona_sync.config import SafetyConfig
from persona_sync.dn import normalize_dn
from persona_sync.errors import SafetyLimitExceeded
from persona_sync.plan import Plan, PlannedChange

ADVICE = (
    "nothing was written. Review the plan, then rerun with --force, or raise the limit under "
    "safety: in the config"
)


def change_limit(safety: SafetyConfig, in_scope: int) -> int:
    """Most employees one run may change: the smaller of the count and percentage limits."""
    by_share = math.floor(in_scope * safety.max_change_percent / 100)
    return min(safety.max_changes, by_share)


def employees_changed(changes: Sequence[PlannedChange]) -> int:
    return len({normalize_dn(c.dn) for c in changes})


def persona_gains(changes: Sequence[PlannedChange]) -> Counter[str]:
    """Employees each persona gains: changes whose new value is that persona."""
    gains: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    for change in changes:
        if change.new is None:
            continue
        key = (normalize_dn(change.dn), change.new.casefold())
        if key not in seen:
            seen.add(key)
            gains[change.new.casefold()] += 1
    return gains


def check_safety(plan: Plan, safety: SafetyConfig, force: bool) -> None:
    """Raise SafetyLimitExceeded when the plan moves more than a limit allows."""
    if force:
        return
    in_scope = plan.in_scope
    employees = employees_changed(plan.changes)
    limit = change_limit(safety, in_scope)
    if employees > limit:
        raise SafetyLimitExceeded(
            f"this run would change {employees} employees, more than the safety limit of "
            f"{limit} (max_changes {safety.max_changes}, max_change_percent "
            f"{safety.max_change_percent:g}% of {in_scope} in scope); {ADVICE}"
        )
    gains = persona_gains(plan.changes)
    for persona, bound in sorted(safety.persona_limits.items()):
        gained = gains.get(persona.casefold(), 0)
        allowed = bound.limit(in_scope)
        if gained > allowed:
            raise SafetyLimitExceeded(
                f"this run would move {gained} employees into persona {persona}, more than its "
                f"safety limit of {allowed} ({bound.describe(in_scope)} under "
                f"safety.persona_limits.{persona}); {ADVICE}"
            )
