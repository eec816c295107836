"""The sync configuration (``persona-sync.yaml``): rules, directory, targets, safety, state.

Validated by pydantic with ``path:line:col`` errors like the rule files. Any setting can be
overridden from the environment as ``PERSONA_SYNC_<SECTION>__<KEY>`` (for containers and
secrets), e.g. ``PERSONA_SYNC_SAFETY__MAX_CHANGES=2000`` or
``PERSONA_SYNC_DIRECTORY__PATH=/data/export.ldif``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from persona_sync.errors import ConfigError, Location, RuleError, ValidationFailed
from persona_sync.located import model_keys, validate_document
from persona_sync.rules.spec import StrictModel
from persona_sync.yamlsource import LocatedDocument, load_yaml

DEFAULT_CONFIG = Path("persona-sync.yaml")
ATTRIBUTE_NAME = r"^[A-Za-z][A-Za-z0-9_-]*(\.[A-Za-z][A-Za-z0-9_]*){0,2}$"


def _attribute_name(value: str) -> str:
    if not re.match(ATTRIBUTE_NAME, value):
        raise ValueError(
            f"{value!r} is not a directory attribute name (letters, digits, '-', "
            "'_'; dots only between parts, as in onPremisesExtensionAttributes."
            "extensionAttribute10)"
        )
    return value


AttributeName = Annotated[
    str,
    AfterValidator(_attribute_name),
    Field(
        description="A directory attribute name: msDS-cloudExtensionAttribute1 (AD), "
        "extension_<appId>_<name>, onPremisesExtensionAttributes.extensionAttribute10 or "
        "customSecurityAttributes.<set>.<name> (Entra ID).",
    ),
]
ENV_PREFIX = "PERSONA_SYNC_"


def _variable_name(value: str) -> str:
    # The value is not repeated: someone may have pasted the secret itself here.
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError(
            "expected the NAME of an environment variable (letters, digits, '_'), not its value; "
            "never put a secret in the config"
        )
    return value


VariableName = Annotated[str, AfterValidator(_variable_name)]


class FileDirectoryConfig(StrictModel):
    """A directory exported to a file: LDIF (ldifde, ldapsearch) or CSV (csvde, Export-Csv)."""

    type: Literal["file"]
    path: Path = Field(description="The LDIF or CSV file; written back in place, atomically.")
    format: Literal["auto", "ldif", "csv"] = Field(
        "auto", description="auto: by extension (.ldif/.ldf -> LDIF, .csv -> CSV)."
    )
    id_attributes: list[str] = Field(
        default_factory=lambda: ["sAMAccountName", "uid", "userPrincipalName", "mail", "cn"],
        description="Attributes that name an employee, first present wins.",
    )
    object_classes: list[str] = Field(
        default_factory=lambda: ["person", "organizationalPerson", "inetOrgPerson", "user"],
        min_length=1,
        description="An entry is an employee when one of its objectClass values is in this "
        "list and none is in exclude_object_classes (case-insensitive), as the LDAP presets "
        "pick people; other entries (the base, OUs, groups) are neither read nor written. "
        "An LDIF file without any objectClass line, or a CSV file without an objectClass "
        "column, has only employees; in a CSV field, values are separated by ';' (csvde).",
    )
    exclude_object_classes: list[str] = Field(
        default_factory=lambda: ["computer", "contact"],
        description="objectClass values that make an entry not an employee even if it has "
        "one of object_classes: AD computer objects are also class user, AD contacts "
        "are also class person.",
    )


class BindConfig(StrictModel):
    """How persona-sync authenticates; the password never sits in this file."""

    method: Literal["simple", "ntlm", "anonymous"] = Field(
        "simple",
        description="simple: a DN or user@domain over TLS; ntlm: DOMAIN\\user (Active "
        "Directory); anonymous: read-only tests.",
    )
    user: str | None = Field(None, description="Bind DN, user@domain or DOMAIN\\user.")
    password_env: VariableName = Field(
        "PERSONA_SYNC_BIND_PASSWORD", description="Environment variable holding the password."
    )
    password_file: Path | None = Field(
        None,
        description="File holding the password (e.g. a mounted secret); wins over the variable.",
    )


class LdapDirectoryConfig(StrictModel):
    """Active Directory or OpenLDAP over LDAP, with ldap3."""

    type: Literal["ldap"]
    preset: Literal["ad", "openldap"] = Field(
        description="Fills the defaults below: ad (sAMAccountName, objectGUID, user objects) "
        "or openldap (uid, entryUUID, inetOrgPerson)."
    )
    urls: list[str] = Field(
        min_length=1,
        description="ldaps://host[:port] or ldap://host[:port]; several for failover, tried in "
        "order.",
    )
    start_tls: bool = Field(False, description="Upgrade ldap:// connections with StartTLS.")
    ca_file: Path | None = Field(
        None, description="CA bundle (PEM) that signed the server's certificate."
    )
    verify_tls: bool = Field(True, description="Check the server certificate (keep on).")
    allow_plaintext: bool = Field(
        False,
        description="Allow binds over ldap:// without StartTLS: the password crosses the network "
        "in clear. Only for test labs.",
    )
    bind: BindConfig = BindConfig()
    base_dns: list[str] = Field(
        min_length=1, description="Where employees live; searched in order."
    )
    scope: Literal["subtree", "one"] = "subtree"
    filter: str | None = Field(
        None, description="Extra LDAP filter ANDed with the preset's, e.g. (department=*)."
    )
    id_attribute: str | None = Field(
        None, description="Names an employee (preset: sAMAccountName / uid)."
    )
    stable_id_attribute: str | None = Field(None, description="preset: objectGUID / entryUUID.")
    auxiliary_class: str | None = Field(
        None,
        description="Object class to add when an entry lacks it, so the target attribute is "
        "allowed (OpenLDAP: e.g. personaHolder).",
    )
    page_size: int = Field(500, ge=1, le=5000)
    timeout: float = Field(30, gt=0, description="Seconds for connecting and for each answer.")
    write_window: int = Field(
        100,
        ge=1,
        le=500,
        description="Modify requests in flight at once (slapd drops clients near 1000).",
    )
    entrycsn_margin_seconds: float | None = Field(
        None,
        ge=0,
        description="OpenLDAP without syncprov: how far before the highest entryCSN seen a "
        "delta read starts again, for writes that commit after a later one (default 120). "
        "Each delta re-reads the entries changed in that window.",
    )
    deletion_sweep_every_minutes: float = Field(
        0,
        ge=0,
        description="OpenLDAP without syncprov: look for deleted entries and entries moved "
        "out of scope (a search of every entry's entryUUID) at most this often; 0: on every "
        "delta read. Between sweeps such employees stay in the snapshot and the plan.",
    )


class EntraCredentialConfig(StrictModel):
    """App credential: a certificate (preferred) or a client secret, never inline."""

    certificate_file: Path | None = Field(
        None, description="PEM file with the private key and certificate, or a PFX/P12 file."
    )
    certificate_password_env: VariableName | None = Field(
        None, description="Environment variable with the PFX or key password, if any."
    )
    thumbprint: str | None = Field(
        None, description="SHA-1 thumbprint of the certificate (computed when omitted)."
    )
    client_secret_env: VariableName = Field(
        "PERSONA_SYNC_CLIENT_SECRET", description="Environment variable with the client secret."
    )
    client_secret_file: Path | None = Field(None, description="File with the client secret.")


class EntraScopeConfig(StrictModel):
    filter: str | None = Field(
        None, description="OData $filter on users, e.g. userType eq 'Member'."
    )
    group_id: str | None = Field(None, description="Only (transitive) members of this group.")
    include_disabled: bool = Field(False, description="Read disabled accounts too.")


class EntraDirectoryConfig(StrictModel):
    """Microsoft Entra ID through Microsoft Graph (msal + msgraph-sdk); extra 'entra'."""

    type: Literal["entra"]
    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    authority_host: str = Field(
        "https://login.microsoftonline.com",
        description="National clouds: https://login.microsoftonline.us, https://login.chinacloudapi.cn.",
    )
    graph_endpoint: str = Field(
        "https://graph.microsoft.com",
        description="National clouds: https://graph.microsoft.us, https://microsoftgraph.chinacloudapi.cn.",
    )
    credential: EntraCredentialConfig = EntraCredentialConfig()
    ca_file: Path | None = Field(
        None, description="Extra CA bundle (PEM), e.g. for a TLS-inspecting proxy."
    )
    scope: EntraScopeConfig = EntraScopeConfig()
    concurrency: int = Field(4, ge=1, le=16, description="$batch requests in flight at once.")
    retry_budget_seconds: float = Field(
        900,
        gt=0,
        description="How long to keep retrying a throttled, unavailable or unanswered "
        "request (honouring every Retry-After) before reporting it; a write whose answer "
        "was lost is read back before it is sent again.",
    )
    max_retries: int | None = Field(
        None,
        ge=0,
        description="Optional cap on retry rounds per change, on top of retry_budget_seconds "
        "(default: none; the time budget decides).",
    )
    retry_cap: float = Field(
        120, gt=0, description="Longest wait in seconds between retries without Retry-After."
    )
    timeout: float = Field(
        60, gt=0, description="Seconds to wait for each connection, token request and answer."
    )


DirectoryConfig = Annotated[
    FileDirectoryConfig | LdapDirectoryConfig | EntraDirectoryConfig, Field(discriminator="type")
]


class PersonaLimit(StrictModel):
    """How many employees one run may move into a persona; the smaller limit applies."""

    max_gain: int | None = Field(
        None, ge=0, description="Most employees one run may move into this persona."
    )
    max_gain_percent: float | None = Field(
        None, ge=0, le=100, description="The same, as % of the employees in scope."
    )

    def limit(self, in_scope: int) -> int:
        bounds = []
        if self.max_gain is not None:
            bounds.append(self.max_gain)
        if self.max_gain_percent is not None:
            bounds.append(math.floor(in_scope * self.max_gain_percent / 100))
        return min(bounds) if bounds else in_scope

    def describe(self, in_scope: int) -> str:
        parts = []
        if self.max_gain is not None:
            parts.append(f"max_gain {self.max_gain}")
        if self.max_gain_percent is not None:
            parts.append(f"max_gain_percent {self.max_gain_percent:g}% of {in_scope} in scope")
        return ", ".join(parts) or "no bound"


class SafetyConfig(StrictModel):
    """A run that would change more than a limit stops before writing, unless forced."""

    max_changes: int = Field(500, ge=0, description="Most employees one run may change.")
    max_change_percent: float = Field(
        10, ge=0, le=100, description="Most employees one run may change, as % of the scope."
    )
    persona_limits: dict[str, PersonaLimit] = Field(
        default_factory=dict,
        description="Persona id -> most employees one run may move into it, e.g. "
        "{vip: {max_gain: 50, max_gain_percent: 2}}: a rule slip that makes thousands VIP "
        "stops like the total limit and names the persona.",
    )


class SnapshotConfig(StrictModel):
    """The local snapshot in the state folder, which delta runs (--delta) read from."""

    full_read_every_hours: float = Field(
        24,
        gt=0,
        description="`sync --delta` and `plan --delta` read the whole directory instead of "
        "its changes when the last full read is older than this (as Entra Connect's "
        "scheduled full sync does): a full read also catches what change tracking misses.",
    )


FEED_NAME = r"^[a-z][a-z0-9_]*$"
#: Prefixes of dotted directory attribute names (Entra ID): never a feed's name.
DIRECTORY_PREFIXES = frozenset({"onpremisesextensionattributes", "customsecurityattributes"})


def _feed_name(value: str) -> str:
    if not re.match(FEED_NAME, value):
        raise ValueError(
            f"feed name {value!r}: use lower-case letters, digits and '_', starting with a "
            "letter (rules read its columns as <feed>.<column>, so no dots)"
        )
    if value in DIRECTORY_PREFIXES:
        raise ValueError(
            f"feed name {value!r} is taken: rules read {value}.<name> from the directory"
        )
    return value


FeedName = Annotated[str, AfterValidator(_feed_name)]


class FeedConfig(StrictModel):
    """An HR (or other) export whose rows are joined to the employees: rules read its
    columns as ``<feed>.<column>``, e.g. ``hr.grade``."""

    path: Path = Field(
        description="CSV with a header row (UTF-8, with or without BOM) or JSON Lines; "
        "relative to this file."
    )
    key: str = Field(min_length=1, description="The feed's column that holds the join value.")
    matches: AttributeName = Field(
        description="The directory attribute holding the same value (compared trimmed and "
        "ignoring case), e.g. employeeNumber or employeeId."
    )
    format: Literal["auto", "csv", "jsonl"] = Field(
        "auto", description="auto: .jsonl/.ndjson -> JSON Lines, anything else CSV."
    )
    delimiter: str | None = Field(
        None,
        min_length=1,
        max_length=1,
        description="CSV field delimiter; default: sniffed from the header (, ; tab |).",
    )
    max_shrink_percent: float = Field(
        10,
        ge=0,
        le=100,
        description="A run stops (unless --force) when the feed has fewer rows than at the "
        "last run by more than this share: a truncated export must not demote thousands.",
    )


class SyncConfig(StrictModel):
    """persona-sync.yaml: what to evaluate, where to write, and how carefully."""

    schema_: str | None = Field(None, alias="$schema")
    rules: Path = Field(Path("rules"), description="Rule file or folder, relative to this file.")
    directory: DirectoryConfig
    targets: dict[str, AttributeName] = Field(
        description="Scenario id -> attribute that receives its persona, e.g. "
        "{persona: msDS-cloudExtensionAttribute1}.",
        min_length=1,
    )

    @field_validator("targets")
    @classmethod
    def _one_scenario_per_attribute(cls, targets: dict[str, str]) -> dict[str, str]:
        owner: dict[str, str] = {}
        for scenario, attribute in targets.items():
            first = owner.setdefault(attribute.casefold(), scenario)
            if first != scenario:
                raise ValueError(
                    f"scenarios {first} and {scenario} both write {attribute}; each scenario "
                    "needs an attribute of its own (attribute names ignore case)"
                )
        return targets

    feeds: dict[FeedName, FeedConfig] = Field(
        default_factory=dict,
        description="Feed name -> an HR (or other) export joined to the employees, e.g. "
        "{hr: {path: hr-export.csv, key: employee_id, matches: employeeNumber}}; rules read "
        "its columns as <feed>.<column> (hr.grade).",
    )
    owns_attribute: bool = Field(
        False,
        description="true: persona-sync owns the target attributes and overwrites values "
        "that are not persona ids. false (default): such values are reported and left alone.",
    )
    safety: SafetyConfig = SafetyConfig()
    snapshot: SnapshotConfig = SnapshotConfig()
    state_dir: Path = Field(
        Path(".persona-sync"),
        description="Journal, lock, snapshot and saved cursors, relative to this file.",
    )


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config with its paths made absolute and its checksum."""

    path: Path
    spec: SyncConfig
    base: Path

    @property
    def rules_path(self) -> Path:
        return self.resolve(self.spec.rules)

    @property
    def state_dir(self) -> Path:
        return self.resolve(self.spec.state_dir)

    def feed_path(self, name: str) -> Path:
        """Where feed ``name``'s file is (relative paths are relative to the config)."""
        return self.resolve(self.spec.feeds[name].path)

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.base / path).resolve()

    @property
    def checksum(self) -> str:
        """Digest of everything in the config that shapes a plan (not the state folder)."""
        shaping = {"schema_", "state_dir", "rules", "snapshot"}
        data = self.spec.model_dump(mode="json", exclude=shaping)
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def config_file(path: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """The config file a command reads: ``path`` (--config), else PERSONA_SYNC_CONFIG,
    else persona-sync.yaml in the working directory."""
    env = os.environ if environ is None else environ
    return path or Path(env.get(ENV_PREFIX + "CONFIG", DEFAULT_CONFIG))


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read, override from the environment, and validate the sync configuration."""
    env = os.environ if environ is None else environ
    config_path = config_file(path, env)
    if not config_path.exists():
        hint = " (or run `persona-sync demo` to see one)" if path is None else ""
        raise ConfigError(f"{config_path}: no such config file: pass --config FILE{hint}")
    doc = load_yaml(config_path)
    if doc.data is None:
        raise RuleError(Location(str(config_path), 1, 1), "config file is empty")
    if not isinstance(doc.data, dict):
        raise doc.error(
            (), "the config must be a mapping with keys such as rules, directory, targets"
        )
    _apply_env(doc, env)
    spec, errors = validate_document(SyncConfig, doc, model_keys(SyncConfig))
    ValidationFailed.raise_if_any(errors)
    assert spec is not None
    loaded = LoadedConfig(config_path.resolve(), spec, config_path.resolve().parent)
    try:
        rules = loaded.rules_path
        found = rules.exists()
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
        reason = getattr(exc, "strerror", None) or str(exc)
        raise doc.error(("rules",), f"rules path cannot be used: {reason}") from None
    if not found:
        raise doc.error(
            ("rules",), f"rules not found: {rules} (the path is relative to {config_path})"
        )
    ValidationFailed.raise_if_any(_feed_problems(doc, spec))
    return loaded


def _feed_problems(doc: LocatedDocument, spec: SyncConfig) -> list[RuleError]:
    """A feed's ``matches`` must name a directory attribute, not another feed's column."""
    problems = []
    for name, feed in spec.feeds.items():
        prefix = feed.matches.split(".", 1)[0].lower()
        if "." in feed.matches and prefix in spec.feeds:
            problems.append(
                doc.error(
                    ("feeds", name, "matches"),
                    f"matches: {feed.matches} is a column of feed {prefix}; matches names the "
                    "directory attribute that holds the key",
                )
            )
    return problems


def _apply_env(doc: LocatedDocument, env: Mapping[str, str]) -> None:
    """Put PERSONA_SYNC_A__B=value into doc.data['a']['b'] before validation."""
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        if not keys or keys[0] not in SyncConfig.model_fields and keys[0] != "targets":
            continue
        target: Any = doc.data
        for key in keys[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[keys[-1]] = value
        where = Location(f"environment variable {name}", 0, 0)
        doc.values[tuple(keys)] = where
