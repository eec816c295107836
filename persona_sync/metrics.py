"""Run metrics in the Prometheus text format, for the node exporter's textfile collector.

``--metrics-file PATH`` on plan, apply and sync writes one file per job, atomically
(prometheus_client's ``write_to_textfile``: a temporary file renamed over the old one), so
the collector never reads half a file. A run that fails or is held still writes its file;
``persona_sync_last_success_timestamp_seconds`` then carries the previous success over from
the old file, so an alert on its age fires when runs keep failing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from persona_sync.errors import PersonaSyncError

if TYPE_CHECKING:
    from persona_sync.apply import RunReport
    from persona_sync.plan import Plan

PREFIX = "persona_sync"
LAST_SUCCESS = f"{PREFIX}_last_success_timestamp_seconds"


@dataclass
class RunMetrics:
    """What one command learnt, filled in as it goes; written once at the end."""

    command: str
    started: float = field(default_factory=time.monotonic)
    plan: Plan | None = None
    report: RunReport | None = None
    held: bool = False
    ok: bool = False

    def write(self, path: Path) -> None:
        # imported here: every plan, apply and sync makes a RunMetrics, few write it
        from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

        registry = CollectorRegistry()

        def gauge(name: str, text: str, value: float) -> None:
            Gauge(f"{PREFIX}_{name}", text, ["command"], registry=registry).labels(
                self.command
            ).set(value)

        if self.plan is not None:
            summary = self.plan.summary
            gauge("employees_read", "Entries read from the directory.", summary["employees"])
            gauge("in_scope", "Employees in scope of the rules.", summary["in_scope"])
            gauge("changes_planned", "Changes in the plan.", len(self.plan.changes))
            gauge("foreign_values", "Target values that are not personas.", len(self.plan.foreign))
            gauge(
                "org_chart_problems",
                "Broken or cyclic manager chains.",
                summary.get("org_chart_problems", 0),
            )
            population = Gauge(
                f"{PREFIX}_population",
                "Employees per persona, as the rules assign them.",
                ["command", "scenario", "persona"],
                registry=registry,
            )
            for scenario, data in summary["scenarios"].items():
                for persona, count in data["personas"].items():
                    population.labels(self.command, scenario, persona).set(count)
        counts = self.report.counts if self.report is not None else {}
        gauge("applied", "Changes this run wrote.", counts.get("applied", 0))
        gauge(
            "conflicts",
            "Changes left alone: the value changed since the plan.",
            counts.get("conflict", 0),
        )
        gauge(
            "failed",
            "Changes the directory refused or could not confirm.",
            counts.get("failed", 0) + counts.get("unknown", 0),
        )
        gauge("held", "1 when a safety limit held the run (nothing written).", int(self.held))
        gauge("duration_seconds", "How long the command ran.", time.monotonic() - self.started)
        gauge("run_ok", "1 when the command ended without error.", int(self.ok))
        last = time.time() if self.ok else _previous_success(path)
        if last is not None:
            Gauge(LAST_SUCCESS, "When a run last ended without error.", registry=registry).set(last)
        try:
            write_to_textfile(str(path), registry)
        except OSError as exc:
            raise PersonaSyncError(
                f"cannot write the metrics file {path}: {exc.strerror}"
            ) from None


def _previous_success(path: Path) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = path.read_text(encoding="utf-8")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS:
                    return float(sample.value)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return None
