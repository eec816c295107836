"""Sessions: a resident schedule's cycles share one parsed config and compiled rule set
while the files it was made from (and the PERSONA_SYNC_* environment) are the same, and
get a new one, or the loader's error, after any edit."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from persona_sync.errors import ValidationFailed
from persona_sync.session import Sessions
from tests.conftest import DEFAULT_RULES

CONFIG = """\
rules: rules
directory:
  type: file
  path: company.ldif
targets:
  persona: msDS-cloudExtensionAttribute1
"""


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(DEFAULT_RULES, tmp_path / "rules", ignore=shutil.ignore_patterns("cases"))
    (tmp_path / "persona-sync.yaml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "company.ldif").write_text("", encoding="utf-8")
    for name in [n for n in os.environ if n.startswith("PERSONA_SYNC_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_unchanged_files_give_the_same_session(folder: Path) -> None:
    sessions = Sessions(folder / "persona-sync.yaml")
    first = sessions.open()
    assert sessions.open() is first
    assert sessions.open() is first
    # The default config path (PERSONA_SYNC_CONFIG unset): the same.
    default = Sessions(None)
    assert default.open() is default.open()


@pytest.mark.parametrize("edit", ["rule", "new rule file", "config", "environment"])
def test_an_edit_gives_a_new_session_with_it(
    edit: str, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = Sessions(folder / "persona-sync.yaml")
    first = sessions.open()
    personas = folder / "rules" / "personas.yaml"
    if edit == "rule":
        personas.write_text(personas.read_text(encoding="utf-8") + "\n# edited\n")
    elif edit == "new rule file":
        (folder / "rules" / "more.yaml").write_text(
            "facts:\n  nickname: {from: displayName}\n", encoding="utf-8"
        )
    elif edit == "config":
        config = folder / "persona-sync.yaml"
        config.write_text(CONFIG + "owns_attribute: true\n", encoding="utf-8")
    else:
        monkeypatch.setenv("PERSONA_SYNC_OWNS_ATTRIBUTE", "true")
    second = sessions.open()
    assert second is not first
    assert sessions.open() is second
    if edit in ("rule", "new rule file"):
        assert second.rules_checksum != first.rules_checksum
    else:
        assert (first.config.spec.owns_attribute, second.config.spec.owns_attribute) == (
            False,
            True,
        )


def test_a_broken_edit_is_said_each_time_until_it_is_mended(folder: Path) -> None:
    sessions = Sessions(folder / "persona-sync.yaml")
    first = sessions.open()
    broken = folder / "rules" / "zz.yaml"
    broken.write_text("personas: [\n", encoding="utf-8")
    for _ in range(2):
        with pytest.raises(ValidationFailed) as failed:
            sessions.open()
        assert str(failed.value) == (
            f"{broken}:2:1: invalid YAML: expected the node content, but found "
            "'<stream end>' (while parsing a flow node)"
        )
    broken.unlink()
    assert sessions.open() is first  # the files are again what it was made from
