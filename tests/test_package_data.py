"""Every data file in the package ships: pyproject's package-data globs cover them all.

A template, table or rule file missing from those globs works in the editable install the
tests use and fails only after `pip install .` (FileNotFoundError from a report or the
demo), so the globs are checked against the tree here. The C accelerator's source is not
package data but an extension's (setup.py), and what it compiles to is built, not shipped.
"""

from __future__ import annotations

import glob
import os
import tomllib

from tests.conftest import REPO

PACKAGE = REPO / "persona_sync"


def test_package_data_globs_cover_every_non_python_file() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["persona_sync"]
    shipped = {
        os.path.relpath(path, PACKAGE)
        for pattern in patterns
        for path in glob.glob(str(PACKAGE / pattern))
    }
    present = set()
    for folder, dirs, files in os.walk(PACKAGE, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if not name.endswith((".py", ".pyc", ".so")):
                present.add(os.path.relpath(os.path.join(folder, name), PACKAGE))
    extensions = {"directory/_ber.c", "_dn.c"}
    assert present - shipped == extensions
    setup = (REPO / "setup.py").read_text(encoding="utf-8")
    assert all(f'"persona_sync/{source}"' in setup for source in extensions)
    assert {"demo/company.yaml", "report/templates/base.html", "py.typed"} <= shipped
