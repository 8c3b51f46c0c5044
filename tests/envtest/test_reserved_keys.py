"""The API server itself refuses a CanaryApp that would hand Pulumi's engine a map holding its signature key
(the CRD's CEL rules), and one with more containers than the template's maxItems: the CRD, rules and bounds,
is accepted by a real kube-apiserver, and its rules fire."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from reconciler.core.model import GROUP, PLURAL, VERSION
from reconciler.core.reserved_keys import PULUMI_SIGNATURE_KEY, reserved_key_cel_validation

pytestmark = pytest.mark.envtest

# With the asset signature and a path, Pulumi's engine would read /dev/zero inside the reconciler.
ASSET = {PULUMI_SIGNATURE_KEY: "c44067f5952c0a294b673a41bacd8c17", "path": "/dev/zero"}
CEL_MESSAGE = reserved_key_cel_validation()["message"]


def canary_app(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CanaryApp",
        "metadata": {"name": name},
        "spec": {
            "imageListenPort": 8080,
            "prometheusQuery": "vector(0) > 1",
            "prometheusURL": "http://prometheus.istio-system:9090",
            **spec,
        },
    }


def create(kube: kubernetes.client.ApiClient, namespace: str, body: dict[str, Any]) -> Any:
    return kubernetes.client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        pytest.param(
            {"template": {"metadata": {"annotations": ASSET}, "spec": {"containers": [{"name": "app"}]}}},
            "spec.template.metadata.annotations",
            id="annotations",
        ),
        pytest.param(
            {"template": {"spec": {"nodeSelector": ASSET, "containers": [{"name": "app"}]}}},
            "spec.template.spec.nodeSelector",
            id="nodeSelector",
        ),
        pytest.param(
            {"prometheusHeaders": {"X-Scope-OrgID": "team-a", PULUMI_SIGNATURE_KEY: "x"}},
            "spec.prometheusHeaders",
            id="prometheusHeaders",
        ),
    ],
)
def test_the_api_server_refuses_pulumis_signature_key(
    kube: kubernetes.client.ApiClient, namespace: str, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as refused:
        create(kube, namespace, canary_app("signed", image="shop:v1", **spec))
    assert refused.value.status == 422
    assert f"{field}: Forbidden: {CEL_MESSAGE}" in str(refused.value.body)


def test_benign_maps_in_the_same_places_are_accepted(
    kube: kubernetes.client.ApiClient, namespace: str
) -> None:
    benign = {"path": "/dev/zero", "uri": "http://example.com"}
    created = create(
        kube,
        namespace,
        canary_app(
            "benign",
            image="shop:v1",
            prometheusHeaders={"X-Scope-OrgID": "team-a"},
            template={"metadata": {"annotations": benign}, "spec": {"nodeSelector": {"disk": "ssd"}}},
        ),
    )
    assert created["spec"]["template"]["metadata"]["annotations"] == benign


def test_more_containers_than_the_template_allows_are_refused(
    kube: kubernetes.client.ApiClient, namespace: str
) -> None:
    containers = [{"name": f"c{index}", "image": "shop:v1"} for index in range(300)]
    with pytest.raises(ApiException) as refused:
        create(kube, namespace, canary_app("crowded", template={"spec": {"containers": containers}}))
    assert refused.value.status == 422
    assert "spec.template.spec.containers: Too many: 300: must have at most 32 items" in str(
        refused.value.body
    )
