"""The CI examples for rule repositories run as written: the GitHub workflow's `run:` steps,
the GitLab job's script and the pre-commit hooks' entries, in a rule repository made from
rules/ and the demo directory. Only the install step is left out: persona-sync under test
is on PATH instead."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DEFAULT_RULES, REPO

CI = REPO / "deploy" / "ci"
DEMO_LDIF = REPO / "persona_sync" / "demo" / "company.ldif"
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]  # GitHub's `shell: bash`
UNKNOWN_KEY = "rules/personas.yaml:7:1: unknown key 'personaz' (did you mean 'personas'?)"
INSTALL = 'python -m pip install "persona-sync==${PERSONA_SYNC_VERSION}"'


@pytest.fixture
def rule_repo(tmp_path: Path) -> Path:
    """A rule repository laid out as the workflows' header comments describe."""
    repo = tmp_path / "rules-repo"
    shutil.copytree(DEFAULT_RULES, repo / "rules")
    (repo / "ci").mkdir()
    shutil.copy(DEMO_LDIF, repo / "ci" / "snapshot.ldif")
    (repo / "ci" / "persona-sync.yaml").write_text(
        "rules: ../rules\n"
        "directory: {type: file, path: snapshot.ldif}\n"
        "targets: {persona: msDS-cloudExtensionAttribute1}\n"
    )
    return repo


def environment(extra: dict[str, Any]) -> dict[str, str]:
    """The runner's environment: the persona-sync under test first on PATH."""
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env = {"PATH": path, "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    return {**env, **{k: str(v) for k, v in extra.items()}}


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((CI / "github-actions.yml").read_text())
    return loaded


def run_github_job(repo: Path) -> tuple[list[subprocess.CompletedProcess[str]], Path]:
    """Run the job's `run:` steps in order as the runner would, stopping at the first failure."""
    flow = workflow()
    [job] = flow["jobs"].values()
    assert flow["defaults"]["run"]["shell"] == "bash"
    summary = repo.parent / "step-summary.md"
    done = []
    for step in job["steps"]:
        if "run" not in step:
            continue
        if step.get("id") == "install":
            assert step["run"] == INSTALL
            continue
        env = environment({**flow["env"], **job.get("env", {}), **step.get("env", {})})
        env["GITHUB_STEP_SUMMARY"] = str(summary)
        result = subprocess.run(
            [*BASH, "-c", step["run"]], cwd=repo, env=env, capture_output=True, text=True
        )
        done.append(result)
        if result.returncode != 0:
            break
    return done, summary


def test_workflow_runs_on_pull_requests() -> None:
    flow = workflow()
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert isinstance(triggers, dict) and "pull_request" in triggers
    assert flow["permissions"] == {"contents": "read"}


def test_github_steps_pass_and_summary_is_the_plan(rule_repo: Path) -> None:
    done, summary = run_github_job(rule_repo)
    assert [r.returncode for r in done] == [0, 0, 0, 0], [r.stderr for r in done]
    plan = (rule_repo / "plan.md").read_text()
    headline = re.match(r"## persona-sync plan\n\n\*\*(\d+) changes for \d+ employees", plan)
    assert headline and int(headline.group(1)) > 0, plan[:200]  # exit 2 taken as success
    assert summary.read_text() == plan
    assert "| Persona | Employees |" in plan


def test_github_plan_step_fails_on_an_error(rule_repo: Path) -> None:
    """Exit 2 (changes) passes; exit 1 (here: no snapshot) fails the step, no summary."""
    (rule_repo / "ci" / "snapshot.ldif").unlink()
    done, summary = run_github_job(rule_repo)
    assert [r.returncode for r in done] == [0, 0, 0, 1]
    missing = rule_repo / "ci" / "snapshot.ldif"
    assert done[-1].stderr.splitlines()[-1] == f"error: {missing}: no such directory file"
    assert not summary.exists()


def test_github_validate_step_fails_on_a_broken_rule(rule_repo: Path) -> None:
    personas = rule_repo / "rules" / "personas.yaml"
    personas.write_text(personas.read_text().replace("personas:", "personaz:", 1))
    done, _ = run_github_job(rule_repo)
    assert [r.returncode for r in done] == [1]
    lines = (done[0].stdout + done[0].stderr).splitlines()
    assert UNKNOWN_KEY in lines


def test_gitlab_script_passes(rule_repo: Path) -> None:
    job = yaml.safe_load((CI / "gitlab-ci.yml").read_text())["persona-sync-rules"]
    assert job["before_script"] == [INSTALL]
    assert {"if": '$CI_PIPELINE_SOURCE == "merge_request_event"'} in job["rules"]
    env = environment(job["variables"])
    # The runner runs the script lines in one shell that stops at the first failure.
    result = subprocess.run(
        [*BASH, "-c", "\n".join(job["script"])],
        cwd=rule_repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    plan = (rule_repo / "plan.md").read_text()
    assert plan.startswith("## persona-sync plan\n")
    assert result.stdout.endswith(plan)  # `cat plan.md`: the plan is in the job log
    assert job["artifacts"]["paths"] == ["plan.md"]


def hooks() -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    return loaded


def test_pre_commit_hooks_pass(rule_repo: Path) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    found = hooks()
    assert [h["id"] for h in found] == [
        "persona-sync-validate",
        "persona-sync-lint",
        "persona-sync-test",
    ]
    for hook in found:
        # language: python installs this repository; its entry is our console script.
        assert hook["language"] == "python"
        assert hook["pass_filenames"] is False  # the folder is checked, not one file
        entry = shlex.split(hook["entry"])
        assert entry[0] in scripts
        result = subprocess.run(
            [*entry, *hook.get("args", [])],
            cwd=rule_repo,
            env=environment({}),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, f"{hook['id']}: {result.stdout}{result.stderr}"


def test_pre_commit_validate_hook_fails_on_a_broken_rule(rule_repo: Path) -> None:
    personas = rule_repo / "rules" / "personas.yaml"
    personas.write_text(personas.read_text().replace("personas:", "personaz:", 1))
    for hook in hooks():
        result = subprocess.run(
            shlex.split(hook["entry"]),
            cwd=rule_repo,
            env=environment({}),
            capture_output=True,
            text=True,
        )
        assert result.returncode == 1, hook["id"]
        assert UNKNOWN_KEY in (result.stdout + result.stderr).splitlines(), hook["id"]
