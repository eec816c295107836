"""An employee as every directory backend hands it to the engine."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Employee:
    """One directory entry.

    ``id`` is what people call the account (sAMAccountName, uid, userPrincipalName);
    ``dn`` is where it lives (a DN, or the object id on Entra ID). ``attributes`` holds
    only what the facts and the plan need, keyed by lower-case attribute name, first
    value of multi-valued attributes.
    """

    id: str
    dn: str
    attributes: Mapping[str, str]

    def get(self, attribute: str) -> str | None:
        return self.attributes.get(attribute.lower())
