"""`.ci/install-system-deps` leaves the machine's own directory services alone.

It used to stop, disable and mask the system's slapd and Samba and kill every slapd or
samba process outside the tests' folders: on a developer's machine that hosts a
directory, running the tests took it down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / ".ci" / "install-system-deps"


@pytest.mark.skipif(os.geteuid() != 0, reason="the script installs packages: root only")
def test_a_running_slapd_and_samba_of_the_machine_survive(tmp_path: Path) -> None:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}\n", "slapd", "samba"],
        capture_output=True,
        text=True,
        check=False,
    )
    # ./run-tests runs the script before pytest, so this finds every package installed
    assert done.stdout.split("\n")[:2] == ["install ok installed"] * 2, done.stderr
    # Stand-ins for the machine's own servers: processes named slapd and samba whose
    # working directory is not one of the tests' folders.
    daemons = []
    for name in ("slapd", "samba"):
        program = tmp_path / name
        shutil.copy(sys.executable, program)
        daemons.append(
            subprocess.Popen(
                [str(program), "-c", "import time; time.sleep(120)"],
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
            )
        )
    try:
        result = subprocess.run(
            ["bash", str(SCRIPT)], capture_output=True, text=True, check=False, timeout=120
        )
        assert (result.returncode, result.stderr) == (0, "")
        assert result.stdout.splitlines()[-1] == "install-system-deps: done"
        assert [d.poll() for d in daemons] == [None, None]
    finally:
        for daemon in daemons:
            daemon.kill()
            daemon.wait()
