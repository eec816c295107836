"""``feeds:`` in the sync config: what it accepts, and every mistake located in the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_sync.config import load_config
from persona_sync.errors import ValidationFailed
from tests.conftest import DEFAULT_RULES

HEAD = f"""\
rules: {DEFAULT_RULES}
directory:
  type: file
  path: company.ldif
targets:
  persona: msDS-cloudExtensionAttribute1
"""


def config_file(tmp_path: Path, feeds: str) -> Path:
    path = tmp_path / "persona-sync.yaml"
    path.write_text(HEAD + feeds, encoding="utf-8")
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ValidationFailed) as caught:
        load_config(path, environ={})
    return [e.message for e in caught.value.errors]


def test_feeds_with_their_defaults_and_paths_relative_to_the_config(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        "feeds:\n"
        "  hr: {path: exports/hr-export.csv, key: employee_id, matches: employeeNumber}\n"
        "  badges:\n"
        "    path: /data/badges.jsonl\n"
        "    key: badge\n"
        "    matches: extension_1234_badge\n"
        "    format: jsonl\n"
        "    delimiter: ';'\n"
        "    max_shrink_percent: 25\n",
    )
    config = load_config(path, environ={})
    hr, badges = config.spec.feeds["hr"], config.spec.feeds["badges"]
    assert (hr.key, hr.matches, hr.format, hr.delimiter, hr.max_shrink_percent) == (
        "employee_id",
        "employeeNumber",
        "auto",
        None,
        10,
    )
    assert config.feed_path("hr") == tmp_path / "exports" / "hr-export.csv"
    assert config.feed_path("badges") == Path("/data/badges.jsonl")
    assert (badges.format, badges.delimiter, badges.max_shrink_percent) == ("jsonl", ";", 25)


def test_a_config_without_feeds_has_none(tmp_path: Path) -> None:
    assert load_config(config_file(tmp_path, ""), environ={}).spec.feeds == {}


def test_a_feed_path_from_the_environment(tmp_path: Path) -> None:
    path = config_file(
        tmp_path, "feeds:\n  hr: {path: hr.csv, key: employee_id, matches: employeeNumber}\n"
    )
    config = load_config(path, environ={"PERSONA_SYNC_FEEDS__HR__PATH": "/mnt/hr/today.csv"})
    assert config.feed_path("hr") == Path("/mnt/hr/today.csv")


def test_every_bad_entry_is_located(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        "feeds:\n"
        "  HR: {path: hr.csv, key: employee_id, matches: employeeNumber}\n"
        "  hr.x: {path: hr.csv, key: employee_id, matches: 'bad attribute'}\n"
        "  customsecurityattributes: {path: a.csv, key: id, matches: mail}\n"
        "  badges: {path: b.csv, key: '', matches: mail, format: xml, delimiter: ';;'}\n"
        "  sites: {key: site, matches: physicalDeliveryOfficeName, max_shrink_percent: 120}\n"
        "  cost: {path: c.csv, key: cc, matches: mail, colour: red}\n",
    )
    assert errors_of(path) == [
        f"{path}:8:3: feed name 'HR': use lower-case letters, digits and '_', starting with a "
        "letter (rules read its columns as <feed>.<column>, so no dots)",
        f"{path}:9:3: feed name 'hr.x': use lower-case letters, digits and '_', starting with "
        "a letter (rules read its columns as <feed>.<column>, so no dots)",
        f"{path}:9:51: 'bad attribute' is not a directory attribute name (letters, digits, '-', "
        "'_'; dots only between parts, as in onPremisesExtensionAttributes.extensionAttribute10)",
        f"{path}:10:3: feed name 'customsecurityattributes' is taken: rules read "
        "customsecurityattributes.<name> from the directory",
        f"{path}:11:30: key: string should have at least 1 character",
        f"{path}:11:57: format: input should be 'auto', 'csv' or 'jsonl'",
        f"{path}:11:73: delimiter: string should have at most 1 character",
        f"{path}:12:10: missing required key 'path'",
        f"{path}:12:79: max_shrink_percent: input should be less than or equal to 100",
        f"{path}:13:47: unknown key 'colour'",
    ]


def test_matches_names_a_directory_attribute_not_a_feed_column(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        "feeds:\n"
        "  hr: {path: hr.csv, key: employee_id, matches: employeeNumber}\n"
        "  badges: {path: b.csv, key: employee_id, matches: hr.employee_id}\n",
    )
    assert errors_of(path) == [
        f"{path}:9:52: matches: hr.employee_id is a column of feed hr; matches names the "
        "directory attribute that holds the key",
    ]
