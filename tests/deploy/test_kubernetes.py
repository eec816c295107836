"""deploy/kubernetes stays true: the manifests fit together, the config loads as mounted,
the rules are the repository's, and the pod can run on a read-only root as the image's user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner

from persona_sync.cli.main import cli
from persona_sync.config import EntraDirectoryConfig, LdapDirectoryConfig, load_config
from tests.conftest import DEFAULT_RULES, REPO
from tests.deploy.commands import accepts
from tests.deploy.containerfile import parse

KUBERNETES = REPO / "deploy" / "kubernetes"


def manifests() -> dict[str, Any]:
    """The kustomization's resources by kind."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    found: dict[str, Any] = {}
    for name in kustomization["resources"]:
        document = yaml.safe_load((KUBERNETES / name).read_text())
        found[document["kind"]] = document
    assert set(found) == {"ConfigMap", "Secret", "PersistentVolumeClaim", "CronJob"}
    return found


def pod() -> dict[str, Any]:
    job = yaml.safe_load((KUBERNETES / "cronjob.yaml").read_text())
    spec: dict[str, Any] = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def container_env() -> dict[str, str]:
    return {e["name"]: e.get("value", "from-secret") for e in pod()["containers"][0]["env"]}


def mount(tmp_path: Path) -> Path:
    """Lay out the ConfigMap and the Secret under tmp_path as the kubelet mounts them."""
    found, spec = manifests(), pod()
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    for volume in spec["volumes"]:
        if "configMap" in volume:
            data, items = found["ConfigMap"]["data"], volume["configMap"]["items"]
            assert sorted(i["key"] for i in items) == sorted(data), "every key is mounted"
            files = {i["path"]: data[i["key"]] for i in items}
        elif "secret" in volume:
            files = dict(found["Secret"]["stringData"])
        else:
            continue
        for path, text in files.items():
            target = tmp_path / mounts[volume["name"]].lstrip("/") / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return tmp_path


def test_kubernetes_cronjob(tmp_path: Path) -> None:
    container = pod()["containers"][0]
    accepts(container["args"])
    env = container_env()
    config = tmp_path / "persona-sync.yaml"
    config.write_text(
        f"rules: {DEFAULT_RULES}\ndirectory: {{type: file, path: x.ldif}}\n"
        "targets: {persona: msDS-cloudExtensionAttribute1}\n"
    )
    loaded = load_config(config, env)
    assert loaded.state_dir == Path(env["PERSONA_SYNC_STATE_DIR"])


def test_manifests_fit_together() -> None:
    found, spec = manifests(), pod()
    job = found["CronJob"]
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["config"]["configMap"]["name"] == found["ConfigMap"]["metadata"]["name"]
    assert volumes["secret"]["secret"]["secretName"] == found["Secret"]["metadata"]["name"]
    claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
    assert claim == found["PersistentVolumeClaim"]["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["state"] == container_env()["PERSONA_SYNC_STATE_DIR"]
    args = spec["containers"][0]["args"]
    assert args[args.index("--config") + 1] == "/etc/persona-sync/persona-sync.yaml"
    assert mounts["config"] == "/etc/persona-sync"


def test_mounted_config_loads_and_names_the_secret(tmp_path: Path) -> None:
    root = mount(tmp_path)
    config = root / "etc/persona-sync/persona-sync.yaml"
    loaded = load_config(config, container_env())
    directory = loaded.spec.directory
    assert isinstance(directory, LdapDirectoryConfig)
    assert directory.bind.password_file is not None
    secret = Path(tmp_path, str(directory.bind.password_file).lstrip("/"))
    assert secret.read_text() == manifests()["Secret"]["stringData"]["bind-password"]
    assert loaded.rules_path == root / "etc/persona-sync/rules"
    result = CliRunner().invoke(cli, ["validate", str(loaded.rules_path)])
    assert result.exit_code == 0, result.output


def test_rules_are_the_repository_rules(tmp_path: Path) -> None:
    rules = mount(tmp_path) / "etc/persona-sync/rules"
    for path in sorted(DEFAULT_RULES.glob("*.yaml")):
        mounted = rules / path.name
        assert mounted.is_file(), f"deploy/kubernetes/configmap.yaml lacks {path.name}"
        assert mounted.read_text() == path.read_text(), (
            f"deploy/kubernetes/configmap.yaml: {path.name} differs from rules/{path.name}; "
            "copy it again"
        )
    assert sorted(p.name for p in rules.iterdir()) == sorted(
        p.name for p in DEFAULT_RULES.glob("*.yaml")
    )


def test_runs_as_the_image_user_on_a_read_only_root() -> None:
    spec = pod()
    _, stages = parse((REPO / "deploy/container/Containerfile").read_text())
    uid, gid = (int(n) for n in stages[-1].last("USER").text.split(":"))
    context = spec["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"], context["fsGroup"]) == (uid, gid, gid)
    container = spec["containers"][0]["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert spec["automountServiceAccountToken"] is False
    # Every folder the run writes to is a writable volume; the rest is mounted read-only.
    writable = [
        m["mountPath"] for m in spec["containers"][0]["volumeMounts"] if not m.get("readOnly")
    ]
    env = container_env()
    for name in ("PERSONA_SYNC_STATE_DIR", "HOME", "TMPDIR"):
        assert any(Path(env[name]).is_relative_to(w) for w in writable), name
    secret = next(v for v in spec["volumes"] if "secret" in v)["secret"]
    assert secret["defaultMode"] == 0o440  # the pod's group (fsGroup) reads it, no one else


def test_grace_period_covers_the_backend_timeouts() -> None:
    """SIGTERM waits for answers in flight, each bounded by the backend's timeout."""
    timeouts = [
        LdapDirectoryConfig.model_fields["timeout"].default,
        EntraDirectoryConfig.model_fields["timeout"].default,
    ]
    assert timeouts == [30, 60]  # the figures quoted in cronjob.yaml's comment
    assert pod()["terminationGracePeriodSeconds"] >= max(timeouts) + 30
    text = (KUBERNETES / "cronjob.yaml").read_text()
    assert "LDAP 30 s, Entra ID 60 s" in text
