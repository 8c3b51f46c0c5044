"""The reconciler's own identity (the ServiceAccount and RBAC of config/rbac) is refused the verbs it does not
need; tests/integration/test_own_identity.py runs a whole rollout and a deletion under it."""

from __future__ import annotations

from pathlib import Path

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from devenv.cluster import LocalCluster
from devenv.kube import api_client
from tests.integration.helpers import service_account_kubeconfig

pytestmark = pytest.mark.envtest


@pytest.mark.parametrize(
    ("action", "call"),
    [
        pytest.param(
            "list secrets", lambda api, ns: kubernetes.client.CoreV1Api(api).list_namespaced_secret(ns)
        ),
        pytest.param("list pods", lambda api, ns: kubernetes.client.CoreV1Api(api).list_namespaced_pod(ns)),
        pytest.param(
            "create namespaces",
            lambda api, ns: kubernetes.client.CoreV1Api(api).create_namespace(
                {"metadata": {"name": "x-" + ns}}
            ),
        ),
        pytest.param(
            "delete the CanaryApp CRD",
            lambda api, ns: kubernetes.client.ApiextensionsV1Api(api).delete_custom_resource_definition(
                "canaryapps.canary.atze.io"
            ),
        ),
    ],
)
def test_verbs_it_does_not_need_are_forbidden(
    kube: kubernetes.client.ApiClient,
    cluster: LocalCluster,
    namespace: str,
    tmp_path: Path,
    action: str,
    call: object,
) -> None:
    kubeconfig = service_account_kubeconfig(kube, cluster, tmp_path / "sa.kubeconfig")
    with pytest.raises(ApiException) as forbidden:
        call(api_client(kubeconfig), namespace)  # type: ignore[operator]
    assert forbidden.value.status == 403, action
