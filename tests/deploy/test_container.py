"""The Containerfile's own lines build persona-sync and run it, without a container runtime.

The build and runtime stages run in folders (tests/deploy/containerfile.py): the build
stage's `pip wheel` line makes the wheels, the runtime stage's `pip install` line installs
them into a fresh virtual environment, and ENTRYPOINT/CMD run with the image's ENV. The
dependencies come from a wheelhouse of the distributions installed here
(tests/deploy/wheelhouse.py), so pip asks no index for them.

Building the image takes 20-40 s (pip installs and compiles every dependency), so the
tests that need it are marked slow; the Entra variant takes 1.5-3 minutes.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_RULES, REPO
from tests.deploy.containerfile import Build, StageRun, parse
from tests.deploy.wheelhouse import wheelhouse

CONTAINERFILE = REPO / "deploy" / "container" / "Containerfile"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
DEMO_LDIF = REPO / "persona_sync" / "demo" / "company.ldif"


def build_image(folder: Path, build_args: dict[str, str]) -> StageRun:
    """Run the build stage, then the runtime stage; return the runtime stage's result."""
    extras = {e for e in build_args.get("EXTRAS", "").split(",") if e}
    wheels = wheelhouse(REPO / "pyproject.toml", extras, folder / "wheelhouse")
    shim = folder / "shim"  # the base image's `python`: this interpreter, outside any venv
    shim.mkdir()
    (shim / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    base_env = {"PATH": f"{shim}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    offline = {
        "HOME": str(folder / "home"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    build = Build(CONTAINERFILE, REPO, folder / "root", base_env, offline)
    build.run_stage("build", build_args)
    return build.run_stage("runtime", build_args)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> StageRun:
    return build_image(tmp_path_factory.mktemp("image"), {})


@pytest.fixture
def state(image: StageRun) -> Path:
    """The image's state volume, empty for each test."""
    folder = image.path(image.stage.last("VOLUME").exec_form()[0])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def entry(image: StageRun, *args: str) -> subprocess.CompletedProcess[str]:
    """ENTRYPOINT + args, as `podman run IMAGE args` would: image ENV, image WORKDIR."""
    command = image.stage.last("ENTRYPOINT").exec_form()
    program = shutil.which(command[0], path=image.env["PATH"])
    assert program is not None, f"{command[0]} not on the image's PATH {image.env['PATH']}"
    assert Path(program).is_relative_to(image.root), f"{program} is not the image's"
    return subprocess.run(
        [program, *command[1:], *args],
        cwd=image.path(image.workdir),
        env=image.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_stages_user_and_volume() -> None:
    """Two stages on one base; a fixed non-root user made in the image; state on a volume."""
    _, stages = parse(CONTAINERFILE.read_text())
    assert [s.name for s in stages] == ["build", "runtime"]
    assert stages[0].base == stages[1].base
    runtime = stages[1]
    assert runtime.last("USER").text == "10001:10001"
    setup = next(i.text for i in runtime.all("RUN") if "useradd" in i.text)
    assert "--uid 10001 --gid 10001" in setup
    assert "install -d -o 10001 -g 10001 -m 0750 /var/lib/persona-sync" in setup
    env = dict(item.split("=", 1) for line in runtime.all("ENV") for item in shlex.split(line.text))
    assert runtime.last("VOLUME").exec_form() == [env["PERSONA_SYNC_STATE_DIR"]]
    assert env["PERSONA_SYNC_CONFIG"] == "/etc/persona-sync/persona-sync.yaml"
    assert not runtime.all("COPY"), "the runtime stage takes only the wheels (a RUN mount)"
    for stage in stages:
        assert any(a.text.startswith("EXTRAS=") for a in stage.all("ARG")), stage.name


@pytest.mark.slow
def test_version(image: StageRun) -> None:
    done = entry(image, "--version")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"persona-sync, version {VERSION}\n",
        "",
    )
    # Only the virtual environment stays: no wheels, no pip in it.
    assert not image.path("/wheels").exists()
    assert not image.path("/opt/persona-sync/bin/pip").exists()
    assert [i.text for i in image.user_setup if "useradd" in i.text], "user set-up not seen"


@pytest.mark.slow
def test_demo(image: StageRun, state: Path) -> None:
    """The demo runs from the installed wheel alone (bundled directory and default rules)."""
    done = entry(image, "demo", "--dir", "demo")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("plan: "), done.stdout
    assert (state / "demo" / "company.ldif").is_file()
    runs = entry(image, "runs", "--config", "demo/persona-sync.yaml", "--format", "json")
    assert runs.returncode == 0, runs.stderr
    [run] = json.loads(runs.stdout)
    assert (run["status"], run["failed"]) == ("complete", 0)
    assert run["applied"] > 0


@pytest.mark.slow
def test_default_command_with_mounted_config(image: StageRun, state: Path) -> None:
    """CMD (sync) reads the mounted config and rules; the journal goes to the state volume."""
    config_dir = image.path("/etc/persona-sync")
    shutil.copytree(DEFAULT_RULES, config_dir / "rules", dirs_exist_ok=True)
    data = image.path("/data/company.ldif")
    data.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO_LDIF, data)
    (config_dir / "persona-sync.yaml").write_text(
        "rules: rules\n"
        f"directory: {{type: file, path: {data}}}\n"
        "targets: {persona: msDS-cloudExtensionAttribute1}\n"
        "safety: {max_changes: 100000, max_change_percent: 100}\n"
    )
    done = entry(image, *image.stage.last("CMD").exec_form())
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # --quiet; logs are JSON lines on stderr
    assert [p.suffix for p in (state / "journal").iterdir()] == [".jsonl"]
    assert not (config_dir / ".persona-sync").exists()
    runs = entry(image, "runs", "--format", "json")
    [run] = json.loads(runs.stdout)
    assert (run["status"], run["failed"], run["conflicts"]) == ("complete", 0, 0)


@pytest.mark.slow
def test_entra_extra(tmp_path: Path) -> None:
    """--build-arg EXTRAS=entra installs the Graph SDK and msal (about 0.5 GB more)."""
    image = build_image(tmp_path, {"EXTRAS": "entra"})
    python = image.path("/opt/persona-sync/bin/python")
    probe = "import msal, msgraph; from importlib.metadata import version; print(version('msal'))"
    done = subprocess.run(
        [str(python), "-c", probe], env=image.env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert entry(image, "--version").stdout == f"persona-sync, version {VERSION}\n"
