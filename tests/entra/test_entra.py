"""The Entra ID backend: real msal and msgraph-sdk over HTTPS against the local fake."""

from __future__ import annotations

import json
from collections.abc import Callable

from click.testing import Result

from tests.entra.conftest import ON_PREMISES, Tenant, summary

Run = Callable[..., Result]


def test_plan_apply_no_op_and_synced_users_skipped(tenant: Tenant, run_cli: Run) -> None:
    planned = run_cli("plan", "-o", "plan.json")
    assert planned.exit_code == 2, planned.stderr
    plan = json.loads((tenant.root / "plan.json").read_text())
    assert sorted((c["employee"], c["old"], c["new"]) for c in plan["changes"]) == [
        ("ceo@contoso.example", None, "vip"),
        ("eng@contoso.example", None, "engineer"),
        ("nurse@contoso.example", None, "clinician"),
    ]
    assert plan["skipped"] == [
        {
            "employee": "synced@contoso.example",
            "dn": tenant.users["synced"],
            "scenario": "persona",
            "attribute": ON_PREMISES,
            "old": None,
            "new": "frontline",
            "reason": "mastered on-premises (synced from Active Directory): write the persona "
            "in AD; Entra Connect carries it to Entra ID",
        }
    ]
    assert plan["provenance"]["directory"] == f"entra:{tenant.fake.tenant_id}"
    assert tenant.fake.writes == []  # planning writes nothing
    applied = run_cli("apply", "plan.json")
    assert applied.exit_code == 0, applied.stderr
    assert {tenant.value(n) for n in ("boss", "nurse", "engineer")} == {
        "vip",
        "clinician",
        "engineer",
    }
    assert tenant.value("synced") is None and tenant.value("disabled") is None
    assert len(tenant.fake.writes) == 3
    again = run_cli("plan", "--format", "json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["changes"] == []


def test_concurrent_change_is_a_conflict_and_rollback_restores(
    tenant: Tenant, run_cli: Run
) -> None:
    run_cli("plan", "-o", "plan.json", "-q")
    tenant.fake.set_property(tenant.users["nurse"], ON_PREMISES, "tech-support")
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 3, result.stderr
    assert result.stderr.splitlines()[0] == (
        f"conflict: nurse@contoso.example ({tenant.users['nurse']}) {ON_PREMISES}: value changed "
        "since the plan: expected (empty), found 'tech-support'"
    )
    assert tenant.value("nurse") == "tech-support"
    run_id = json.loads(run_cli("runs", "--format", "json").stdout)[0]["run_id"]
    rolled = run_cli("rollback", run_id)
    assert rolled.exit_code == 0, rolled.stderr
    assert [tenant.value(n) for n in ("boss", "engineer", "nurse")] == [None, None, "tech-support"]


def test_throttling_storm_finishes_in_one_pass_and_writes_nothing_twice(
    tenant: Tenant, run_cli: Run
) -> None:
    tenant.add_staff(60, "u")
    run_cli("plan", "-o", "plan.json", "-q")
    tenant.fake.faults.every(3, 429, methods={"PATCH"})  # a third of writes, Retry-After 1 s
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 0, result.stderr
    assert summary(result.stderr) == {"applied": 63, "already set": 0, "conflicts": 0, "failed": 0}
    # Exactly every third PATCH was throttled: 63 applied + 31 refused, none resent after
    # success (94 is the only count with 94 - 94 // 3 == 63 whose last one succeeds).
    patches = [r.status for r in tenant.fake.requests if r.method == "PATCH"]
    assert (len(patches), patches.count(429)) == (94, 31)
    assert set(tenant.written().values()) == {1} and len(tenant.written()) == 63
    assert set(map(tuple, tenant.journalled().values())) == {("applied",)}


def test_directory_extension_target(tenant: Tenant, run_cli: Run) -> None:
    assert tenant.fake.app is not None
    full = f"extension_{tenant.fake.app.client_id.replace('-', '')}_persona"
    tenant.write_config(target=full)
    dry = run_cli("entra", "create-extension", "persona", "--dry-run")
    assert (dry.exit_code, dry.stdout) == (
        0,
        f"would create {full} (String, on users); run again without --dry-run\n",
    )
    check = run_cli("check-connection")
    assert check.exit_code == 1
    assert (
        f"FAIL  target        {full}: missing: run `persona-sync entra create-extension persona`"
        in check.stdout
    )
    created = run_cli("entra", "create-extension", "persona")
    assert (created.exit_code, created.stdout) == (
        0,
        f"created {full}; use it as the target attribute\n",
    )
    assert run_cli("entra", "create-extension", "persona").stdout == f"{full} already exists\n"
    assert run_cli("check-connection").exit_code == 0
    assert run_cli("sync").exit_code == 0
    # Synced users are written too: extensions are cloud attributes.
    assert tenant.value("synced", full) == "frontline"
    assert tenant.value("nurse", full) == "clinician"


def test_authentication_errors_are_clear(tenant: Tenant, run_cli: Run, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PERSONA_SYNC_CLIENT_SECRET", "wrong")
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        (
            f"error: Entra ID refused the client secret of app {tenant.fake.app.client_id} "  # type: ignore[union-attr]
            "(AADSTS7000215: invalid secret); set a current one\n"
        ),
    )
    monkeypatch.delenv("PERSONA_SYNC_CLIENT_SECRET")
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        (
            "error: no client secret: set the environment variable PERSONA_SYNC_CLIENT_SECRET, or "
            "name a file with the secret (never put it on the command line)\n"
        ),
    )


def test_certificate_credential(tenant: Tenant, run_cli: Run) -> None:
    assert tenant.fake.app is not None
    pem = tenant.root / "app.pem"
    pem.write_text(tenant.fake.app.private_key_pem + tenant.fake.app.certificate_pem)
    tenant.write_config(extra=f"  credential:\n    certificate_file: {pem}\n")
    result = run_cli("plan", "-q")
    assert result.exit_code == 2, result.stderr


def test_unavailable_and_dropped_requests_complete_without_double_writes(
    tenant: Tenant, run_cli: Run
) -> None:
    tenant.add_staff(40, "d", jobTitle="Registered Nurse", officeLocation="North Clinic")
    run_cli("plan", "-o", "plan.json", "-q")
    faults = tenant.fake.faults
    faults.retry_after = 0
    # Counted, not drawn: the faults happen whatever order the batches arrive in.
    faults.every(5, 503, methods={"GET", "PATCH"})  # every fifth read or write
    faults.every_request(4, "drop", methods={"GET", "PATCH"})  # a $batch counts once
    result = run_cli("apply", "plan.json")
    assert result.exit_code == 0, result.stderr
    assert summary(result.stderr) == {"applied": 43, "already set": 0, "conflicts": 0, "failed": 0}
    graph = [r for r in tenant.fake.requests if r.path.startswith("/v1.0")]
    assert any(r.status is None and r.batch_id is None for r in graph)  # connections dropped
    assert any(r.status == 503 and r.method == "PATCH" for r in graph)
    assert set(tenant.written().values()) == {1} and len(tenant.written()) == 43
    assert set(map(tuple, tenant.journalled().values())) == {("applied",)}


def _app(tenant: Tenant, roles: tuple[str, ...], consent: bool = True) -> str:
    app = tenant.fake.new_app(tenant.root / "other-app", roles=roles, consent=consent)
    tenant.write_config()
    text = tenant.config.read_text().replace(tenant.fake.app.client_id, app.client_id)  # type: ignore[union-attr]
    tenant.config.write_text(text)
    import os

    os.environ["PERSONA_SYNC_CLIENT_SECRET"] = app.secret
    return app.client_id


def test_missing_consent_and_missing_permission_name_what_to_grant(
    tenant: Tenant, run_cli: Run, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PERSONA_SYNC_CLIENT_SECRET", "placeholder")
    _app(tenant, ("User.ReadWrite.All",), consent=False)
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        (
            "error: Graph refused the token: it carries no application permissions; grant "
            "User.ReadWrite.All to the app and give admin consent\n"
        ),
    )
    _app(tenant, ("Group.Read.All",))
    result = run_cli("plan")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: Graph refused: Insufficient privileges to complete the operation. "
        "(Authorization_RequestDenied); the app needs the application permission "
        "User.ReadWrite.All (or User.Read.All to plan) with admin consent\n"
    )


def test_unknown_tenant(tenant: Tenant, run_cli: Run) -> None:
    tenant.config.write_text(
        tenant.config.read_text().replace(
            f"tenant_id: {tenant.fake.tenant_id}", "tenant_id: 00000000-0000-0000-0000-000000000000"
        )
    )
    result = run_cli("plan")
    assert (result.exit_code, result.stderr) == (
        1,
        (
            "error: tenant 00000000-0000-0000-0000-000000000000 not found at "
            f"{tenant.fake.authority.rsplit('/', 1)[0]} (check directory.tenant_id and "
            "authority_host)\n"
        ),
    )


def test_scope_by_group_and_filter(tenant: Tenant, run_cli: Run) -> None:
    group = tenant.fake.add_group([tenant.users["nurse"], tenant.users["engineer"]])
    _app(tenant, ("User.ReadWrite.All", "GroupMember.Read.All"))
    tenant.config.write_text(
        tenant.config.read_text().replace("targets:", f"  scope:\n    group_id: {group}\ntargets:")
    )
    plan = json.loads(run_cli("plan", "--format", "json").stdout)
    assert sorted(c["employee"] for c in plan["changes"]) == [
        "eng@contoso.example",
        "nurse@contoso.example",
    ]
    tenant.config.write_text(
        tenant.config.read_text().replace(
            f"    group_id: {group}\n", "    filter: startswith(userPrincipalName,'ceo')\n"
        )
    )
    plan = json.loads(run_cli("plan", "--format", "json").stdout)
    assert [c["employee"] for c in plan["changes"]] == ["ceo@contoso.example"]


def test_commands_without_entra_never_import_the_graph_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from persona_sync.cli.main import cli; "
        "from persona_sync.rules.loader import load_rules; import persona_sync.plan; "
        "import persona_sync.directory.files; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('msal', 'msgraph', "
        "'msgraph_core', 'kiota_http')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"


def test_custom_security_attribute_target(tenant: Tenant, run_cli: Run) -> None:
    tenant.fake.define_custom_security_attribute("Persona", "Routing")
    _app(tenant, ("User.ReadWrite.All", "CustomSecAttributeAssignment.ReadWrite.All"))
    target = "customSecurityAttributes.Persona.Routing"
    tenant.config.write_text(
        tenant.config.read_text().replace(f"persona: {ON_PREMISES}", f"persona: {target}")
    )
    synced = run_cli("sync")
    assert synced.exit_code == 0, synced.stderr
    assert (
        (tenant.fake.users[tenant.users["nurse"]]["customSecurityAttributes"]["Persona"]["Routing"])
        == "clinician"
    )
    # Custom security attributes are cloud attributes: synced users are written too.
    assert (
        (
            tenant.fake.users[tenant.users["synced"]]["customSecurityAttributes"]["Persona"][
                "Routing"
            ]
        )
        == "frontline"
    )
    assert json.loads(run_cli("plan", "--format", "json").stdout)["changes"] == []


def test_token_roles_are_read_from_a_jwt() -> None:
    import base64

    from persona_sync.directory.entra_checks import token_roles

    def jwt(claims: dict[str, object]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return f"eyJhbGciOiJub25lIn0.{body}.signature"

    assert token_roles(jwt({"roles": ["User.ReadWrite.All", "Group.Read.All"]})) == [
        "User.ReadWrite.All",
        "Group.Read.All",
    ]
    assert token_roles(jwt({"aud": "x"})) == []
    assert token_roles("opaque-token") is None
    assert token_roles("a.!!!.c") is None


def test_check_connection_on_entra(tenant: Tenant, run_cli: Run) -> None:
    result = run_cli("check-connection")
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"ok    token         app {tenant.fake.app.client_id} in tenant "  # type: ignore[union-attr]
        f"{tenant.fake.tenant_id}"
    )
    assert lines[1].startswith("ok    permissions   not readable from the token")
    assert lines[2] == f"ok    target        {ON_PREMISES}: built into Entra ID"
    assert lines[3] == "ok    employees     4 read, 4 in scope, 0 out of scope"
