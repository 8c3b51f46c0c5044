"""The Pulumi program under Pulumi's own mocks: which resources it declares, their labels and weights."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pulumi
import pytest

from reconciler.core.desired import AutoscalerSpec, DesiredStack
from reconciler.core.reserved_keys import PULUMI_SIGNATURE_KEY, ReservedKeyError
from reconciler.core.workload import effective_template
from stacks.program import declare

DESIRED = DesiredStack(
    name="shop",
    namespace="team-a",
    owner_uid="uid-1",
    port=8088,
    replicas=3,
    test_replicas=1,
    hosts=("shop",),
    gateways=(),
    primary_image="shop:v1",
    canary_image="shop:v2",
    canary_weight=30,
    primary_template=effective_template(None, "shop:v1", 8088),
    primary_revision="r1",
    canary_template=effective_template(None, "shop:v2", 8088),
    canary_revision="r2",
)
# What makes the engine read a file inside the reconciler.
ASSET = {PULUMI_SIGNATURE_KEY: "c44067f5952c0a294b673a41bacd8c17", "path": "/dev/zero"}


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: dict[str, dict[str, Any]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources[args.name] = {"type": args.typ, **args.inputs}
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    saved = pulumi.runtime.settings.SETTINGS
    mocks = Recorder()
    pulumi.runtime.set_mocks(mocks, project="canaryapp", stack="team-a.shop", preview=False)
    try:
        yield mocks
    finally:
        pulumi.runtime.settings.SETTINGS = saved


def run(desired: DesiredStack, recorder: Recorder) -> dict[str, dict[str, Any]]:
    @pulumi.runtime.test
    def program() -> pulumi.Output[None]:
        declare(desired)
        return pulumi.Output.from_input(None)

    program()
    return recorder.resources


def test_declares_deployments_service_destination_rule_and_virtual_service(recorder: Recorder) -> None:
    resources = run(DESIRED, recorder)
    assert sorted(resources) == [
        "apex-service",
        "canary-deployment",
        "destinationrule",
        "primary-deployment",
        "virtualservice",
    ]
    primary = resources["primary-deployment"]
    assert primary["metadata"]["name"] == "shop-primary"
    assert primary["metadata"]["namespace"] == "team-a"
    assert primary["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    assert primary["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert primary["spec"]["replicas"] == 3
    container = primary["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "shop:v1"
    assert container["ports"][0]["containerPort"] == 8088
    canary = resources["canary-deployment"]
    assert canary["spec"]["replicas"] == 1
    assert canary["spec"]["template"]["spec"]["containers"][0]["image"] == "shop:v2"
    assert canary["spec"]["selector"]["matchLabels"] == {
        "canary.atze.io/app": "shop",
        "canary.atze.io/track": "canary",
    }
    # One Service selects both tracks, so Istio labels both tracks' requests with its name.
    assert resources["apex-service"]["metadata"]["name"] == "shop"
    assert resources["apex-service"]["spec"]["selector"] == {"canary.atze.io/app": "shop"}


def test_destination_rule_splits_the_apex_service_by_track(recorder: Recorder) -> None:
    rule = run(DESIRED, recorder)["destinationrule"]
    assert (rule["apiVersion"], rule["kind"], rule["metadata"]["name"]) == (
        "networking.istio.io/v1",
        "DestinationRule",
        "shop",
    )
    assert rule["spec"] == {
        "host": "shop.team-a.svc.cluster.local",
        "subsets": [
            {"name": "primary", "labels": {"canary.atze.io/track": "primary"}},
            {"name": "canary", "labels": {"canary.atze.io/track": "canary"}},
        ],
    }


def test_virtual_service_weights_sum_to_100(recorder: Recorder) -> None:
    vs = run(DESIRED, recorder)["virtualservice"]
    assert vs["apiVersion"] == "networking.istio.io/v1"
    assert vs["kind"] == "VirtualService"
    assert vs["metadata"]["name"] == "shop"
    route = vs["spec"]["http"][0]["route"]
    assert [(r["destination"]["host"], r["destination"]["subset"], r["weight"]) for r in route] == [
        ("shop.team-a.svc.cluster.local", "primary", 70),
        ("shop.team-a.svc.cluster.local", "canary", 30),
    ]
    assert all(r["destination"]["port"]["number"] == 8088 for r in route)
    assert "gateways" not in vs["spec"]


def test_no_canary_deployment_without_canary_image(recorder: Recorder) -> None:
    desired = DesiredStack(
        **{**DESIRED.__dict__, "canary_image": None, "canary_weight": 0, "canary_template": None}
    )
    resources = run(desired, recorder)
    assert "canary-deployment" not in resources
    assert "destinationrule" in resources
    route = resources["virtualservice"]["spec"]["http"][0]["route"]
    assert [r["weight"] for r in route] == [100, 0]


def test_gateways_and_hosts_are_passed_through(recorder: Recorder) -> None:
    desired = DesiredStack(**{**DESIRED.__dict__, "hosts": ("*",), "gateways": ("istio-system/gw", "mesh")})
    vs = run(desired, recorder)["virtualservice"]
    assert vs["spec"]["hosts"] == ["*"]
    assert vs["spec"]["gateways"] == ["istio-system/gw", "mesh"]


def test_deployments_carry_their_revision_and_keep_capacity_while_rolling_out(recorder: Recorder) -> None:
    resources = run(DESIRED, recorder)
    primary, canary = resources["primary-deployment"], resources["canary-deployment"]
    assert primary["metadata"]["annotations"]["canary.atze.io/revision"] == "r1"
    assert canary["metadata"]["annotations"]["canary.atze.io/revision"] == "r2"
    assert primary["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert labels == {
        "canary.atze.io/app": "shop",
        "canary.atze.io/track": "canary",
        "app": "shop",
        "version": "canary",
    }
    # The Service sends traffic to the port by name: each track's pods may listen on their own number.
    assert resources["apex-service"]["spec"]["ports"] == [
        {"name": "http", "port": 8088, "targetPort": "http"}
    ]
    assert not any(resource["type"].startswith("kubernetes:autoscaling") for resource in resources.values())


def test_an_autoscaler_per_deployment_owns_the_replicas(recorder: Recorder) -> None:
    desired = DesiredStack(
        **{
            **DESIRED.__dict__,
            "primary_autoscaler": AutoscalerSpec(4, 10, 70),
            "canary_autoscaler": AutoscalerSpec(2, 10, 70),
        }
    )
    resources = run(desired, recorder)
    assert "replicas" not in resources["primary-deployment"]["spec"]
    assert "replicas" not in resources["canary-deployment"]["spec"]
    primary = resources["primary-autoscaler"]
    assert primary["type"] == "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
    assert primary["metadata"]["name"] == "shop-primary"
    assert primary["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "shop-primary",
    }
    assert (primary["spec"]["minReplicas"], primary["spec"]["maxReplicas"]) == (4, 10)
    assert primary["spec"]["metrics"][0]["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": 70,
    }
    assert resources["canary-autoscaler"]["spec"]["minReplicas"] == 2


def test_the_user_template_reaches_the_deployment(recorder: Recorder) -> None:
    user = {
        "metadata": {"labels": {"team": "a"}},
        "spec": {
            "serviceAccountName": "default",
            "containers": [{"name": "web", "env": [{"name": "FOO", "value": "1"}]}],
            "volumes": [{"name": "config", "configMap": {"name": "shop-config"}}],
        },
    }
    desired = DesiredStack(
        **{**DESIRED.__dict__, "canary_template": effective_template(user, "shop:v2", 8088)}
    )
    pod = run(desired, recorder)["canary-deployment"]["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "a"
    assert pod["metadata"]["labels"]["canary.atze.io/track"] == "canary"
    assert pod["spec"]["volumes"] == [{"name": "config", "configMap": {"name": "shop-config"}}]
    container = pod["spec"]["containers"][0]
    assert (container["name"], container["image"], container["env"]) == (
        "web",
        "shop:v2",
        [{"name": "FOO", "value": "1"}],
    )


@pytest.mark.parametrize(
    ("track", "user", "path"),
    [
        pytest.param(
            "canary_template",
            {"metadata": {"annotations": {"config": ASSET}}},
            "desired.canary_template.metadata.annotations.config",
            id="an asset in the canary's annotations",
        ),
        pytest.param(
            "primary_template",
            {"spec": {"nodeSelector": {PULUMI_SIGNATURE_KEY: "c44067f5952c0a294b673a41bacd8c17"}}},
            "desired.primary_template.spec.nodeSelector",
            id="the key in the primary's nodeSelector",
        ),
    ],
)
def test_a_desired_stack_with_pulumis_signature_key_declares_nothing(
    recorder: Recorder, track: str, user: dict[str, Any], path: str
) -> None:
    # Bypasses the CRD and the model, as a template written into status.podTemplates would.
    desired = DesiredStack(**{**DESIRED.__dict__, track: effective_template(user, "shop:v2", 8088)})
    with pytest.raises(ReservedKeyError) as refused:
        run(desired, recorder)
    assert str(refused.value) == (
        f"{path}: the key {PULUMI_SIGNATURE_KEY} is reserved by Pulumi's wire format (it would make the "
        "reconciler read a file or fetch a URL): remove it from CanaryApp team-a/shop (spec.template, or "
        "the revision's template in status.podTemplates)"
    )
    assert recorder.resources == {}
