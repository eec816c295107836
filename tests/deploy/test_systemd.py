"""deploy/systemd stays true: real options, hardening that systemd itself accepts and rates."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from persona_sync.config import EntraDirectoryConfig, LdapDirectoryConfig, load_config
from tests.conftest import DEFAULT_RULES, REPO
from tests.deploy.commands import accepts

SYSTEMD = REPO / "deploy" / "systemd"
SERVICE = SYSTEMD / "persona-sync.service"
TIMER = SYSTEMD / "persona-sync.timer"
RESIDENT = SYSTEMD / "persona-sync.service.d" / "resident.conf"
NO_ANALYZE = (
    "systemd-analyze is not installed: it is a host tool of systemd machines (package "
    "systemd), so CI images may lack it; the unit's options are still checked by the "
    "other tests here"
)


Unit = dict[str, dict[str, list[str]]]


def read_unit(path: Path) -> Unit:
    """Section -> key -> every value, in order (Environment= and others may repeat)."""
    sections: Unit = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sign, value = line.partition("=")
        assert sign, f"{path.name}: not a key=value line: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: Unit, section: str, key: str) -> str:
    [value] = unit[section][key]
    return value


def environment(unit: Unit) -> dict[str, str]:
    return dict(e.split("=", 1) for e in unit["Service"]["Environment"])


def test_systemd_units() -> None:
    service = read_unit(SERVICE)
    exec_start = shlex.split(one(service, "Service", "ExecStart"))
    assert exec_start[0].endswith("/persona-sync")
    accepts(exec_start[1:])
    assert one(service, "Service", "SuccessExitStatus") == "3"  # done with conflicts
    assert one(read_unit(TIMER), "Timer", "OnCalendar") == "*:0/15"


def test_resident_drop_in() -> None:
    """The drop-in makes the service one resident process: a cycle every 5 minutes, the
    exit code of a stop between or during cycles not a failure, restarted after one."""
    service = read_unit(RESIDENT)["Service"]
    assert service["ExecStart"][0] == ""  # the service's own command is replaced
    [command] = service["ExecStart"][1:]
    exec_start = shlex.split(command)
    assert exec_start[0] == shlex.split(one(read_unit(SERVICE), "Service", "ExecStart"))[0]
    accepts(exec_start[1:])
    assert exec_start[exec_start.index("--every") + 1] == "5m"
    assert "--delta" in exec_start
    assert (service["Type"], service["Restart"], service["SuccessExitStatus"]) == (
        ["exec"],
        ["on-failure"],
        ["143"],
    )


def test_hardening() -> None:
    service = read_unit(SERVICE)["Service"]
    for key, value in {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "StateDirectory": "persona-sync",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(key) == [value], key
    assert "ReadWritePaths" not in service  # the state directory is writable by itself


def test_state_and_secret_reach_the_config(tmp_path: Path) -> None:
    """The state folder is the StateDirectory; the password file is the loaded credential."""
    unit = read_unit(SERVICE)
    env = environment(unit)
    assert env["PERSONA_SYNC_STATE_DIR"] == "%S/" + one(unit, "Service", "StateDirectory")
    name, _, source = one(unit, "Service", "LoadCredential").partition(":")
    assert source.startswith("/etc/persona-sync/")
    assert env["PERSONA_SYNC_DIRECTORY__BIND__PASSWORD_FILE"] == f"%d/{name}"
    # systemd expands %S and %d before the process starts; load the config as it would see it.
    expanded = {
        k: v.replace("%S", "/var/lib").replace("%d", "/run/credentials/persona-sync.service")
        for k, v in env.items()
    }
    config = tmp_path / "persona-sync.yaml"
    config.write_text(
        f"rules: {DEFAULT_RULES}\n"
        "directory: {type: ldap, preset: ad, urls: [ldaps://dc1.example.com], "
        "bind: {user: svc@example.com}, base_dns: ['DC=example,DC=com']}\n"
        "targets: {persona: msDS-cloudExtensionAttribute1}\n"
    )
    loaded = load_config(config, expanded)
    assert loaded.state_dir == Path("/var/lib/persona-sync")
    assert isinstance(loaded.spec.directory, LdapDirectoryConfig)
    assert loaded.spec.directory.bind.password_file == Path(
        "/run/credentials/persona-sync.service/bind-password"
    )


def test_stop_timeout_covers_the_backend_timeouts() -> None:
    timeouts = [
        LdapDirectoryConfig.model_fields["timeout"].default,
        EntraDirectoryConfig.model_fields["timeout"].default,
    ]
    stop = int(one(read_unit(SERVICE), "Service", "TimeoutStopSec"))
    assert stop >= max(timeouts) + 30


def _root(tmp_path: Path, resident: bool) -> Path:
    """A root for systemd-analyze: the units installed, the command present, systemd's own units."""
    root = tmp_path / "root"
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for path in (SERVICE, TIMER):
        shutil.copy(path, units / path.name)
    if resident:
        (units / RESIDENT.parent.name).mkdir()
        shutil.copy(RESIDENT, units / RESIDENT.parent.name / RESIDENT.name)
    program = shlex.split(one(read_unit(SERVICE), "Service", "ExecStart"))[0]
    installed = root / program.lstrip("/")
    installed.parent.mkdir(parents=True)
    # systemd resolves paths inside --root, so copies rather than symlinks out of it.
    shutil.copy(shutil.which("persona-sync") or REPO / ".venv/bin/persona-sync", installed)
    system = next(
        p for p in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")) if p.is_dir()
    )
    shutil.copytree(system, root / "usr/lib/systemd/system", symlinks=True)
    return root


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=NO_ANALYZE)
@pytest.mark.parametrize("resident", [False, True], ids=["timer", "resident"])
def test_systemd_analyze_verify(tmp_path: Path, resident: bool) -> None:
    """No error and no warning: systemd ignores unknown keys and bad values with a warning."""
    root = _root(tmp_path, resident)
    done = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", SERVICE.name, TIMER.name],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason=NO_ANALYZE)
@pytest.mark.parametrize("resident", [False, True], ids=["timer", "resident"])
def test_systemd_analyze_security(tmp_path: Path, resident: bool) -> None:
    """systemd's own exposure score for the unit stays at "OK" or better (at most 2.0)."""
    root = _root(tmp_path, resident)
    done = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=true",
            f"--root={root}",
            "--threshold=20",
            SERVICE.name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Overall exposure level for persona-sync.service: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
