"""A throwaway Samba AD DC for tests: provisioned into a temp dir, LDAPS with a test CA.

Samba listens on the fixed ports 389/636/3268/3269 of 127.0.0.1, so one DC serves a
whole test session (see the `samba_dc` fixture). Tests share it: each should work in
its own OU (`create_ou`) and with user names of its own.

Start-up, about 6-7 s on a 2-core machine:
  1. `samba-tool domain provision` (about 4 s with TDB_NO_FSYNC=1, 6 s without);
  2. smb.conf gets `tls *file` lines pointing at a trustme certificate for 127.0.0.1,
     localhost and dc1.example.test: Samba's own self-signed certificate names only
     DC1.example.test, with no subjectAltName, so a client dialling 127.0.0.1 cannot
     verify it;
  3. OUs, the service account and its ACE are written into sam.ldb with samba-tool
     while the DC is still down;
  4. `samba -i` runs in the foreground with its stdin on a pipe from this process:
     Samba exits when that pipe closes, so it cannot outlive the test run even if the
     run is killed.
"""

from __future__ import annotations

import atexit
import base64
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
REQUIRED_BINARIES = (SAMBA, "samba-tool", "ldapsearch", "ldapadd", "ldapmodify", "ldapdelete")

# Attributes left out of `dump()` because they change without the entry's content
# changing, so a before/after comparison would always differ:
VOLATILE_ATTRIBUTES = frozenset({
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
})

# Marks our samba processes (in /proc/PID/environ) so a leftover can be recognised.
OWNER_ENV = "PERSONA_SYNC_TEST_SAMBA_OWNER"


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


def _leftover_owner(pid: int) -> int | None:
    """The test-process pid recorded in a samba process's environment, if any."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    prefix = f"{OWNER_ENV}=".encode()
    for item in environ:
        if item.startswith(prefix):
            return int(item[len(prefix):])
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        pid for pid in holders
        if pid > 0 and (owner := _leftover_owner(pid)) is not None and not _pid_alive(owner)
    ]
    for pid in orphans:
        try:
            os.killpg(os.getpgid(pid), signal.SIGTERM)
        except OSError:
            pass
        del holders[pid]
    if orphans:
        time.sleep(0.5)
    if holders:
        raise SambaError(
            "Samba AD DC needs ports 389, 636, 3268 and 3269 on 127.0.0.1, but "
            + "; ".join(sorted(holders.values()))
            + ". Stop that service (`sudo bash .ci/install-system-deps` stops and disables"
            " the system slapd/samba) and run the tests again."
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
        self.workdir = Path(tempfile.mkdtemp(prefix="persona-sync-samba-"))
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
            self._timed("provision", self._provision)
            self._timed("configure_tls", self._configure_tls)
            self._timed("create_service_account", self._create_service_account)
            self._timed("launch", self._launch)
        except BaseException:
            self.stop()
            raise
        return self

    def _timed(self, step: str, action: Callable[[], None]) -> None:
        began = time.perf_counter()
        action()
        self.timings[step] = time.perf_counter() - began

    @property
    def _tool_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Test data needs no durability; skipping fsync makes provisioning ~30% faster.
        env["TDB_NO_FSYNC"] = "1"
        env[OWNER_ENV] = str(os.getpid())
        env["KRB5_CONFIG"] = str(self.workdir / "private" / "krb5.conf")
        return env

    def _run(self, command: Sequence[str], *, timeout: float = 120.0) -> str:
        result = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            env=self._tool_env,
            timeout=timeout,
            check=False,
            cwd=self.workdir,
        )
        if result.returncode != 0:
            raise SambaError(
                f"{' '.join(command[:3])} ... exited {result.returncode}:\n"
                f"{result.stdout[-2000:]}{result.stderr[-4000:]}"
            )
        return result.stdout

    def samba_tool(self, *args: str) -> str:
        """Run `samba-tool ARGS` against this DC's database (works running or not)."""
        return self._run(["samba-tool", *args, "-s", str(self.config_file)])

    def _provision(self) -> None:
        d = self.workdir
        for sub in ("run", "ncalrpc", "winbindd", "ntp_signd"):
            (d / sub).mkdir(exist_ok=True)
        self._run([
            "samba-tool", "domain", "provision",
            f"--targetdir={d}", f"--realm={REALM}", f"--domain={NETBIOS_DOMAIN}",
            "--server-role=dc", "--dns-backend=NONE", f"--host-name={HOST_NAME}",
            f"--adminpass={ADMIN_PASSWORD}",
            "--option=interfaces=127.0.0.1",
            "--option=bind interfaces only=yes",
            # Without an explicit list Samba also starts DNS, which aborts with
            # --dns-backend=NONE.
            "--option=server services=ldap",
            f"--option=log file={d}/log.%m",
            f"--option=pid directory={d}/run",
            f"--option=ncalrpc dir={d}/ncalrpc",
            f"--option=winbindd socket directory={d}/winbindd",
            f"--option=ntp signd socket directory={d}/ntp_signd",
        ])

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
        config, count = re.subn(r"^\[global\]\n", lambda m: m.group(0) + settings, config,
                                count=1, flags=re.MULTILINE)
        if count != 1:
            raise SambaError(f"no [global] section in {self.config_file}")
        self.config_file.write_text(config)

    def _create_service_account(self) -> None:
        self.samba_tool("ou", "add", STAFF_DN)
        self.samba_tool("ou", "add", SERVICE_ACCOUNTS_DN)
        self.samba_tool(
            "user", "add", SERVICE_USER, SERVICE_PASSWORD,
            "--userou=OU=Service Accounts",
            "--description=persona-sync service account (least privilege)",
        )
        sid_match = re.search(
            r"^objectSid: (S-1-5-21-[\d-]+)$",
            self.samba_tool("user", "show", SERVICE_USER, "--attributes=objectSid"),
            flags=re.MULTILINE,
        )
        if sid_match is None:
            raise SambaError(f"could not read the objectSid of {SERVICE_USER}")
        self.service_sid = sid_match.group(1)
        # Object ACE, inherited by containers (CI) but effective only on user objects
        # (inherited object type = user class): write property msDS-cloudExtensionAttribute1.
        self.samba_tool(
            "dsacl", "set", f"--objectdn={STAFF_DN}",
            f"--sddl=(OA;CI;WP;{PERSONA_ATTRIBUTE_GUID};{USER_CLASS_GUID};{self.service_sid})",
        )

    def _launch(self) -> None:
        output_path = self.workdir / "samba.out"
        with output_path.open("wb") as output:
            # stdin stays a pipe: `samba -i` exits on EOF there, i.e. when this process
            # ends for any reason. start_new_session gives it a process group to kill.
            self._process = subprocess.Popen(
                [SAMBA, "-i", "-s", str(self.config_file)],
                stdin=subprocess.PIPE,
                stdout=output,
                stderr=output,
                env=self._tool_env,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + self._start_timeout
        last_error = "no attempt yet"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise SambaError(f"samba exited with {code} during start-up:\n"
                                 f"{output_path.read_text()[-4000:]}")
            try:
                self._check_ldaps_bind()
                return
            except (LDAPException, OSError) as error:
                last_error = f"{type(error).__name__}: {error}"
            time.sleep(0.1)
        raise SambaError(f"no verified LDAPS bind to {self.url} within {self._start_timeout} s "
                         f"(last error: {last_error}):\n{output_path.read_text()[-4000:]}")

    def _check_ldaps_bind(self) -> None:
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file))
        server = ldap3.Server(self.url, use_ssl=True, tls=tls, get_info=ldap3.NONE,
                              connect_timeout=2)
        connection = ldap3.Connection(server, user=ADMIN_USER, password=ADMIN_PASSWORD,
                                      receive_timeout=5, raise_exceptions=True)
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
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)  # workers, if any survived
            except ProcessLookupError:
                pass
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
