"""The Pulumi program under Pulumi's own mocks: which resources it declares, their labels and weights, and
what it asks of its router."""

from __future__ import annotations

import dataclasses
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.desired import AutoscalerSpec, DesiredStack
from reconciler.core.reserved_keys import PULUMI_SIGNATURE_KEY, ReservedKeyError
from reconciler.core.workload import effective_template
from stacks.program import declare, route_of
from stacks.routing import Route, Router
from tests.stacks.pulumi_mocks import Recorder, Registration, urn
from tests.stacks.pulumi_mocks import run as run_program

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


class RecordingRouter:
    """Records what the program asks and declares one object of its own, with the options it is given."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def declare(self, route: Route, opts: pulumi.ResourceOptions) -> None:
        self.routes.append(route)
        k8s.core.v1.ConfigMap(
            "recorded-route",
            metadata=route.metadata,
            data={"primary": str(route.primary_weight), "canary": str(route.canary_weight)},
            opts=opts,
        )


def run(desired: DesiredStack, recorder: Recorder, router: Router | None = None) -> dict[str, dict[str, Any]]:
    return run_program(lambda: declare(desired, router), recorder)


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


DESTINATION_RULE = "kubernetes:networking.istio.io/v1:DestinationRule"
VIRTUAL_SERVICE = "kubernetes:networking.istio.io/v1:VirtualService"


def test_existing_stacks_see_the_same_resources(recorder: Recorder) -> None:
    # The logical names, types, parents and dependencies every stack was applied with before the router seam:
    # a preview of such a stack shows no replacement.
    run(DESIRED, recorder)
    assert recorder.registrations == {
        "primary-deployment": Registration(
            urn("kubernetes:apps/v1:Deployment", "primary-deployment"), frozenset(), ""
        ),
        "canary-deployment": Registration(
            urn("kubernetes:apps/v1:Deployment", "canary-deployment"), frozenset(), ""
        ),
        "apex-service": Registration(urn("kubernetes:core/v1:Service", "apex-service"), frozenset(), ""),
        "destinationrule": Registration(urn(DESTINATION_RULE, "destinationrule"), frozenset(), ""),
        "virtualservice": Registration(
            urn(VIRTUAL_SERVICE, "virtualservice"), frozenset({urn(DESTINATION_RULE, "destinationrule")}), ""
        ),
    }


def test_the_program_declares_what_its_router_declares(recorder: Recorder) -> None:
    router = RecordingRouter()
    resources = run(DESIRED, recorder, router)
    assert sorted(resources) == ["apex-service", "canary-deployment", "primary-deployment", "recorded-route"]
    assert router.routes == [
        Route(
            service="shop",
            namespace="team-a",
            port=8088,
            hosts=("shop",),
            gateways=(),
            parent_refs=(),
            primary_weight=70,
            canary_weight=30,
            metadata={
                "name": "shop",
                "namespace": "team-a",
                "labels": {"app.kubernetes.io/managed-by": "canaryapp", "canary.atze.io/app": "shop"},
                "annotations": {"pulumi.com/patchForce": "true"},
                "ownerReferences": [
                    {
                        "apiVersion": "canary.atze.io/v1",
                        "kind": "CanaryApp",
                        "name": "shop",
                        "uid": "uid-1",
                        "controller": True,
                        "blockOwnerDeletion": False,
                    }
                ],
            },
        )
    ]
    assert resources["recorded-route"]["data"] == {"primary": "70", "canary": "30"}
    assert recorder.registrations["recorded-route"].urn == urn(
        "kubernetes:core/v1:ConfigMap", "recorded-route"
    )


@given(canary_weight=st.integers(min_value=0, max_value=100), with_canary=st.booleans())
def test_the_weights_a_router_is_given_sum_to_100(canary_weight: int, with_canary: bool) -> None:
    desired = dataclasses.replace(
        DESIRED,
        canary_weight=canary_weight if with_canary else 0,
        canary_image="shop:v2" if with_canary else None,
        canary_template=DESIRED.canary_template if with_canary else None,
    )
    route = route_of(desired)
    assert route.canary_weight == desired.canary_weight
    assert route.primary_weight + route.canary_weight == 100


def test_no_canary_deployment_without_canary_image(recorder: Recorder) -> None:
    desired = DesiredStack(
        **{**DESIRED.__dict__, "canary_image": None, "canary_weight": 0, "canary_template": None}
    )
    resources = run(desired, recorder)
    assert "canary-deployment" not in resources
    assert "destinationrule" in resources
    route = resources["virtualservice"]["spec"]["http"][0]["route"]
    assert [r["weight"] for r in route] == [100, 0]


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


WITH_BASELINE = dataclasses.replace(
    DESIRED,
    baseline_template=DESIRED.primary_template,
    baseline_revision="r1",
)


def test_a_baseline_runs_the_primarys_release_at_the_canarys_size(recorder: Recorder) -> None:
    resources = run(WITH_BASELINE, recorder)
    assert sorted(resources) == [
        "apex-service",
        "baseline-deployment",
        "canary-deployment",
        "destinationrule",
        "primary-deployment",
        "virtualservice",
    ]
    baseline = resources["baseline-deployment"]
    assert baseline["type"] == "kubernetes:apps/v1:Deployment"
    assert baseline["metadata"]["name"] == "shop-baseline"
    assert baseline["metadata"]["annotations"]["canary.atze.io/revision"] == "r1"
    assert baseline["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert baseline["spec"]["replicas"] == 1
    assert baseline["spec"]["selector"]["matchLabels"] == {
        "canary.atze.io/app": "shop",
        "canary.atze.io/track": "baseline",
    }
    pod = baseline["spec"]["template"]
    assert pod["metadata"]["labels"]["canary.atze.io/track"] == "baseline"
    assert pod["spec"]["containers"][0]["image"] == "shop:v1"
    # The apex Service selects the baseline's pods too: the router's objects tell the tracks apart.
    assert resources["apex-service"]["spec"]["selector"] == {"canary.atze.io/app": "shop"}
    assert recorder.registrations["baseline-deployment"].urn == urn(
        "kubernetes:apps/v1:Deployment", "baseline-deployment"
    )


def test_a_baseline_takes_the_canarys_autoscaler(recorder: Recorder) -> None:
    autoscaler = AutoscalerSpec(2, 10, 70)
    desired = dataclasses.replace(WITH_BASELINE, canary_autoscaler=autoscaler, baseline_autoscaler=autoscaler)
    resources = run(desired, recorder)
    assert "replicas" not in resources["baseline-deployment"]["spec"]
    hpa = resources["baseline-autoscaler"]
    assert hpa["metadata"]["name"] == "shop-baseline"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "shop-baseline"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    assert recorder.registrations["baseline-autoscaler"].dependencies == {
        urn("kubernetes:apps/v1:Deployment", "baseline-deployment")
    }


def test_the_router_is_asked_for_the_baselines_weight_only_with_a_baseline(recorder: Recorder) -> None:
    router = RecordingRouter()
    run(WITH_BASELINE, recorder, router)
    (route,) = router.routes
    assert (route.primary_weight, route.canary_weight, route.baseline_weight) == (40, 30, 30)
    assert route.tracks == ("primary", "canary", "baseline")
    assert route_of(DESIRED).baseline_weight is None
    assert route_of(DESIRED).tracks == ("primary", "canary")


@given(canary_weight=st.integers(min_value=0, max_value=50))
def test_with_a_baseline_the_weights_sum_to_100_and_the_baseline_gets_the_canarys(canary_weight: int) -> None:
    route = route_of(dataclasses.replace(WITH_BASELINE, canary_weight=canary_weight))
    assert route.baseline_weight == route.canary_weight == canary_weight
    assert route.primary_weight + route.canary_weight + route.baseline_weight == 100
