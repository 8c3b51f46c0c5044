"""config/ as the pinned kubectl renders it (`kubectl kustomize`): `config/default` runs the reconciler with
flags its parser accepts, probes on the metrics port, a hardened pod and least-privilege RBAC; `config/shards`
runs three shards on the shared RBAC. The Dockerfile and dashboard checks that need no tool are in
tests/devenv/test_deploy_config.py."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devenv.processes import tools_bin
from reconciler.config import add_run_arguments, run_config

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "canaryapp-system"
RECONCILER = "canaryapp-reconciler"


def render(folder: str) -> dict[tuple[str, str], dict[str, Any]]:
    """`kubectl kustomize config/<folder>` with the pinned kubectl, by (kind, name)."""
    kubectl = tools_bin() / "kubectl"
    if not kubectl.exists():
        pytest.fail(f"{kubectl} is missing: run `make tools` (it builds the pinned kubectl)")
    result = subprocess.run(
        [str(kubectl), "kustomize", str(ROOT / "config" / folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    objects = [document for document in yaml.safe_load_all(result.stdout) if document]
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in objects}


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict[str, Any]]:
    return render("default")


def test_config_default_renders_everything_the_reconciler_needs(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    assert set(rendered) == {
        ("CustomResourceDefinition", "canaryapps.canary.atze.io"),
        ("CustomResourceDefinition", "metrictemplates.canary.atze.io"),
        ("CustomResourceDefinition", "clustermetrictemplates.canary.atze.io"),
        ("Namespace", NAMESPACE),
        ("ServiceAccount", RECONCILER),
        ("ClusterRole", RECONCILER),
        ("ClusterRoleBinding", RECONCILER),
        ("Role", "canaryapp-leader-election"),
        ("RoleBinding", "canaryapp-leader-election"),
        ("PersistentVolumeClaim", "canaryapp-state"),
        ("Deployment", RECONCILER),
        ("Service", "canaryapp-reconciler-metrics"),
    }
    for plural in ("canaryapps", "metrictemplates", "clustermetrictemplates"):
        crd_file = yaml.safe_load((ROOT / "crds" / f"canary.atze.io_{plural}.yaml").read_text())
        assert rendered["CustomResourceDefinition", f"{plural}.canary.atze.io"]["spec"] == crd_file["spec"]
    for (kind, _), obj in rendered.items():
        if kind not in {"CustomResourceDefinition", "Namespace", "ClusterRole", "ClusterRoleBinding"}:
            assert obj["metadata"]["namespace"] == NAMESPACE, kind


def container(rendered: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = rendered["Deployment", RECONCILER]["spec"]["template"]["spec"][
        "containers"
    ]
    assert len(containers) == 1
    return containers[0]


def parse_run_command(command: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="canaryapp", exit_on_error=False)
    add_run_arguments(parser)
    return parser.parse_args(command)


def test_the_deployment_runs_flags_the_reconciler_accepts(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    reconciler = container(rendered)
    assert reconciler["image"] == "canaryapp:latest"
    command = reconciler["command"]
    assert command[:2] == ["canaryapp", "run"]
    args = parse_run_command(command[2:])
    assert args.leader_elect is True
    assert args.log_format == "json"
    assert args.state_dir == "/var/lib/canaryapp"
    assert args.metrics_address == "0.0.0.0:8080"
    assert rendered["Deployment", RECONCILER]["spec"]["replicas"] == 1


def test_every_canaryapp_variable_of_the_deployment_is_read_by_the_parser(
    rendered: dict[tuple[str, str], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = [env["name"] for env in container(rendered)["env"] if env["name"].startswith("CANARYAPP_")]
    assert {"CANARYAPP_BACKEND_URL", "CANARYAPP_LEASE_NAMESPACE"} <= set(variables)
    for variable in variables:
        monkeypatch.setenv(variable, f"value-of-{variable}")
    parsed = vars(parse_run_command([]))
    for variable in variables:
        assert f"value-of-{variable}" in parsed.values(), f"{variable} is not read by reconciler/config.py"


def test_secrets_come_from_the_canaryapp_pulumi_secret_which_is_not_committed(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    env = {variable["name"]: variable for variable in container(rendered)["env"]}
    assert env["PULUMI_CONFIG_PASSPHRASE"]["valueFrom"] == {
        "secretKeyRef": {"name": "canaryapp-pulumi", "key": "passphrase"}
    }
    assert env["CANARYAPP_BACKEND_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "canaryapp-pulumi", "key": "backend-url", "optional": True}
    }
    assert env["CANARYAPP_SECRETS_PROVIDER"]["valueFrom"] == {
        "secretKeyRef": {"name": "canaryapp-pulumi", "key": "secrets-provider", "optional": True}
    }
    assert env["HOME"]["value"] == "/var/lib/canaryapp"
    assert not [key for key in rendered if key[0] == "Secret"]


def test_probes_use_healthz_and_readyz_on_the_metrics_port(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    reconciler = container(rendered)
    metrics_port = int(parse_run_command(reconciler["command"][2:]).metrics_address.rpartition(":")[2])
    ports = {port["name"]: port["containerPort"] for port in reconciler["ports"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        http_get = reconciler[probe]["httpGet"]
        assert http_get["path"] == path
        assert ports.get(http_get["port"], http_get["port"]) == metrics_port
    service = rendered["Service", "canaryapp-reconciler-metrics"]["spec"]
    assert service["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = rendered["Deployment", RECONCILER]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()


def test_the_pod_is_hardened_and_keeps_its_state_on_a_volume(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    reconciler = container(rendered)
    assert reconciler["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert reconciler["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    pod = rendered["Deployment", RECONCILER]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == RECONCILER
    assert pod["securityContext"]["fsGroup"] == 65532
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in reconciler["volumeMounts"]}
    assert mounts["/var/lib/canaryapp"]["persistentVolumeClaim"] == {"claimName": "canaryapp-state"}
    assert mounts["/tmp"]["emptyDir"] == {}
    claim = rendered["PersistentVolumeClaim", "canaryapp-state"]["spec"]
    assert claim == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    assert rendered["Deployment", RECONCILER]["spec"]["strategy"] == {"type": "Recreate"}


def expanded_environment(container: dict[str, Any], pod_labels: dict[str, str]) -> dict[str, str]:
    """The container's literal and pod-label variables, with $(VAR) expanded as the kubelet does."""
    environment: dict[str, str] = {}
    for variable in container["env"]:
        field = variable.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath", "")
        if label := re.fullmatch(r"metadata\.labels\['(.+)'\]", field):
            environment[variable["name"]] = pod_labels[label[1]]
        elif "value" in variable:
            environment[variable["name"]] = re.sub(
                r"\$\((\w+)\)", lambda ref: environment.get(ref[1], ref[0]), variable["value"]
            )
    return environment


def test_config_shards_runs_three_shards_with_a_standby_each_on_the_shared_rbac(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shards = render("shards")
    default = render("default")
    deployments = {name: obj for (kind, name), obj in shards.items() if kind == "Deployment"}
    assert set(deployments) == {f"{RECONCILER}-{shard}" for shard in "abc"}
    shared = {key for key in shards if key[0] != "Deployment"}
    assert shared == {
        key for key in default if key[0] not in {"Deployment", "PersistentVolumeClaim", "Service"}
    }
    for key in shared:
        assert shards[key] == default[key], key
    lease_names = set()
    for shard in "abc":
        deployment = deployments[f"{RECONCILER}-{shard}"]["spec"]
        pod = deployment["template"]
        assert deployment["replicas"] == 2
        assert deployment["strategy"] == {"type": "RollingUpdate"}
        assert deployment["selector"]["matchLabels"]["canary.atze.io/shard"] == shard
        assert pod["spec"]["serviceAccountName"] == RECONCILER
        assert {volume["name"]: volume for volume in pod["spec"]["volumes"]}["state"] == {
            "name": "state",
            "emptyDir": {},
        }
        (reconciler,) = pod["spec"]["containers"]
        backend = next(env for env in reconciler["env"] if env["name"] == "CANARYAPP_BACKEND_URL")
        assert backend["valueFrom"]["secretKeyRef"]["optional"] is False
        environment = expanded_environment(reconciler, pod["metadata"]["labels"])
        assert environment["CANARYAPP_SHARD_SELECTOR"] == f"canary.atze.io/shard={shard}"
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        config = run_config(parse_run_command(reconciler["command"][2:]))
        assert config.leader_elect
        assert config.shard_selector is not None
        assert config.shard_selector.matches({"canary.atze.io/shard": shard})
        assert not config.shard_selector.matches({"canary.atze.io/shard": "z"})
        lease_names.add(config.lease_name)
    assert len(lease_names) == 3


def rule_set(rules: list[dict[str, Any]]) -> set[tuple[str, str, frozenset[str]]]:
    return {
        (group, resource, frozenset(rule["verbs"]))
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def test_the_cluster_role_grants_exactly_what_the_reconciler_uses(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    writes = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})
    rules = rendered["ClusterRole", RECONCILER]["rules"]
    assert rule_set(rules) == {
        ("canary.atze.io", "canaryapps", frozenset({"get", "list", "watch", "patch", "update"})),
        ("canary.atze.io", "canaryapps/status", frozenset({"get", "patch", "update"})),
        ("canary.atze.io", "canaryapps/finalizers", frozenset({"update"})),
        ("canary.atze.io", "metrictemplates", frozenset({"get"})),
        ("canary.atze.io", "clustermetrictemplates", frozenset({"get"})),
        ("", "events", frozenset({"create", "patch"})),
        ("events.k8s.io", "events", frozenset({"create", "patch"})),
        ("apps", "deployments", writes),
        ("", "services", writes),
        ("", "secrets", frozenset({"get"})),
        ("", "serviceaccounts", frozenset({"get"})),
        ("", "namespaces", frozenset({"get"})),
        ("networking.istio.io", "virtualservices", writes),
        ("networking.istio.io", "destinationrules", writes),
        ("gateway.networking.k8s.io", "httproutes", writes),
        ("autoscaling", "horizontalpodautoscalers", writes),
    }
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule


def test_leases_are_granted_only_in_the_reconcilers_namespace(
    rendered: dict[tuple[str, str], dict[str, Any]],
) -> None:
    role = rendered["Role", "canaryapp-leader-election"]
    lease_verbs = frozenset({"get", "create", "update"})
    assert rule_set(role["rules"]) == {("coordination.k8s.io", "leases", lease_verbs)}
    account = {"kind": "ServiceAccount", "name": RECONCILER, "namespace": NAMESPACE}
    for kind, role_kind, role_name in (
        ("RoleBinding", "Role", "canaryapp-leader-election"),
        ("ClusterRoleBinding", "ClusterRole", RECONCILER),
    ):
        binding = next(obj for (k, _), obj in rendered.items() if k == kind)
        assert binding["subjects"] == [account]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": role_name,
        }
    config = run_config(parse_run_command(container(rendered)["command"][2:]))
    assert config.lease_name == RECONCILER
