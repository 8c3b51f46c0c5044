"""One bad object never stops the others: a CanaryApp whose step the API server refuses (an admission policy
denies its Deployment) reports the failure once, clearly, and keeps retrying, while a second CanaryApp in the
same namespace rolls out normally."""

from __future__ import annotations

import kubernetes
import pytest

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.kube import condition
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from tests.integration.helpers import Apps, canary_app, error_query, kubectl, wait_for

pytestmark = pytest.mark.integration


def deny_deployment(kube: kubernetes.client.ApiClient, namespace: str, deployment: str) -> None:
    admission = kubernetes.client.AdmissionregistrationV1Api(kube)
    policy = f"deny-{namespace}"
    admission.create_validating_admission_policy(
        {
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["apps"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["deployments"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": f"object.metadata.name != '{deployment}'",
                        "message": f"{deployment} is not allowed by the test's admission policy",
                    }
                ],
            },
        }
    )
    admission.create_validating_admission_policy_binding(
        {
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        }
    )


def synced_condition(apps: Apps, name: str) -> dict[str, str] | None:
    return condition(apps.status(name), "StackSynced")


def test_a_failing_canaryapp_does_not_hold_up_another(
    cluster: LocalCluster,
    kube: kubernetes.client.ApiClient,
    namespace: str,
    reconciler: ReconcilerProcess,
    exporter: ControlledExporter,
    prometheus: PrometheusServer,
) -> None:
    deny_deployment(kube, namespace, "bad-primary")
    apps = Apps(kube, namespace)
    apps.create(canary_app("bad", "app:v1", error_query(namespace, "bad"), prometheus.url))
    apps.create_ready("good", prometheus.url)
    apps.patch_spec("good", image="app:v2")
    wait_for(lambda: apps.phase_is("good", "Succeeded"), 180, "good promoted while bad fails")

    failed = wait_for(
        lambda: (c := synced_condition(apps, "bad")) and c["reason"] == "StackUpdateFailed" and c,
        60,
        "bad failed",
    )
    assert failed["status"] == "False"
    assert "not allowed by the test's admission policy" in failed["message"]
    assert apps.status("bad")["phase"] == "Initializing"
    assert "failed" not in apps.status("bad")["message"]

    def failures() -> list[str]:
        events = (
            kubernetes.client.CoreV1Api(kube)
            .list_namespaced_event(namespace, field_selector="involvedObject.name=bad")
            .items
        )
        return [e.reason for e in events if e.reason == "StackUpdateFailed"]

    # The Event is written after the status: wait for it rather than read once.
    wait_for(failures, 30, "a StackUpdateFailed Event")
    assert failures() == ["StackUpdateFailed"]
    # `kubectl get canaryapps` shows it: the STACK column says why the cluster does not match the status.
    listed = kubectl(cluster.kubeconfig, "get", "canaryapps", "--namespace", namespace)
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert "StackUpdateFailed" in rows["bad"], listed.stdout + listed.stderr
    assert "StackApplied" in rows["good"], listed.stdout
    assert apps.deployment("bad-primary") is None
