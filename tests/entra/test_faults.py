"""Server faults on Entra ID, through the CLI: each run ends in success or in one clear
line naming the cause, never a hang, and the journal says exactly what was written.

Faults are counted ("every third request"), never drawn, so each one happens whatever the
order the concurrent batches arrive in.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest
import trustme
from click.testing import Result

from persona_sync.directory.entra_auth import TokenSource
from tests.entra.conftest import Tenant, summary
from tests.fakegraph.faults import Faults

Run = Callable[..., Result]
STAFF = 60
PLANNED = STAFF + 3  # the fixture's CEO, nurse and engineer


def written_once_and_journalled(tenant: Tenant) -> None:
    """Every planned user written exactly once and journalled once, as applied."""
    assert len(tenant.written()) == PLANNED and set(tenant.written().values()) == {1}
    journalled = tenant.journalled()
    assert set(journalled) == set(tenant.written())
    assert set(map(tuple, journalled.values())) == {("applied",)}


def stopped_by(result: Result) -> str:
    """The one line that says why the run stopped (the CLI's prefix, then our message)."""
    [line] = [x for x in result.stderr.splitlines() if "refused" in x]
    return line.split(": ", 1)[1]


@pytest.mark.parametrize(
    "inject",
    [
        pytest.param(lambda f: f.every(3, 429), id="429"),
        pytest.param(lambda f: f.every(3, 503), id="503"),
        pytest.param(lambda f: f.every_request(3, "drop"), id="reset"),
        pytest.param(lambda f: f.every_request(3, "slow"), id="slow"),
    ],
)
def test_a_third_of_requests_faulted_the_sync_completes(
    tenant: Tenant, run_cli: Run, inject: Callable[[Faults], None]
) -> None:
    tenant.add_staff(STAFF)
    tenant.write_config(extra="  timeout: 1\n")  # a slow answer is given up after 1 s
    tenant.fake.faults.retry_after = 0  # Retry-After 1 s: see test_entra's storm test
    inject(tenant.fake.faults)  # reads (the plan's pages, the CAS reads) and writes alike
    result = run_cli("sync")
    assert result.exit_code == 0, result.stderr
    assert summary(result.stderr) == {
        "applied": PLANNED,
        "already set": 0,
        "conflicts": 0,
        "failed": 0,
    }
    faulted = [r for r in tenant.fake.requests if r.status in (None, 429, 503)]
    assert len(faulted) >= 3  # the faults really happened
    written_once_and_journalled(tenant)


@pytest.mark.parametrize(
    "inject",
    [
        pytest.param(lambda f: f.every(3, "applied-504", methods={"PATCH"}), id="sub-504"),
        pytest.param(lambda f: f.every(3, "applied-drop", methods={"PATCH"}), id="dropped"),
        pytest.param(
            lambda f: f.every_request(2, "applied-504", methods={"PATCH"}), id="envelope-504"
        ),
    ],
)
def test_a_write_applied_but_its_answer_lost_is_read_back_never_resent(
    tenant: Tenant, run_cli: Run, inject: Callable[[Faults], None]
) -> None:
    tenant.add_staff(STAFF)
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    inject(tenant.fake.faults)
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 0, result.stderr
    assert summary(result.stderr)["applied"] == PLANNED
    lost = [r for r in tenant.fake.requests if r.method == "PATCH" and r.answer_lost]
    assert len(lost) >= 10
    # One PATCH per user, whatever was lost: the read-back found each lost one applied.
    assert len([r for r in tenant.fake.requests if r.method == "PATCH"]) == PLANNED
    written_once_and_journalled(tenant)
    messages = {r["message"] for r in tenant.journal() if r["type"] == "write"}
    assert "answer lost; read back: written" in messages and messages <= {
        "",
        "answer lost; read back: written",
    }


def test_a_certificate_from_another_ca_names_ca_file(tenant: Tenant, run_cli: Run) -> None:
    other = tenant.root / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    text = tenant.config.read_text().replace(f"ca_file: {tenant.fake.ca_file}", f"ca_file: {other}")
    tenant.config.write_text(text)
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: the TLS certificate of 127.0.0.1:{tenant.fake.port} is not trusted (unable to "
        f"get local issuer certificate): directory.ca_file ({other}) does not hold the CA that "
        "signed it; set directory.ca_file to that CA's certificate (PEM)\n",
    )


@contextlib.contextmanager
def foreign_tls_server() -> Iterator[int]:
    """A TLS listener whose certificate no configured CA signed; yields its port."""
    leaf = trustme.CA().issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)  # so the loop sees `done` (close() does not wake accept())
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(OSError), connection:
                connection.settimeout(5)
                context.wrap_socket(connection, server_side=True).close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        listener.close()


def test_graph_with_an_untrusted_certificate(
    tenant: Tenant, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake identity platform issues tokens for its own resources only: ask for one of
    # those, so the token comes and the Graph connection is what fails.
    monkeypatch.setattr(
        TokenSource, "scope", property(lambda self: f"{tenant.fake.origin}/.default")
    )
    with foreign_tls_server() as port:
        text = tenant.config.read_text().replace(
            f"graph_endpoint: {tenant.fake.origin}", f"graph_endpoint: https://127.0.0.1:{port}"
        )
        tenant.config.write_text(text)
        result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: the TLS certificate of 127.0.0.1:{port} is not trusted (unable to get local "
        f"issuer certificate): directory.ca_file ({tenant.fake.ca_file}) does not hold the CA "
        "that signed it; set directory.ca_file to that CA's certificate (PEM)\n",
    )


def test_an_unknown_host_name_is_named(tenant: Tenant, run_cli: Run) -> None:
    authority = tenant.fake.authority.rsplit("/", 1)[0]
    tenant.config.write_text(
        tenant.config.read_text().replace(
            f"authority_host: {authority}", "authority_host: https://login.persona-sync.invalid"
        )
    )
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: cannot resolve the host name login.persona-sync.invalid "
        "(directory.authority_host): check the name and this machine's DNS\n",
    )


@pytest.mark.parametrize(
    ("offset", "state", "graph_says"),
    [
        (-7200.0, "expired", "Lifetime validation failed, the token is expired."),
        (3600.0, "not yet valid", "Lifetime validation failed, the token is not yet valid."),
    ],
)
def test_token_clock_skew_is_a_clear_error(
    tenant: Tenant, run_cli: Run, offset: float, state: str, graph_says: str
) -> None:
    # msal does not read the access token (it trusts expires_in), so only Graph can tell.
    tenant.fake.identity_clock_offset = offset
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: Graph refused a token just issued by 127.0.0.1:{tenant.fake.port} as {state} "
        f"({graph_says}): the clocks of the token service and of Graph disagree (clock skew); "
        "check that directory.authority_host and graph_endpoint belong to the same cloud, and "
        "retry later\n",
    )
    assert tenant.fake.count("GET") == 1  # the fresh token was refused: no renewal loop


def test_clock_skew_with_a_certificate_credential(tenant: Tenant, run_cli: Run) -> None:
    assert tenant.fake.app is not None
    pem = tenant.root / "app.pem"
    pem.write_text(tenant.fake.app.private_key_pem + tenant.fake.app.certificate_pem)
    tenant.write_config(extra=f"  credential:\n    certificate_file: {pem}\n")
    tenant.fake.identity_clock_offset = 3600.0  # msal signs its assertion by this clock
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: Entra ID refused the certificate credential: its signed assertion is not "
        "within its valid time range (AADSTS700024); this machine's clock is off by more than "
        "5 minutes: set it right (NTP)\n",
    )


def test_clock_skew_within_tolerance_works(tenant: Tenant, run_cli: Run) -> None:
    tenant.fake.identity_clock_offset = 200.0  # Graph allows 5 minutes
    assert run_cli("sync").exit_code == 0
    assert len(tenant.fake.writes) == 3


# 200 users: 10 chunks of 20, at most 4 in flight, so whatever the timing most batches
# reach Graph after the 30th PATCH (at most 80 operations were in flight then).
MANY = 200


def test_a_token_expiring_mid_run_is_renewed(tenant: Tenant, run_cli: Run) -> None:
    tenant.add_staff(MANY)
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    tenant.fake.faults.after(30, tenant.fake.expire_tokens, methods={"PATCH"})
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 0, result.stderr
    assert summary(result.stderr)["applied"] == MANY + 3
    assert any(r.status == 401 for r in tenant.fake.requests)  # it did expire
    tokens = [r for r in tenant.fake.requests if r.path.endswith("/oauth2/v2.0/token")]
    assert len(tokens) == 3  # plan, apply, and the one renewal
    assert len(tenant.written()) == MANY + 3 and set(tenant.written().values()) == {1}
    assert set(map(tuple, tenant.journalled().values())) == {("applied",)}


def test_consent_revoked_mid_run_stops_with_one_message(tenant: Tenant, run_cli: Run) -> None:
    tenant.add_staff(MANY)
    assert run_cli("plan", "-o", "plan.json", "-q").exit_code == 2
    fake, app = tenant.fake, tenant.fake.app
    assert app is not None

    def revoke() -> None:
        fake.grant(app.client_id, [], consent=False)
        fake.expire_tokens()

    fake.faults.after(30, revoke, methods={"PATCH"})
    result = run_cli("apply", "plan.json", "-q")
    assert result.exit_code == 1
    assert stopped_by(result) == (
        "Graph refused the token: it carries no application permissions; grant "
        "User.ReadWrite.All to the app and give admin consent"
    )
    # Written before the revocation: journalled applied; the others journalled as not
    # written, none of them written.
    journalled = tenant.journalled()
    assert set(journalled) == {r["dn"] for r in tenant.journal() if r["type"] == "pending"}
    applied = {dn for dn, results in journalled.items() if results == ["applied"]}
    assert applied == set(tenant.written()) and 30 <= len(applied) <= 30 + 80
    assert set(tenant.written().values()) == {1}
    others = {tuple(r) for dn, r in journalled.items() if dn not in applied}
    assert others and all(len(r) == 1 and r[0] in ("failed", "skipped") for r in others)


def test_an_app_that_may_not_write_stops_at_the_first_refusal(
    tenant: Tenant, run_cli: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant.add_staff(200)
    reader = tenant.fake.new_app(tenant.root / "reader", roles=("User.Read.All",))
    assert tenant.fake.app is not None
    tenant.config.write_text(
        tenant.config.read_text().replace(tenant.fake.app.client_id, reader.client_id)
    )
    monkeypatch.setenv("PERSONA_SYNC_CLIENT_SECRET", reader.secret)
    result = run_cli("sync", "-q")
    assert result.exit_code == 1
    assert stopped_by(result) == (
        "Graph refused to write (403 Authorization_RequestDenied: Insufficient "
        "privileges to complete the operation.); the app needs the application permission "
        "User.ReadWrite.All with admin consent"
    )
    assert len(result.stderr.splitlines()) <= 3  # one message, not one line per user
    assert tenant.fake.writes == []
    assert tenant.fake.count("PATCH") <= 4 * 20  # the batches in flight, then no more
    journalled = tenant.journalled()
    assert len(journalled) == 203 and all(len(r) == 1 for r in journalled.values())
    assert {r[0] for r in journalled.values()} <= {"failed", "skipped"}
