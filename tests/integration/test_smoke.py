"""Smoke tests that prove the parts are real: the local cluster rolls Deployments out, the Pulumi engine and
Kubernetes provider change the cluster, `pulumi preview` runs a Pulumi.yaml project, the API server enforces
Istio's schema, and Prometheus scrapes and answers queries."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import kubernetes
import pulumi_kubernetes as k8s
import pytest
from kubernetes.client.exceptions import ApiException
from pulumi import automation as auto

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.prometheus import PrometheusServer
from reconciler.adapters.pulumi.settings import PulumiSettings
from tests.integration.helpers import wait_for

pytestmark = pytest.mark.integration


def deployment(name: str, image: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }


def test_deployment_rolls_out_on_fake_nodes(kube: kubernetes.client.ApiClient, namespace: str) -> None:
    apps = kubernetes.client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, deployment("smoke", "smoke:v1", 2))
    wait_for(
        lambda: apps.read_namespaced_deployment("smoke", namespace).status.available_replicas == 2 or None,
        60,
        "2 available replicas",
    )
    apps.patch_namespaced_deployment(
        "smoke",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "smoke:v2"}]}}}},
    )

    def rolled_out() -> bool:
        current = apps.read_namespaced_deployment("smoke", namespace)
        status = current.status
        return (
            status.observed_generation == current.metadata.generation
            and status.updated_replicas == 2
            and status.available_replicas == 2
            and status.replicas == 2
        )

    wait_for(rolled_out, 60, "rolling update complete")
    pods = kubernetes.client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector="app=smoke").items
    running = [p for p in pods if p.metadata.deletion_timestamp is None]
    assert {p.spec.containers[0].image for p in running} == {"smoke:v2"}
    assert all(p.status.phase == "Running" for p in running)


def pulumi_env(tmp_path: Path, cluster: LocalCluster) -> dict[str, str]:
    """The same offline Pulumi environment the reconciler uses, with a file backend in `tmp_path`."""
    backend = tmp_path / "backend"
    backend.mkdir()
    settings = PulumiSettings(
        backend_url=f"file://{backend}",
        work_root=str(tmp_path),
        pulumi_home=str(tmp_path / "pulumi-home"),
        extra_env={"KUBECONFIG": str(cluster.kubeconfig), "PULUMI_CONFIG_PASSPHRASE": ""},
    )
    return settings.environment()


def test_automation_api_creates_updates_and_destroys_a_configmap(
    kube: kubernetes.client.ApiClient, cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    core = kubernetes.client.CoreV1Api(kube)

    def program_with(value: str) -> auto.PulumiFn:
        def program() -> None:
            k8s.core.v1.ConfigMap(
                "smoke", metadata={"name": "smoke", "namespace": namespace}, data={"value": value}
            )

        return program

    env = pulumi_env(tmp_path, cluster)
    stack = auto.create_or_select_stack(
        stack_name="smoke",
        project_name="smoke",
        program=program_with("one"),
        opts=auto.LocalWorkspaceOptions(
            work_dir=str(tmp_path),
            env_vars=env,
            pulumi_home=env["PULUMI_HOME"],
            secrets_provider="passphrase",
            project_settings=auto.ProjectSettings(
                name="smoke", runtime="python", backend=auto.ProjectBackend(url=env["PULUMI_BACKEND_URL"])
            ),
        ),
    )
    stack.up(on_output=lambda _: None)
    assert core.read_namespaced_config_map("smoke", namespace).data == {"value": "one"}
    stack.workspace.program = program_with("two")
    result = stack.up(on_output=lambda _: None)
    # The provider replaces a ConfigMap whose data changes (ConfigMaps are treated as immutable).
    assert result.summary.resource_changes.get("replace") == 1
    assert core.read_namespaced_config_map("smoke", namespace).data == {"value": "two"}
    stack.destroy(on_output=lambda _: None)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("smoke", namespace)
    assert gone.value.status == 404


def test_pulumi_preview_runs_a_python_project(cluster: LocalCluster, namespace: str, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: smoke-preview\nruntime: python\n")
    (project / "__main__.py").write_text(
        textwrap.dedent(
            f"""
            import pulumi_kubernetes as k8s

            k8s.core.v1.ConfigMap("previewed", metadata={{"name": "previewed", "namespace": "{namespace}"}})
            """
        )
    )
    env = {**os.environ, **pulumi_env(tmp_path, cluster)}
    subprocess.run(["pulumi", "stack", "init", "dev"], cwd=project, env=env, check=True, capture_output=True)
    preview = subprocess.run(
        ["pulumi", "preview", "--stack", "dev", "--non-interactive", "--color=never"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert "kubernetes:core/v1:ConfigMap" in preview.stdout
    assert "previewed" in preview.stdout
    assert "+ 2 to create" in preview.stdout  # the stack itself and the ConfigMap
    assert "Traceback" not in preview.stdout + preview.stderr


def virtual_service(name: str, weight: object) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {
            "hosts": ["svc"],
            "http": [{"route": [{"destination": {"host": "svc"}, "weight": weight}]}],
        },
    }


def test_api_server_enforces_istio_schema(kube: kubernetes.client.ApiClient, namespace: str) -> None:
    custom = kubernetes.client.CustomObjectsApi(kube)
    args = ("networking.istio.io", "v1", namespace, "virtualservices")
    custom.create_namespaced_custom_object(*args, virtual_service("good", 100))
    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(*args, virtual_service("bad", "heavy"))
    assert rejected.value.status == 422
    assert "weight" in str(rejected.value.body)


def test_prometheus_scrapes_an_exporter(prometheus: PrometheusServer, exporter: ControlledExporter) -> None:
    exporter.set("smoke_value", {"probe": "smoke"}, 42)
    result = wait_for(lambda: prometheus.query('smoke_value{probe="smoke"}'), 30, "scraped value")
    assert float(result[0]["value"][1]) == 42
