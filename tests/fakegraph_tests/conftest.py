"""Fixtures for the fake's own tests. Without the entra extra (msal, msgraph-sdk) these
tests are not collected, except under CI=true, where the import error shows."""

from __future__ import annotations

import importlib.util
import os

from tests.fakegraph.plugin import fake_entra  # noqa: F401 - works without -p too

_MISSING = [m for m in ("msal", "msgraph", "trustme") if importlib.util.find_spec(m) is None]
collect_ignore_glob = (
    ["test_*.py"] if _MISSING and os.environ.get("CI", "").lower() != "true" else []
)
