"""Issue 9's proof, secrets: a distinctive bind password (real slapd) and client secret (the
Graph fake) appear in no output, log, plan, journal, report, lock or error.

Everything a user would run is run in its own process, so the logging set-up is the real
one: check-connection, plan in every format, apply, sync, runs, rollback, report, explain,
and the failures (wrong secret, unreachable server, untrusted TLS certificate, bad config,
refused token); each in three variants: plain, ``--log-format json -vv`` and ``--log-format
console -vv --debug``. Then an unexpected error raised inside the backend once the secret
is in use, with a message made from what the backend holds, plain and with ``--debug``'s
traceback. The stdout and stderr of every run, and every file in the workspace afterwards,
are searched for the secret and its common encodings (URL and form encoding, hex, base64
of the secret and of ``user:secret`` as HTTP Basic sends it); for Entra also for the access
tokens the fake issued. A wrong secret is searched for too.

Commands run in children forked from a process that has the imports done (forked_cli.py);
the first plan of each workspace runs in a fresh interpreter as well.
"""

from __future__ import annotations

import base64
import os
import queue
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.conftest import DEFAULT_RULES
from tests.fakegraph import FakeEntra
from tests.fakegraph.plugin import DEFAULT_ROLES
from tests.proof_secrets.forked_cli import Finished, ForkedCli
from tests.servers.slapd import SlapdServer, ssha

BIND_PASSWORD = "Zq8-DISTINCTIVE-bind-Pw!"
WRONG_BIND_PASSWORD = "Zq8-WRONG-bind-Pw?"  # a wrong password is a secret too
CLIENT_SECRET = "Kp4~DISTINCTIVE+client/Secret=7"
WRONG_CLIENT_SECRET = "Kp4~WRONG+client/Secret=8"
ENTRA_CLIENT_ID = "5b1a8f0e-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
UNCONSENTED_CLIENT_ID = "6c2b9f1e-3d4e-4f60-9bac-1d2e3f4a5b6c"

CLI = (sys.executable, "-m", "persona_sync")
PROCESS_TIMEOUT = 120
PARALLEL = 2

Variant = tuple[str, tuple[str, ...]]
#: Output flags: auto (JSON lines, warnings only, as a job sees it), JSON with debug logs,
#: and the console renderer with debug logs and tracebacks for unexpected errors.
VARIANTS: tuple[Variant, ...] = (
    ("plain", ()),
    ("json-vv", ("--log-format", "json", "-vv")),
    ("console-vv-debug", ("--log-format", "console", "-vv", "--debug")),
)

# Run in the CLI's process before it starts: the backend's `read` raises an unexpected
# error once the secret is in use (LDAP: connected and bound; Entra: a token obtained with
# the client secret). Its message is made of what the backend holds, as a careless f-string
# in an error path would: the secret's holder (str and repr), the backend's configuration,
# the connection (LDAP, as ldap3 prints it in its own messages); with SHOW_STATE also every
# attribute of the backend (repr(vars(self))). Its cause, a KeyError carrying the holder,
# shows in --debug's traceback.
EXPLODING_BACKEND = textwrap.dedent(
    """
    if BACKEND == "ldap":
        from persona_sync.directory.ldap import LdapDirectory as Backend
    else:
        from persona_sync.directory.entra import EntraDirectory as Backend


    def read(self, attributes):
        if BACKEND == "ldap":
            connection = str(self.reader)  # connects and binds with the password
            held = self.password
        else:
            connection = self.token()[:0]  # a token for the client secret (not shown)
            held = self.credential
        state = repr(vars(self)) if SHOW_STATE else "(not shown)"
        try:
            raise KeyError(held)
        except KeyError as cause:
            raise RuntimeError(
                f"simulated bug in the backend holding {held} ({held!r}); "
                f"connection {connection}; spec {self.spec!r}; state {state}"
            ) from cause


    def read_delta(self, attributes, cursor):
        return read(self, attributes)


    Backend.read = read
    Backend.read_delta = read_delta
    """
)


def exploding(backend: str, show_state: bool = False) -> str:
    return f"BACKEND = {backend!r}\nSHOW_STATE = {show_state}\n{EXPLODING_BACKEND}"


# --- what must not appear -------------------------------------------------------------------

Forms = dict[str, tuple[str, bool]]


def encodings(secret: str, users: Iterable[str], label: str = "") -> Forms:
    """name -> (text, case-sensitive): the secret as it could slip out."""
    forms = {
        "the secret": (secret, False),
        "the secret URL-encoded": (quote(secret, safe=""), False),
        "the secret form-encoded": (quote_plus(secret), False),
        "the secret in hex": (secret.encode().hex(), False),
    }
    plain = [("secret", secret)]
    for user in users:
        plain += [(f"{user}:secret", f"{user}:{secret}")]
        plain += [(f"{user}:secret form-encoded", f"{quote_plus(user)}:{quote_plus(secret)}")]
    for name, text in plain:
        raw = text.encode()
        forms[f"base64({name})"] = (base64.b64encode(raw).decode().rstrip("="), True)
        forms[f"base64url({name})"] = (base64.urlsafe_b64encode(raw).decode().rstrip("="), True)
    return {f"{label}{name}": form for name, form in forms.items()}


def leaks(found_in: dict[str, str], forms: Forms) -> list[str]:
    """'<where>: <which form>' for every form found."""
    hits = []
    for where, text in found_in.items():
        folded = text.casefold()
        for name, (form, case_sensitive) in forms.items():
            if (form in text) if case_sensitive else (form.casefold() in folded):
                hits.append(f"{where}: {name}")
    return hits


def workspace_files(root: Path) -> dict[str, str]:
    """Every file under root, as text (bytes that are not UTF-8 escaped, not dropped)."""
    return {
        str(path.relative_to(root)): path.read_bytes().decode("utf-8", "backslashreplace")
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# --- running the CLI -----------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One command: its arguments ('{v}' becomes the variant's name), the exit code it
    must end with, a text its output must hold (so a failure is the intended one), extra
    environment, Python to run in its process first, and whether to start a fresh
    interpreter instead of a fork of a preloaded one."""

    args: tuple[str, ...]
    exit_code: int
    says: str = ""
    env: dict[str, str] = field(default_factory=dict)
    patch: str = ""
    fresh: bool = False


@dataclass(frozen=True)
class Ran:
    label: str
    returncode: int
    stdout: str
    stderr: str


class Transcript:
    """Runs calls in a workspace, each in its own process, and keeps what each printed."""

    def __init__(self, root: Path, env: dict[str, str], forks: Sequence[ForkedCli]) -> None:
        self.root = root
        self.env = env
        self.ran: list[Ran] = []
        self.wrong: list[str] = []
        self._idle: queue.SimpleQueue[ForkedCli] = queue.SimpleQueue()
        for fork in forks:
            self._idle.put(fork)

    def run(self, call: Call, variant: Variant = VARIANTS[0]) -> Ran:
        name, flags = variant
        args = [arg.replace("{v}", name) for arg in call.args]
        env = {**self.env, **call.env}
        if call.fresh:
            assert not call.patch
            done = subprocess.run(
                [*CLI, *flags, *args],
                cwd=self.root,
                env=env,
                capture_output=True,
                text=True,
                timeout=PROCESS_TIMEOUT,
                check=False,
            )
            finished = Finished(done.returncode, done.stdout, done.stderr)
        else:
            fork = self._idle.get()
            try:
                finished = fork.run([*flags, *args], cwd=self.root, env=env, patch=call.patch)
            finally:
                self._idle.put(fork)
        label = f"[{name}] {' '.join(args)}" + (" (backend exploding)" if call.patch else "")
        ran = Ran(label, finished.returncode, finished.stdout, finished.stderr)
        self.ran.append(ran)
        if ran.returncode != call.exit_code or call.says not in ran.stdout + ran.stderr:
            self.wrong.append(
                f"{label}: exit {ran.returncode} (want {call.exit_code}, saying "
                f"{call.says!r})\n{ran.stdout}{ran.stderr}"
            )
        return ran

    def run_all(self, calls: Sequence[Call]) -> None:
        """Each call in every variant, several at once: for calls that take no lock."""
        jobs = [(call, variant) for call in calls for variant in VARIANTS]
        with ThreadPoolExecutor(PARALLEL) as pool:
            list(pool.map(lambda job: self.run(*job), jobs))

    def outputs(self) -> dict[str, str]:
        found = {}
        for ran in self.ran:
            found[f"stdout of {ran.label}"] = ran.stdout
            found[f"stderr of {ran.label}"] = ran.stderr
        return found


@dataclass
class Workspace:
    """A configured workspace, the forms of its secrets, and how the backend's holder of
    the secret prints (in the unexpected error's message)."""

    root: Path
    transcript: Transcript
    forms: Callable[[], Forms]  # called at the end: access tokens are known only then
    holder: str
    configs: list[str] = field(default_factory=list)

    def assert_nothing_shows(self) -> None:
        assert not self.transcript.wrong, "\n".join(self.transcript.wrong)
        found = self.transcript.outputs() | workspace_files(self.root)
        hits = leaks(found, self.forms())
        assert not hits, "secret found in:\n" + "\n".join(hits)


def run_id_of(ran: Ran) -> str:
    """The run id from a writing command's summary line."""
    match = re.search(r"^run (\S+): ", ran.stderr, re.MULTILINE)
    assert match, ran.stderr
    return match.group(1)


def write_and_undo(transcript: Transcript) -> None:
    """In every variant: apply the plan, roll it back, sync, roll that back; so each
    variant really writes (and the state is the plan's starting point again)."""
    for variant in VARIANTS:
        for call in (Call(("apply", "plan.json"), 0), Call(("sync",), 0)):
            ran = transcript.run(call, variant)
            if ran.returncode == 0:
                transcript.run(Call(("rollback", run_id_of(ran)), 0), variant)


def dead_port() -> int:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def base_env() -> dict[str, str]:
    """The test's environment without any persona-sync settings of its own."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_SYNC_")}


@pytest.fixture(scope="module")
def forks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ForkedCli]]:
    """Fork servers for the commands (each child gets its own working directory and
    environment, so they serve every test); captured output lives outside the workspaces."""
    captured = tmp_path_factory.mktemp("captured-output")
    servers = [ForkedCli(captured) for _ in range(PARALLEL)]
    yield servers
    for server in servers:
        server.close()


# --- slapd and the bind password ----------------------------------------------------------


def ldap_config(
    server: SlapdServer, *, url: str | None = None, ca: bool = True, bind: str = ""
) -> str:
    return (
        f"rules: {DEFAULT_RULES}\n"
        "directory:\n  type: ldap\n  preset: openldap\n"
        f"  urls: [{url or server.ldaps_url}]\n"
        + (f"  ca_file: {server.ca_file}\n" if ca else "")
        + f"  bind: {{user: '{server.service_dn}'{bind}}}\n"
        f"  base_dns: ['{server.people_dn}']\n"
        "  auxiliary_class: personaHolder\n"
        "targets:\n  persona: personaName\n"
        "safety:\n  max_change_percent: 100\n"
        "state_dir: state\n"
    )


PEOPLE = """\
dn: uid=ceo,{people}
objectClass: inetOrgPerson
uid: ceo
cn: Ada Chief
sn: Chief
title: Chief Executive Officer
physicalDeliveryOfficeName: Munich HQ

dn: uid=jsmith,{people}
objectClass: inetOrgPerson
uid: jsmith
cn: John Smith
sn: Smith
title: Registered Nurse
physicalDeliveryOfficeName: North Clinic
manager: uid=ceo,{people}

dn: uid=jmuller,{people}
objectClass: inetOrgPerson
uid: jmuller
cn: Jorg Muller
sn: Muller
title: Software Engineer
physicalDeliveryOfficeName: Munich HQ
manager: uid=ceo,{people}

dn: uid=acct,{people}
objectClass: inetOrgPerson
objectClass: personaHolder
uid: acct
cn: Accountant
sn: Counter
title: Accountant
physicalDeliveryOfficeName: Munich HQ
manager: uid=ceo,{people}
personaName: engineer
"""


@pytest.fixture
def ldap_workspace(slapd: SlapdServer, tmp_path: Path, forks: list[ForkedCli]) -> Workspace:
    """slapd whose service account has BIND_PASSWORD; a workspace with a config for it
    (password from the environment) and configs for the failures."""
    slapd.add_ldif(PEOPLE.format(people=slapd.people_dn))
    slapd.modify_ldif(
        f"dn: {slapd.service_dn}\nchangetype: modify\nreplace: userPassword\n"
        f"userPassword: {ssha(BIND_PASSWORD)}\n"
    )
    root = tmp_path / "workspace"
    root.mkdir()
    secret_file = tmp_path / "secrets" / "bind-password"  # outside the workspace searched
    secret_file.parent.mkdir()
    secret_file.write_text(BIND_PASSWORD + "\n")
    (root / "persona-sync.yaml").write_text(ldap_config(slapd))
    (root / "password-file.yaml").write_text(
        ldap_config(slapd, bind=f", password_file: '{secret_file}'")
    )
    (root / "unreachable.yaml").write_text(
        ldap_config(slapd, url=f"ldaps://127.0.0.1:{dead_port()}")
    )
    (root / "no-ca.yaml").write_text(ldap_config(slapd, ca=False))
    (root / "bad.yaml").write_text(
        ldap_config(slapd).replace("  preset: openldap\n", "  preset: openldap\n  colour: red\n")
    )
    env = {**base_env(), "PERSONA_SYNC_BIND_PASSWORD": BIND_PASSWORD}
    forms = encodings(BIND_PASSWORD, [slapd.service_dn]) | encodings(
        WRONG_BIND_PASSWORD, [slapd.service_dn], "wrong password: "
    )
    return Workspace(
        root,
        Transcript(root, env, forks),
        lambda: forms,
        "<secret from environment variable PERSONA_SYNC_BIND_PASSWORD>",
    )


def test_the_bind_password_appears_nowhere(slapd: SlapdServer, ldap_workspace: Workspace) -> None:
    transcript = ldap_workspace.transcript
    wrong = {"PERSONA_SYNC_BIND_PASSWORD": WRONG_BIND_PASSWORD}
    refused = f"error: bind as {slapd.service_dn} refused: invalid credentials (LDAP 49)"

    transcript.run(Call(("plan", "-o", "plan.json"), 2, fresh=True))
    transcript.run_all(
        [
            Call(("check-connection",), 0),
            Call(("check-connection", "--format", "json"), 0),
            *(Call(("plan", "--format", fmt), 2) for fmt in ("table", "json", "csv", "markdown")),
            Call(("plan", "-o", "plan-{v}.json"), 2),
            Call(("plan", "--config", "password-file.yaml", "--format", "json"), 2),
            Call(("explain", "jsmith"), 0),
            Call(("explain", "jsmith", "--format", "json"), 0),
            Call(
                ("report", "plan.json", "--config", "persona-sync.yaml", "-o", "plan-{v}.html"), 0
            ),
            # failures
            Call(("plan",), 1, refused, wrong),
            Call(("check-connection",), 1, "invalid credentials", wrong),
            Call(("plan", "--config", "unreachable.yaml"), 1, "error: cannot connect to ldaps://"),
            Call(("plan", "--config", "no-ca.yaml"), 1, "TLS certificate verification failed"),
            Call(("plan", "--config", "bad.yaml"), 1, "bad.yaml:5:3: unknown key 'colour'"),
        ]
    )
    for variant in VARIANTS:  # one at a time: each takes the lock
        transcript.run(Call(("sync",), 1, refused, wrong), variant)
    write_and_undo(transcript)
    transcript.run_all(
        [
            Call(("runs",), 0),
            Call(("runs", "--format", "json"), 0),
            Call(("report", "-o", "history-{v}.html"), 0),
            Call(("report", "--employee", "jsmith", "--format", "markdown"), 0),
        ]
    )

    files = workspace_files(ldap_workspace.root)
    assert {"plan.json", "plan-plain.html", "history-plain.html", "state/lock"} <= set(files)
    assert len([name for name in files if name.startswith("state/journal/")]) == 12
    ldap_workspace.assert_nothing_shows()


# --- the Graph fake and the client secret -------------------------------------------------


def entra_config(
    fake: FakeEntra,
    client_id: str = ENTRA_CLIENT_ID,
    *,
    authority: str | None = None,
    ca: bool = True,
    extra: str = "",
) -> str:
    return (
        f"rules: {DEFAULT_RULES}\n"
        "directory:\n  type: entra\n"
        f"  tenant_id: {fake.tenant_id}\n  client_id: {client_id}\n"
        f"  authority_host: {authority or fake.origin}\n  graph_endpoint: {fake.origin}\n"
        + (f"  ca_file: {fake.ca_file}\n" if ca else "")
        + extra
        + "targets:\n  persona: onPremisesExtensionAttributes.extensionAttribute10\n"
        "safety:\n  max_change_percent: 100\n"
        "state_dir: state\n"
    )


@pytest.fixture
def entra_workspace(fake_entra: FakeEntra, tmp_path: Path, forks: list[ForkedCli]) -> Workspace:
    """The fake tenant with an app whose secret is CLIENT_SECRET (and one without admin
    consent); a workspace with a config for it (secret from the environment) and configs
    for the failures."""
    fake = fake_entra
    fake.register_app(ENTRA_CLIENT_ID, secret=CLIENT_SECRET, roles=DEFAULT_ROLES)
    fake.register_app(
        UNCONSENTED_CLIENT_ID, secret=CLIENT_SECRET, roles=DEFAULT_ROLES, consent=False
    )
    boss = fake.add_user(
        userPrincipalName="ceo@contoso.example",
        jobTitle="Chief Executive Officer",
        officeLocation="Munich HQ",
    )
    for upn, title, office in (
        ("nurse@contoso.example", "Registered Nurse", "North Clinic"),
        ("eng@contoso.example", "Software Engineer", "Munich HQ"),
    ):
        fake.add_user(userPrincipalName=upn, jobTitle=title, officeLocation=office, manager=boss)
    root = tmp_path / "workspace"
    root.mkdir()
    secret_file = tmp_path / "secrets" / "client-secret"  # outside the workspace searched
    secret_file.parent.mkdir()
    secret_file.write_text(CLIENT_SECRET + "\n")
    (root / "persona-sync.yaml").write_text(entra_config(fake))
    (root / "secret-file.yaml").write_text(
        entra_config(fake, extra=f"  credential:\n    client_secret_file: '{secret_file}'\n")
    )
    (root / "unreachable.yaml").write_text(
        entra_config(fake, authority=f"https://127.0.0.1:{dead_port()}")
    )
    (root / "no-ca.yaml").write_text(entra_config(fake, ca=False))
    (root / "bad.yaml").write_text(
        entra_config(fake).replace("  type: entra\n", "  type: entra\n  colour: red\n")
    )
    (root / "unconsented.yaml").write_text(entra_config(fake, UNCONSENTED_CLIENT_ID))
    env = {**base_env(), "PERSONA_SYNC_CLIENT_SECRET": CLIENT_SECRET}
    forms = encodings(CLIENT_SECRET, [ENTRA_CLIENT_ID, UNCONSENTED_CLIENT_ID]) | encodings(
        WRONG_CLIENT_SECRET, [ENTRA_CLIENT_ID], "wrong secret: "
    )

    def with_tokens() -> Forms:
        tokens = list(fake.identity.tokens)
        assert tokens  # the fake issued access tokens: they must not show either
        return forms | {f"access token {i}": (token, True) for i, token in enumerate(tokens)}

    return Workspace(
        root,
        Transcript(root, env, forks),
        with_tokens,
        "Credential(secret=Secret(source='environment variable PERSONA_SYNC_CLIENT_SECRET')",
    )


def test_the_client_secret_appears_nowhere(entra_workspace: Workspace) -> None:
    transcript = entra_workspace.transcript
    wrong = {"PERSONA_SYNC_CLIENT_SECRET": WRONG_CLIENT_SECRET}
    refused = (
        f"error: Entra ID refused the client secret of app {ENTRA_CLIENT_ID} "
        "(AADSTS7000215: invalid secret); set a current one"
    )

    transcript.run(Call(("plan", "-o", "plan.json"), 2, fresh=True))
    transcript.run_all(
        [
            Call(("check-connection",), 0),
            Call(("check-connection", "--format", "json"), 0),
            Call(("entra", "create-extension", "persona", "--dry-run"), 0, "would create "),
            *(Call(("plan", "--format", fmt), 2) for fmt in ("table", "json", "csv", "markdown")),
            Call(("plan", "-o", "plan-{v}.json"), 2),
            Call(("plan", "--config", "secret-file.yaml", "--format", "json"), 2),
            Call(("explain", "nurse@contoso.example", "--format", "json"), 0),
            Call(
                ("report", "plan.json", "--config", "persona-sync.yaml", "-o", "plan-{v}.html"), 0
            ),
            # failures
            Call(("plan",), 1, refused, wrong),
            Call(("plan", "--config", "unreachable.yaml"), 1, "error: cannot connect to 127.0.0.1"),
            Call(("plan", "--config", "no-ca.yaml"), 1, "is not trusted"),
            Call(("plan", "--config", "bad.yaml"), 1, "bad.yaml:4:3: unknown key 'colour'"),
            Call(("plan", "--config", "unconsented.yaml"), 1, "error: Graph refused the token"),
        ]
    )
    for variant in VARIANTS:  # one at a time: each takes the lock
        transcript.run(Call(("sync",), 1, refused, wrong), variant)
    write_and_undo(transcript)
    transcript.run_all(
        [
            Call(("runs", "--format", "json"), 0),
            Call(("report", "-o", "history-{v}.html"), 0),
            Call(("report", "--employee", "nurse@contoso.example", "--format", "markdown"), 0),
        ]
    )

    files = workspace_files(entra_workspace.root)
    assert {"plan.json", "plan-plain.html", "history-plain.html", "state/lock"} <= set(files)
    assert len([name for name in files if name.startswith("state/journal/")]) == 12
    entra_workspace.assert_nothing_shows()


# --- an unexpected error inside the backend -------------------------------------------------


@pytest.mark.parametrize("show_state", [False, True], ids=["holder", "whole-state"])
@pytest.mark.parametrize("backend", ["ldap", "entra"])
def test_an_unexpected_error_in_the_backend_does_not_show_the_secret(
    backend: str, show_state: bool, request: pytest.FixtureRequest
) -> None:
    workspace: Workspace = request.getfixturevalue(f"{backend}_workspace")
    says = (
        f"unexpected error: RuntimeError: simulated bug in the backend holding {workspace.holder}"
    )
    for variant in VARIANTS:
        workspace.transcript.run(
            Call(("plan",), 1, says, patch=exploding(backend, show_state)), variant
        )
    debug = workspace.transcript.ran[-1]
    assert debug.label == "[console-vv-debug] plan (backend exploding)"
    assert "Traceback (most recent call last):" in debug.stderr
    assert "KeyError" in debug.stderr  # the cause is shown too
    workspace.assert_nothing_shows()
