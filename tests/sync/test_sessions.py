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


@pytest.mark.parametrize(
    "edit", ["rule", "new rule file", "rule file deleted", "config", "environment"]
)
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
    elif edit == "rule file deleted":
        (folder / "rules" / "scope.yaml").unlink()
    elif edit == "config":
        config = folder / "persona-sync.yaml"
        config.write_text(CONFIG + "owns_attribute: true\n", encoding="utf-8")
    else:
        monkeypatch.setenv("PERSONA_SYNC_OWNS_ATTRIBUTE", "true")
    second = sessions.open()
    assert second is not first
    assert sessions.open() is second
    if edit.startswith("rule") or edit == "new rule file":
        assert second.rules_checksum != first.rules_checksum
    else:
        assert (first.config.spec.owns_attribute, second.config.spec.owns_attribute) == (
            False,
            True,
        )


def test_a_new_session_loads_the_config_once(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from persona_sync import session

    loads: list[Path | None] = []
    real = session.load_config

    def counted(path: Path | None = None) -> object:
        loads.append(path)
        return real(path)

    monkeypatch.setattr(session, "load_config", counted)
    sessions = Sessions(folder / "persona-sync.yaml")
    first = sessions.open()
    assert sessions.open() is first
    config = folder / "persona-sync.yaml"
    config.write_text(CONFIG + "owns_attribute: true\n", encoding="utf-8")
    assert sessions.open() is not first
    assert loads == [config, config]  # the first session's, the edit's: once each


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
    mended = sessions.open()
    assert mended is not first
    assert mended.rules_checksum == first.rules_checksum
    assert sessions.open() is mended


def test_a_config_symlink_pointed_elsewhere_is_another_config(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same config bytes, other rules: the rules path is relative to where the config is."""
    for release in ("v1", "v2"):
        shutil.copytree(folder / "rules", folder / release / "rules")
        (folder / release / "persona-sync.yaml").write_text(CONFIG, encoding="utf-8")
        (folder / release / "company.ldif").write_text("", encoding="utf-8")
    v2_rules = folder / "v2" / "rules" / "personas.yaml"
    v2_rules.write_text(v2_rules.read_text(encoding="utf-8") + "\n# v2\n", encoding="utf-8")
    link = folder / "current.yaml"
    link.symlink_to(folder / "v1" / "persona-sync.yaml")
    sessions = Sessions(link)
    first = sessions.open()
    link.unlink()
    link.symlink_to(folder / "v2" / "persona-sync.yaml")
    second = sessions.open()
    assert second is not first
    assert second.config.rules_path == folder / "v2" / "rules"
    assert second.rules_checksum != first.rules_checksum


def test_the_default_config_follows_persona_sync_config(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = folder / "other.yaml"
    other.write_text(CONFIG + "owns_attribute: true\n", encoding="utf-8")
    sessions = Sessions(None)
    first = sessions.open()
    monkeypatch.setenv("PERSONA_SYNC_CONFIG", str(other))
    second = sessions.open()
    assert (first.config.path, second.config.path) == (folder / "persona-sync.yaml", other)


def test_a_session_made_while_a_file_was_unreadable_is_not_kept(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule file unreadable for the comparison but read by the load (a deploy replacing
    it): the next cycle loads again rather than trust an empty comparison."""
    sessions = Sessions(folder / "persona-sync.yaml")
    real = Sessions._sources
    unreadable = iter([True, True])  # still unreadable at the next cycle's comparison
    monkeypatch.setattr(
        Sessions,
        "_sources",
        lambda self, rules, *read: b"" if next(unreadable, False) else real(self, rules, *read),
    )
    first = sessions.open()
    second = sessions.open()  # still unreadable: loaded again, not kept either
    assert second is not first
    third = sessions.open()
    assert third is not second
    assert sessions.open() is third  # readable again: kept
