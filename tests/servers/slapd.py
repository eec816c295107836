"""A throwaway OpenLDAP slapd for tests: own temp dir, free ports, test CA, persona schema.

    with SlapdServer() as server:
        server.add_ldif(...)
        ... point the code under test at server.url / server.ldaps_url ...
        before = server.dump()

LDIF given to `add_ldif` before `start()` is bulk-loaded with `slapadd` (100,000 users
in about a second); after `start()` it goes through `ldapadd` like any client write.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from .clients import ldap_tool_env, run_ldap_tool, search_dump
from .tls import write_tls_files

BASE_DN = "dc=example,dc=com"
ADMIN_DN = f"cn=admin,{BASE_DN}"
ADMIN_PASSWORD = "slapd-admin-secret"
PEOPLE_DN = f"ou=People,{BASE_DN}"
SERVICE_ACCOUNTS_DN = f"ou=Service Accounts,{BASE_DN}"
GROUPS_DN = f"ou=Groups,{BASE_DN}"
SERVICE_DN = f"uid=svc-persona,{SERVICE_ACCOUNTS_DN}"
SERVICE_PASSWORD = "svc-persona-secret"

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
REQUIRED_BINARIES = (SLAPD, SLAPADD, "ldapsearch", "ldapadd", "ldapmodify")

# A UUID-derived OID arc (2.25.<uuid as integer>, ITU-T X.667): private to this project
# without registering an enterprise number.
PERSONA_OID_ARC = "2.25.287846761816365021023379863221553841209"

PERSONA_SCHEMA = f"""\
attributetype ( {PERSONA_OID_ARC}.1.1 NAME 'personaName'
    DESC 'IT service persona assigned by persona-sync'
    EQUALITY caseIgnoreMatch
    SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{{256}}
    SINGLE-VALUE )

attributetype ( {PERSONA_OID_ARC}.1.2 NAME 'personaTags'
    DESC 'multi-valued on purpose: persona-sync must refuse it as a target'
    EQUALITY caseIgnoreMatch
    SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{{256}} )

objectclass ( {PERSONA_OID_ARC}.2.1 NAME 'personaHolder'
    DESC 'an entry that can carry a persona'
    SUP top AUXILIARY
    MAY ( personaName $ personaTags ) )
"""

# Least privilege for the service account: it may write personaName (and add the
# personaHolder class that allows it) on entries under ou=People, nothing else.
# Any authenticated identity may read; anonymous may only bind and read the rootDSE
# and schema (ldap3 reads both on connect).
ACCESS_RULES = f"""\
access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read
access to attrs=userPassword
    by anonymous auth
    by * none
access to dn.subtree="{PEOPLE_DN}" attrs=personaName
    by dn.exact="{SERVICE_DN}" write
    by users read
    by * none
access to dn.subtree="{PEOPLE_DN}" attrs=objectClass val=personaHolder
    by dn.exact="{SERVICE_DN}" write
    by users read
    by * none
access to *
    by users read
    by * none
"""


class SlapdError(RuntimeError):
    """slapd could not be configured or started; the message carries its output."""


def ssha(password: str) -> str:
    """RFC 2307 {SSHA} hash, so no test password sits in the database in clear."""
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def _base_ldif() -> str:
    return f"""\
dn: {BASE_DN}
objectClass: top
objectClass: dcObject
objectClass: organization
dc: example
o: Example Corp

dn: {PEOPLE_DN}
objectClass: organizationalUnit
ou: People

dn: {SERVICE_ACCOUNTS_DN}
objectClass: organizationalUnit
ou: Service Accounts

dn: {GROUPS_DN}
objectClass: organizationalUnit
ou: Groups

dn: {SERVICE_DN}
objectClass: account
objectClass: simpleSecurityObject
uid: svc-persona
description: persona-sync service account (least privilege)
userPassword: {ssha(SERVICE_PASSWORD)}

"""


def _free_ports(count: int) -> list[int]:
    """Ask the kernel for `count` distinct free loopback ports."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:
    """Run in the child before exec: SIGTERM it when the test process dies, even by
    SIGKILL, so no slapd outlives a crashed or interrupted test run."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class SlapdServer:
    """One slapd with the persona schema, base entries, service account and TLS.

    Attributes: url (ldap://, StartTLS available), ldaps_url, ca_file, base_dn,
    admin_dn/admin_password (rootdn), people_dn, service_dn/service_password
    (may write only personaName under ou=People), workdir.
    """

    base_dn = BASE_DN
    admin_dn = ADMIN_DN
    admin_password = ADMIN_PASSWORD
    people_dn = PEOPLE_DN
    service_accounts_dn = SERVICE_ACCOUNTS_DN
    groups_dn = GROUPS_DN
    service_dn = SERVICE_DN
    service_password = SERVICE_PASSWORD

    def __init__(
        self,
        *,
        start_timeout: float = 10.0,
        audit_log: bool = False,
        monitor: bool = False,
        constraints: Sequence[str] = (),
        syncprov: bool = False,
        sessionlog: int = 0,
    ) -> None:
        """audit_log: record every successful write in `audit_log_file` (slapo-auditlog);
        monitor: serve cn=Monitor to the admin (for `open_connections`);
        constraints: slapo-constraint rules, e.g. "personaName regex ^[a-z-]+$", which the
        server enforces with constraintViolation (19);
        syncprov: load slapo-syncprov (contextCSN on the suffix, syncrepl refreshes);
        sessionlog: with syncprov, remember that many deletes, so a refresh answers with
        the deleted entries (a delete phase) instead of every entry still present."""
        self.workdir = Path(tempfile.mkdtemp(prefix="persona-sync-slapd-"))
        self._start_timeout = start_timeout
        self._audit_log = audit_log
        self._monitor = monitor
        self._constraints = tuple(constraints)
        self._syncprov = syncprov
        self._sessionlog = sessionlog
        self.audit_log_file = self.workdir / "audit.ldif"
        self._process: subprocess.Popen[bytes] | None = None
        self._bulk_ldif: list[str] = [_base_ldif()]
        self.port = 0
        self.ldaps_port = 0
        tls = write_tls_files(self.workdir / "tls")
        self.ca_file = tls.ca_file
        (self.workdir / "db").mkdir()
        (self.workdir / "persona.schema").write_text(PERSONA_SCHEMA)
        self.config_file = self.workdir / "slapd.conf"
        self.config_file.write_text(self._config(tls.cert_file, tls.key_file))

    # -- configuration -------------------------------------------------------------

    def _config(self, cert_file: Path, key_file: Path) -> str:
        schema_dir = "/etc/ldap/schema"
        return f"""\
include     {schema_dir}/core.schema
include     {schema_dir}/cosine.schema
include     {schema_dir}/inetorgperson.schema
include     {schema_dir}/nis.schema
include     {self.workdir}/persona.schema
modulepath  /usr/lib/ldap
moduleload  back_mdb
pidfile     {self.workdir}/slapd.pid
sizelimit   unlimited
TLSCACertificateFile  {self.ca_file}
TLSCertificateFile    {cert_file}
TLSCertificateKeyFile {key_file}

database    mdb
maxsize     1073741824
suffix      "{BASE_DN}"
rootdn      "{ADMIN_DN}"
rootpw      {ssha(ADMIN_PASSWORD)}
directory   {self.workdir}/db
dbnosync
index       objectClass eq
index       uid eq
index       entryUUID eq
index       entryCSN eq
index       personaName eq

{ACCESS_RULES}{self._extra_config()}"""

    def _extra_config(self) -> str:
        """The optional parts: the audit log overlay (on the data database, so it must
        follow that database's lines) and the monitor database."""
        extra = ""
        if self._constraints:
            extra += "\nmoduleload  constraint\noverlay     constraint\n" + "".join(
                f"constraint_attribute {rule}\n" for rule in self._constraints
            )
        if self._syncprov:
            extra += "\nmoduleload  syncprov\noverlay     syncprov\n"
            if self._sessionlog:
                extra += f"syncprov-sessionlog {self._sessionlog}\n"
        if self._audit_log:
            # slapo-auditlog appends each successful write as LDIF, in the write's own
            # thread before the answer goes out (even when the client is already gone).
            extra += (
                f"\nmoduleload  auditlog\noverlay     auditlog\nauditlog    {self.audit_log_file}\n"
            )
        if self._monitor:
            extra += (
                "\ndatabase    monitor\n"
                f'access to dn.subtree="cn=Monitor" by dn.exact="{ADMIN_DN}" read by * none\n'
            )
        return extra

    # -- life cycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> SlapdServer:
        """Bulk-load pending LDIF with slapadd, then start slapd and wait until it
        accepts connections on both ports."""
        if self._process is not None:
            raise SlapdError("slapd already started")
        atexit.register(self.stop)
        try:
            self._slapadd("".join(self._bulk_ldif))
            self._bulk_ldif.clear()
            # Another process may take a port between our probe and slapd's bind: retry.
            for attempt in range(3):
                try:
                    self._launch()
                    return self
                except SlapdError as error:
                    if "Address already in use" not in str(error) or attempt == 2:
                        raise
        except BaseException:
            self.stop()
            raise
        raise AssertionError("unreachable")

    def _slapadd(self, ldif: str) -> None:
        ldif_file = self.workdir / "bulk.ldif"
        ldif_file.write_text(ldif)
        result = subprocess.run(
            [SLAPADD, "-q", "-f", str(self.config_file), "-l", str(ldif_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        ldif_file.unlink()
        if result.returncode != 0:
            raise SlapdError(f"slapadd exited {result.returncode}:\n{result.stderr.strip()}")

    def _launch(self, keep_ports: bool = False) -> None:
        if not keep_ports:
            self.port, self.ldaps_port = _free_ports(2)
        stderr_path = self.workdir / "slapd.stderr"
        with stderr_path.open("wb") as stderr:
            # `-d none` keeps slapd in the foreground and still prints configuration and
            # start-up errors; `-d 0` would hide them.
            self._process = subprocess.Popen(
                [
                    SLAPD,
                    "-d",
                    "none",
                    "-h",
                    f"{self.url}/ {self.ldaps_url}/",
                    "-f",
                    str(self.config_file),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                cwd=self.workdir,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise SlapdError(f"slapd exited during start-up:\n{stderr_path.read_text()}")
            if _accepts_connections(self.port) and _accepts_connections(self.ldaps_port):
                return
            time.sleep(0.01)
        self._terminate()
        raise SlapdError(
            f"slapd did not accept connections within {self._start_timeout} s:\n"
            f"{stderr_path.read_text()}"
        )

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop slapd with `sig` (SIGKILL: no goodbye to clients), keeping its database and
        ports for `restart`."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            process.wait()

    def restart(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop slapd (SIGTERM: a clean stop; SIGKILL: a crash) and start it again on the
        same ports with the same database; returns once it accepts connections."""
        self.kill(sig)
        self._launch(keep_ports=True)

    def pause(self) -> None:
        """Freeze slapd (SIGSTOP): it answers nothing until `resume`, as a server that
        stalls; clients' requests wait in their sockets."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop slapd and delete its directory. Safe to call more than once."""
        self._terminate()
        shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> SlapdServer:
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
        """Environment for running ldapsearch/ldapmodify yourself against this server."""
        return ldap_tool_env(self.ca_file)

    def add_ldif(self, text: str) -> None:
        """Add entries: bulk via slapadd before start(), via ldapadd as admin after."""
        if self._process is None:
            self._bulk_ldif.append(text if text.endswith("\n\n") else text.rstrip("\n") + "\n\n")
            return
        self._as_admin("ldapadd", text)

    def modify_ldif(self, text: str) -> None:
        """Apply LDIF change records (changetype: modify/add/delete) as admin."""
        self._as_admin("ldapmodify", text)

    def _as_admin(self, tool: str, text: str) -> None:
        run_ldap_tool(
            [tool, "-x", "-H", self.url, "-D", ADMIN_DN, "-w", ADMIN_PASSWORD],
            ca_file=self.ca_file,
            input_text=text,
        )

    def open_connections(self) -> int:
        """Client connections slapd still holds, the one asking included (needs
        monitor=True). A connection closed by its client stays until the operations it
        had started are finished, so 1 means no write of an earlier client is pending."""
        output = run_ldap_tool(
            [
                "ldapsearch", "-LLL", "-x", "-H", self.url, "-D", ADMIN_DN, "-w",
                ADMIN_PASSWORD, "-b", "cn=Connections,cn=Monitor", "-s", "one",
                "(objectClass=monitorConnection)", "1.1",
            ],
            ca_file=self.ca_file,
        )  # fmt: skip
        return sum(1 for line in output.splitlines() if line.startswith("dn:"))

    def dump(self, base: str | None = None) -> str:
        """Sorted LDIF of every entry under `base` (default: the suffix), user
        attributes only, so two dumps compare exactly."""
        return search_dump(
            url=self.url,
            bind_dn=ADMIN_DN,
            password=ADMIN_PASSWORD,
            base=base or BASE_DN,
            ca_file=self.ca_file,
        )
