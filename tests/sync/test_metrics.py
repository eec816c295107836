"""--metrics-file: Prometheus text for the node exporter, written however the run ends."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import yaml
from click.testing import Result
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO
from tests.sync.conftest import Workspace

Run = Callable[..., Result]


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return found[(f"persona_sync_{name}", tuple(sorted(labels.items())))]


def test_sync_writes_its_figures(workspace: Workspace, run_cli: Run) -> None:
    metrics = workspace.root / "persona-sync.prom"
    assert run_cli("sync", "--metrics-file", str(metrics)).exit_code == 0
    found = samples(metrics)
    sync = {"command": "sync"}
    assert {
        name: value(found, name, **sync)
        for name in (
            "employees_read",
            "in_scope",
            "changes_planned",
            "applied",
            "conflicts",
            "failed",
            "foreign_values",
            "org_chart_problems",
            "held",
            "run_ok",
        )
    } == {
        "employees_read": 6,
        "in_scope": 4,
        "changes_planned": 2,
        "applied": 2,
        "conflicts": 0,
        "failed": 0,
        "foreign_values": 1,
        "org_chart_problems": 0,
        "held": 0,
        "run_ok": 1,
    }
    assert value(found, "duration_seconds", **sync) >= 0
    assert value(found, "population", command="sync", scenario="persona", persona="vip") == 1
    assert value(found, "last_success_timestamp_seconds") > 1_700_000_000
    assert not list(workspace.root.glob("persona-sync.prom.*"))  # written atomically


def test_a_held_run_says_so_and_keeps_the_last_success(workspace: Workspace, run_cli: Run) -> None:
    metrics = workspace.root / "persona-sync.prom"
    assert run_cli("plan", "-q", "--metrics-file", str(metrics)).exit_code == 2
    first = samples(metrics)
    assert value(first, "changes_planned", command="plan") == 2
    success = value(first, "last_success_timestamp_seconds")
    workspace.config.write_text(
        workspace.config.read_text().replace("max_change_percent: 100", "max_change_percent: 1")
    )
    assert run_cli("sync", "-q", "--metrics-file", str(metrics)).exit_code == 4
    held = samples(metrics)
    assert (value(held, "held", command="sync"), value(held, "run_ok", command="sync")) == (1, 0)
    assert value(held, "changes_planned", command="sync") == 2
    assert value(held, "applied", command="sync") == 0
    assert value(held, "last_success_timestamp_seconds") == success


def test_an_unwritable_metrics_file_is_an_error(workspace: Workspace, run_cli: Run) -> None:
    target = workspace.root / "missing-folder" / "persona-sync.prom"
    result = run_cli("plan", "-q", "--metrics-file", str(target))
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: cannot write the metrics file {target}: No such file or directory\n",
    )


def test_the_example_alerts_use_metrics_that_sync_writes(
    workspace: Workspace, run_cli: Run
) -> None:
    metrics = workspace.root / "persona-sync.prom"
    assert run_cli("sync", "-q", "--metrics-file", str(metrics)).exit_code == 0
    written = {name for name, _labels in samples(metrics)}
    alerts = REPO / "deploy" / "prometheus" / "persona-sync-alerts.yaml"
    rules = yaml.safe_load(alerts.read_text())["groups"][0]["rules"]
    assert len(rules) == 4
    for rule in rules:
        used = set(re.findall(r"persona_sync_[a-z_]+", rule["expr"]))
        assert used and used <= written, (rule["alert"], used - written)
