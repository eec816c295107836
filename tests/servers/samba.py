"""A throwaway Samba AD DC for tests: provisioned into a temp dir, LDAPS with a test CA.

Samba listens on the fixed ports 389/636/3268/3269 of 127.0.0.1, so one DC serves a
whole test session (see the `samba_dc` fixture). Tests share it: each should work in
its own OU (`create_ou`) and with user names of its own.

Start-up:
  1. A template DC is built once per machine (and again whenever this file or the
     Samba version changes): `samba-tool domain provision` (4-6 s on a 2-core machine;
     TDB_NO_FSYNC=1 saves about a third), then OUs, the service account and its ACE
     written into sam.ldb with samba-tool (1.5-2 s). The template is never started.
  2. Each DC copies the template (35 MB, a few hundredths of a second) and rewrites the
     paths in smb.conf, the only file that holds them.
  3. smb.conf gets `tls *file` lines pointing at a trustme certificate for 127.0.0.1,
     localhost and dc1.example.test: Samba's own self-signed certificate names only
     DC1.example.test, with no subjectAltName, so a client dialling 127.0.0.1 cannot
     verify it.
  4. `samba -i` runs in the foreground with its stdin on a pipe from this process:
     Samba exits when that pipe closes, so it cannot outlive the test run even if the
     run is killed. First verified LDAPS bind after about 0.6-0.9 s.
So a session's DC takes about 1 s, or 7-9 s when the template must be built first.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import ldap3
from ldap3.core.exceptions import LDAPException

from .clients import ldap_tool_env, run_ldap_tool, search_dump
from .tls import write_tls_files

REALM = "EXAMPLE.TEST"
DNS_DOMAIN = "example.test"
NETBIOS_DOMAIN = "EXAMPLE"
HOST_NAME = "dc1"
BASE_DN = "DC=example,DC=test"
ADMIN_USER = f"Administrator@{DNS_DOMAIN}"
ADMIN_PASSWORD = "Adm1n!persona-sync"
STAFF_DN = f"OU=Staff,{BASE_DN}"
SERVICE_ACCOUNTS_DN = f"OU=Service Accounts,{BASE_DN}"
SERVICE_USER = "svc-persona"
SERVICE_DN = f"CN={SERVICE_USER},{SERVICE_ACCOUNTS_DN}"
SERVICE_PASSWORD = "Svc!persona-sync-1"

# The attribute persona-sync writes on AD: single-valued, indexed, present on every user.
PERSONA_ATTRIBUTE = "msDS-cloudExtensionAttribute1"
# schemaIDGUIDs are the same in every AD forest (they come with the schema).
PERSONA_ATTRIBUTE_GUID = "9709eaaf-49da-4db2-908a-0446e5eab844"
USER_CLASS_GUID = "bf967aba-0de6-11d0-a285-00aa003049e2"

LDAP_PORT = 389
LDAPS_PORT = 636
# Samba binds all four whenever the ldap service runs.
FIXED_PORTS = (389, 636, 3268, 3269)

SAMBA = "/usr/sbin/samba"
REQUIRED_BINARIES = (
    SAMBA,
    "samba-tool",
    "ldbsearch",
    "ldapsearch",
    "ldapadd",
    "ldapmodify",
    "ldapdelete",
)

# Attributes left out of `dump()` because they change without the entry's content
# changing, so a before/after comparison would always differ:
VOLATILE_ATTRIBUTES = frozenset(
    {
        # bumped on every write to the entry (and on writes Samba makes itself)
        "uSNChanged",
        "whenChanged",
        # rewritten when inherited security descriptors are propagated
        "dSCorePropagationData",
        # bumped by binds, failed binds and logons, not by modifies
        "lastLogon",
        "lastLogonTimestamp",
        "logonCount",
        "badPwdCount",
        "badPasswordTime",
        "lastLogoff",
    }
)

# Our samba runs with its working directory in a directory named so, holding the test
# process's pid in OWNER_FILE: that is how a leftover is recognised (one whose test
# process is gone is stopped; nothing else is). Not an environment
# variable: samba's process titles overwrite /proc/PID/environ.
WORKDIR_PREFIX = "persona-sync-samba-"
OWNER_FILE = "owner.pid"
TEMPLATE_PREFIX = f"{WORKDIR_PREFIX}template-"
# Stands for the DC's directory in the template's smb.conf.
WORKDIR_PLACEHOLDER = "@PERSONA_SYNC_SAMBA_DIR@"
SERVICE_SID_FILE = "service-account.sid"


class SambaError(RuntimeError):
    """The DC could not be provisioned or started; the message says why."""


@dataclass(frozen=True)
class AdUser:
    """A user for `SambaDC.add_users`.

    `name` becomes cn and sAMAccountName (at most 20 characters); `attributes` are
    further LDAP attributes, e.g. {"department": "IT", "title": "Engineer"}. Without a
    password the account is created disabled, which is all most tests need.
    """

    name: str
    attributes: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    password: str | None = None
    parent_dn: str = STAFF_DN

    @property
    def dn(self) -> str:
        return f"CN={self.name},{self.parent_dn}"


def _ldif_line(attribute: str, value: str) -> str:
    """One LDIF attribute line, base64 when the value is not safe as plain text."""
    safe = (
        value.isascii()
        and value == value.strip()
        and not value.startswith((":", "<"))
        and "\n" not in value
        and "\r" not in value
        and "\0" not in value
    )
    if safe:
        return f"{attribute}: {value}"
    return f"{attribute}:: {base64.b64encode(value.encode()).decode()}"


def _unicode_pwd(password: str) -> str:
    """AD's password attribute: the quoted password in UTF-16-LE, base64 for LDIF."""
    return base64.b64encode(f'"{password}"'.encode("utf-16-le")).decode()


def user_ldif(user: AdUser) -> str:
    """LDIF add record for `user`."""
    lines = [
        _ldif_line("dn", user.dn),
        "objectClass: user",
        _ldif_line("sAMAccountName", user.name),
        _ldif_line("userPrincipalName", f"{user.name}@{DNS_DOMAIN}"),
    ]
    for attribute, values in user.attributes.items():
        for value in [values] if isinstance(values, str) else values:
            lines.append(_ldif_line(attribute, value))
    if user.password is not None:
        lines.append(f"unicodePwd:: {_unicode_pwd(user.password)}")
        lines.append("userAccountControl: 512")  # normal account, enabled
    return "\n".join(lines) + "\n\n"


# -- who holds a port ------------------------------------------------------------------


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[3] == "0A" and local_port == port:  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes


def _socket_owners(inodes: set[str]) -> dict[int, str]:
    """pid -> "name: command line" for processes holding any of the socket inodes."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    owners: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    comm = (proc / "comm").read_text().strip()
                    cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                    owners[int(proc.name)] = f"{comm}: {cmdline.strip()}"
                    break
        except OSError:
            continue
    return owners


def _workdir_owner(directory: Path) -> int | None:
    """The test-process pid recorded in one of our DC directories, if it is one."""
    if not directory.name.startswith(WORKDIR_PREFIX):
        return None
    try:
        return int((directory / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _leftover_owner(pid: int) -> int | None:
    """The test-process pid that started samba process `pid`, if we started it."""
    try:
        return _workdir_owner(Path(os.readlink(f"/proc/{pid}/cwd")))
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_workdirs() -> None:
    """Delete the directories (about 35 MB each) of DCs whose test process was killed
    before it could clean up."""
    for workdir in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        owner = _workdir_owner(workdir)
        if owner is not None and not _pid_alive(owner):
            shutil.rmtree(workdir, ignore_errors=True)


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    # Test data needs no durability: without fsync provisioning is about a third
    # faster and the DC takes writes about twice as fast (~450-850 modifies/s).
    env["TDB_NO_FSYNC"] = "1"
    return env


def _run(command: Sequence[str], *, cwd: Path, timeout: float = 120.0) -> str:
    """Run a Samba tool in `cwd` (which marks it as ours); SambaError when it fails."""
    result = subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        env=_tool_env(),
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
    if result.returncode != 0:
        raise SambaError(
            f"{' '.join(command[:3])} ... exited {result.returncode}:\n"
            f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
        )
    return result.stdout


def _make_workdir() -> Path:
    """A new directory that the stale-directory sweep removes if this process dies."""
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    (workdir / OWNER_FILE).write_text(str(os.getpid()))
    return workdir


def _template_path() -> Path:
    """Where the template for this Samba version and this file's content lives."""
    fingerprint = hashlib.sha256(Path(__file__).read_bytes())
    fingerprint.update(_run([SAMBA, "--version"], cwd=Path(tempfile.gettempdir())).encode())
    return Path(tempfile.gettempdir()) / f"{TEMPLATE_PREFIX}{fingerprint.hexdigest()[:16]}"


def _provision(directory: Path) -> None:
    for sub in ("run", "ncalrpc", "winbindd", "ntp_signd"):
        (directory / sub).mkdir(exist_ok=True)
    _run(
        [
            "samba-tool",
            "domain",
            "provision",
            f"--targetdir={directory}",
            f"--realm={REALM}",
            f"--domain={NETBIOS_DOMAIN}",
            "--server-role=dc",
            "--dns-backend=NONE",
            f"--host-name={HOST_NAME}",
            f"--adminpass={ADMIN_PASSWORD}",
            "--option=interfaces=127.0.0.1",
            "--option=bind interfaces only=yes",
            # Without an explicit list Samba also starts DNS, which aborts with
            # --dns-backend=NONE.
            "--option=server services=ldap",
            f"--option=log file={directory}/log.%m",
            f"--option=pid directory={directory}/run",
            f"--option=ncalrpc dir={directory}/ncalrpc",
            f"--option=winbindd socket directory={directory}/winbindd",
            f"--option=ntp signd socket directory={directory}/ntp_signd",
        ],
        cwd=directory,
    )


def _create_service_account(directory: Path) -> str:
    """Create the OUs and svc-persona with its one ACE; return the account's SID."""
    config = ("-s", str(directory / "etc" / "smb.conf"))

    def samba_tool(*args: str) -> str:
        return _run(["samba-tool", *args, *config], cwd=directory)

    samba_tool("ou", "add", STAFF_DN)
    samba_tool("ou", "add", SERVICE_ACCOUNTS_DN)
    samba_tool(
        "user",
        "add",
        SERVICE_USER,
        SERVICE_PASSWORD,
        "--userou=OU=Service Accounts",
        "--description=persona-sync service account (least privilege)",
    )
    # ldbsearch reads sam.ldb directly: about twice as fast as `samba-tool user show`.
    sid_match = re.search(
        r"^objectSid: (S-1-5-21-[\d-]+)$",
        _run(
            [
                "ldbsearch",
                "-H",
                str(directory / "private" / "sam.ldb"),
                "-b",
                BASE_DN,
                f"(sAMAccountName={SERVICE_USER})",
                "objectSid",
            ],
            cwd=directory,
        ),
        flags=re.MULTILINE,
    )
    if sid_match is None:
        raise SambaError(f"could not read the objectSid of {SERVICE_USER}")
    sid = sid_match.group(1)
    # Object ACE, inherited by containers (CI) but effective only on user objects
    # (inherited object type = user class): write property msDS-cloudExtensionAttribute1.
    samba_tool(
        "dsacl",
        "set",
        f"--objectdn={STAFF_DN}",
        f"--sddl=(OA;CI;WP;{PERSONA_ATTRIBUTE_GUID};{USER_CLASS_GUID};{sid})",
    )
    return sid


def ensure_template() -> Path:
    """Return the template DC directory, building it first if this machine has none.

    Built in a directory of its own and renamed into place, so a concurrent or
    interrupted build never leaves a half-made template behind.
    """
    template = _template_path()
    if (template / SERVICE_SID_FILE).exists():
        return template
    build = _make_workdir()
    try:
        _provision(build)
        (build / SERVICE_SID_FILE).write_text(_create_service_account(build))
        config = build / "etc" / "smb.conf"
        config.write_text(config.read_text().replace(str(build), WORKDIR_PLACEHOLDER))
        (build / OWNER_FILE).unlink()
        for old in template.parent.glob(f"{TEMPLATE_PREFIX}*"):
            if old != template:
                shutil.rmtree(old, ignore_errors=True)  # templates of other versions
        os.rename(build, template)
    except OSError:
        if not (template / SERVICE_SID_FILE).exists():
            raise
    finally:
        shutil.rmtree(build, ignore_errors=True)  # still there only if not renamed
    return template


def ensure_ports_free() -> None:
    """Raise SambaError naming whatever holds 389/636/3268/3269 on this host.

    A samba left by an earlier test run whose test process is gone is stopped instead.
    """
    holders: dict[int, str] = {}
    for port in FIXED_PORTS:
        inodes = _listening_inodes(port)
        if inodes:
            owners = _socket_owners(inodes)
            for pid, owner in owners.items():
                holders.setdefault(pid, f"port {port}: pid {pid} ({owner})")
            if not owners:
                holders.setdefault(-port, f"port {port}: a process this user cannot see")
    orphans = [
        pid
        for pid in holders
        if pid > 0 and (test_pid := _leftover_owner(pid)) is not None and not _pid_alive(test_pid)
    ]
    for pid in orphans:
        with contextlib.suppress(OSError):
            os.killpg(os.getpgid(pid), signal.SIGTERM)
        del holders[pid]
    if orphans:
        time.sleep(0.5)
    if holders:
        raise SambaError(
            "Samba AD DC needs ports 389, 636, 3268 and 3269 on 127.0.0.1, but "
            + "; ".join(sorted(holders.values()))
            + ". The tests do not stop other services: stop it yourself (for a system"
            " slapd or samba, e.g. `sudo systemctl stop slapd samba-ad-dc`) and run the"
            " tests again."
        )


# -- the DC --------------------------------------------------------------------------


class SambaDC:
    """A Samba AD DC provisioned from scratch, with OU=Staff, OU=Service Accounts and a
    least-privilege service account that may write only PERSONA_ATTRIBUTE on users
    under OU=Staff.

    Attributes: url (ldaps://127.0.0.1:636), ldap_url (ldap:// on 389, StartTLS;
    plain simple binds are refused with strongerAuthRequired), ca_file, base_dn,
    admin_user/admin_password (UPN bind), staff_dn, service_accounts_dn, service_dn,
    service_user (UPN)/service_password, service_sid, workdir.
    """

    url = f"ldaps://127.0.0.1:{LDAPS_PORT}"
    ldap_url = f"ldap://127.0.0.1:{LDAP_PORT}"
    base_dn = BASE_DN
    realm = REALM
    admin_user = ADMIN_USER
    admin_password = ADMIN_PASSWORD
    staff_dn = STAFF_DN
    service_accounts_dn = SERVICE_ACCOUNTS_DN
    service_dn = SERVICE_DN
    service_user = f"{SERVICE_USER}@{DNS_DOMAIN}"
    service_password = SERVICE_PASSWORD
    persona_attribute = PERSONA_ATTRIBUTE

    def __init__(self, *, start_timeout: float = 60.0) -> None:
        remove_stale_workdirs()
        self.workdir = _make_workdir()
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.config_file = self.workdir / "etc" / "smb.conf"
        self.ca_file = self.workdir / "tls" / "ca.pem"
        self.service_sid = ""
        self.timings: dict[str, float] = {}

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> SambaDC:
        """Provision, configure TLS and the service account, start samba, wait for a
        verified LDAPS bind."""
        if self._process is not None:
            raise SambaError("samba already started")
        ensure_ports_free()
        atexit.register(self.stop)
        try:
            self._timed("template", self._copy_template)
            self._timed("configure_tls", self._configure_tls)
            self._timed("launch", self._launch)
        except BaseException:
            self.stop()
            raise
        return self

    def _timed(self, step: str, action: Callable[[], None]) -> None:
        began = time.perf_counter()
        action()
        self.timings[step] = time.perf_counter() - began

    def _copy_template(self) -> None:
        template = ensure_template()
        shutil.copytree(template, self.workdir, symlinks=True, dirs_exist_ok=True)
        self.service_sid = (self.workdir / SERVICE_SID_FILE).read_text()
        config = self.config_file.read_text()
        self.config_file.write_text(config.replace(WORKDIR_PLACEHOLDER, str(self.workdir)))

    def samba_tool(self, *args: str) -> str:
        """Run `samba-tool ARGS` against this DC's database (works running or not)."""
        return _run(["samba-tool", *args, "-s", str(self.config_file)], cwd=self.workdir)

    def _configure_tls(self) -> None:
        tls = write_tls_files(self.workdir / "tls")
        settings = (
            "\ttls enabled = yes\n"
            f"\ttls keyfile = {tls.key_file}\n"
            f"\ttls certfile = {tls.cert_file}\n"
            f"\ttls cafile = {tls.ca_file}\n"
        )
        # `provision --option` drops some settings silently; editing the file is reliable.
        config = self.config_file.read_text()
        config, count = re.subn(
            r"^\[global\]\n", lambda m: m.group(0) + settings, config, count=1, flags=re.MULTILINE
        )
        if count != 1:
            raise SambaError(f"no [global] section in {self.config_file}")
        self.config_file.write_text(config)

    def _launch(self) -> None:
        output_path = self.workdir / "samba.out"
        with output_path.open("wb") as output:
            # stdin stays a pipe: `samba -i` exits on EOF there, i.e. when this process
            # ends for any reason. start_new_session gives it a process group to kill.
            # cwd marks it as ours (see WORKDIR_PREFIX).
            self._process = subprocess.Popen(
                [SAMBA, "-i", "-s", str(self.config_file)],
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=output,
                env=_tool_env(),
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + self._start_timeout
        last_error = "no attempt yet"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise SambaError(
                    f"samba exited with {code} during start-up:\n{output_path.read_text()[-4000:]}"
                )
            try:
                self._check_ldaps_bind()
                return
            except (LDAPException, OSError) as error:
                last_error = f"{type(error).__name__}: {error}"
            time.sleep(0.1)
        raise SambaError(
            f"no verified LDAPS bind to {self.url} within {self._start_timeout} s "
            f"(last error: {last_error}):\n{output_path.read_text()[-4000:]}"
        )

    def _check_ldaps_bind(self) -> None:
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file))
        server = ldap3.Server(
            self.url, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=2
        )
        connection = ldap3.Connection(
            server,
            user=ADMIN_USER,
            password=ADMIN_PASSWORD,
            receive_timeout=5,
            raise_exceptions=True,
        )
        try:
            connection.bind()
        finally:
            connection.unbind()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop samba (its whole process group) and delete the directory. Idempotent."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                process.stdin.close()  # samba -i shuts down cleanly on EOF
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # workers, if any survived
            if process.poll() is None:
                process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> SambaDC:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- data --------------------------------------------------------------------------

    @property
    def client_env(self) -> dict[str, str]:
        """Environment for running ldapsearch/ldapmodify yourself against this DC."""
        return ldap_tool_env(self.ca_file)

    def _as_admin(self, tool: str, *args: str, input_text: str | None = None) -> str:
        return run_ldap_tool(
            [tool, "-x", "-H", self.url, "-D", ADMIN_USER, "-w", ADMIN_PASSWORD, *args],
            ca_file=self.ca_file,
            input_text=input_text,
        )

    def add_ldif(self, text: str) -> None:
        """Add entries over LDAPS as Administrator."""
        self._as_admin("ldapadd", input_text=text)

    def modify_ldif(self, text: str) -> None:
        """Apply LDIF change records over LDAPS as Administrator."""
        self._as_admin("ldapmodify", input_text=text)

    def add_users(self, users: Iterable[AdUser]) -> list[str]:
        """Create users with one ldapadd over LDAPS; returns their DNs in order.

        On a 2-core machine: about 400 users/s without passwords, 45/s with (each
        password is hashed several ways by the DC).
        """
        users = list(users)
        if users:
            self.add_ldif("".join(user_ldif(user) for user in users))
        return [user.dn for user in users]

    def create_ou(self, name: str, parent_dn: str = STAFF_DN) -> str:
        """Create OU=name under parent_dn (default OU=Staff) and return its DN."""
        dn = f"OU={name},{parent_dn}"
        self.add_ldif(f"{_ldif_line('dn', dn)}\nobjectClass: organizationalUnit\n\n")
        return dn

    def delete_tree(self, dn: str) -> None:
        """Delete dn and everything below it."""
        self._as_admin("ldapdelete", "-r", dn)

    def dump(self, base: str | None = None) -> str:
        """Sorted LDIF of every entry under `base` (default: the domain), user
        attributes only, without VOLATILE_ATTRIBUTES, so two dumps compare exactly."""
        return search_dump(
            url=self.url,
            bind_dn=ADMIN_USER,
            password=ADMIN_PASSWORD,
            base=base or BASE_DN,
            ca_file=self.ca_file,
            exclude=VOLATILE_ATTRIBUTES,
        )
