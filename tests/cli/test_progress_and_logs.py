"""Progress only on a terminal and only for long work; logs are JSON for jobs, secrets masked."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import structlog

from persona_sync.cli import progress as progress_module
from persona_sync.cli.progress import Progress
from persona_sync.logs import configure_logging
from tests.sync.conftest import Workspace, workspace  # noqa: F401 - fixture


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_after_a_second_on_a_terminal(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    clock = _Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", clock)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    shown = Progress("reading employees")
    shown.count(1000)  # under a second: nothing yet
    clock.now += 1.5
    shown.count(5000)
    shown.count(6000, 10000)
    shown.done()
    assert capsys.readouterr().err == (
        "\rreading employees: 5,000\rreading employees: 6,000/10,000\n")
    quiet = Progress("reading employees", quiet=True)
    clock.now += 5
    quiet.count(10)
    quiet.done()
    assert capsys.readouterr().err == ""


def test_no_progress_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    shown = Progress("writing")
    shown.started -= 10
    shown.count(5)
    shown.done()
    assert capsys.readouterr().err == ""


def test_logs_are_json_lines_for_jobs(workspace: Workspace) -> None:  # noqa: F811
    done = subprocess.run(
        [sys.executable, "-m", "persona_sync", "-v", "plan", "-q", "--format", "json"],
        cwd=workspace.root, capture_output=True, text=True, check=False,
        env={**os.environ, "PERSONA_SYNC_LOG_FORMAT": "auto"},
    )
    assert done.returncode == 2, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines()]
    computed = next(e for e in events if e["event"] == "plan_computed")
    assert (computed["level"], computed["changes"], computed["in_scope"]) == ("info", 2, 4)
    assert "timestamp" in computed


def test_secrets_never_reach_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(logging.INFO, "json")
    structlog.get_logger("test").info("bound", user="svc", bind_password="hunter2",
                                      client_secret="s3cret", access_token="t0ken")
    line = json.loads(capsys.readouterr().err)
    assert (line["bind_password"], line["client_secret"], line["access_token"]) == ("***",) * 3
    assert line["user"] == "svc"
    configure_logging(logging.WARNING, "auto")


def test_console_logs_on_a_terminal_are_readable(capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    configure_logging(logging.INFO, "auto")
    structlog.get_logger("test").info("plan_computed", changes=3)
    text = capsys.readouterr().err
    assert "plan_computed" in text and "changes" in text and not text.lstrip().startswith("{")
    configure_logging(logging.WARNING, "auto")
