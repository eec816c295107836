"""Shared fixtures: repository paths, rule-file writers and a CLI runner."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import settings

from persona_sync.cli.main import cli

pytest_plugins = ["tests.servers.plugin", "tests.fakegraph.plugin", "tests.schedule_time"]

# Under CI every property-based test draws the same examples each run, so a landing never
# fails on a new draw; by hand they explore fresh ones (PERSONA_SYNC_FUZZ_RANDOM=1 for the
# slow suite, which pins its own settings).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RULES = REPO / "rules"


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write dedented text to tmp_path/name and return the path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def run_cli() -> Callable[..., Result]:
    """Invoke the CLI in-process; stdout and stderr kept apart."""

    def _run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return _run
