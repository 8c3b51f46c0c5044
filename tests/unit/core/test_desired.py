"""The desired stack as the worker process receives it and as the status fingerprints it (desired.py): a
gateway-api stack round-trips through JSON with its parents, and an Istio stack keeps the fingerprint it had
before routers were named (and any stack without a baseline the one it had before baselines), so upgrading
the reconciler runs no step; with spec.analysis.baseline a baseline runs beside an analysed canary."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from reconciler.core.desired import AutoscalerSpec, DesiredStack, desired_stack
from reconciler.core.model import CanaryAppSpec, CanaryAppStatus
from reconciler.core.names import Router
from reconciler.core.routes import GatewayRef
from reconciler.core.workload import effective_template
from tests.unit.core.statuses import revision, written

ISTIO = DesiredStack(
    name="web",
    namespace="shop",
    owner_uid="u1",
    port=8080,
    replicas=2,
    test_replicas=1,
    hosts=("web",),
    gateways=("mesh",),
    primary_image="web:v1",
    canary_image=None,
    canary_weight=0,
    primary_template=effective_template(None, "web:v1", 8080),
    primary_revision="r1",
)
GATEWAY_API = dataclasses.replace(
    ISTIO,
    router=Router.GATEWAY_API,
    hosts=(),
    gateways=(),
    parent_refs=(GatewayRef("gateways", "public", "https", 443), GatewayRef("shop", "own")),
)


def test_a_gateway_api_stack_round_trips_through_json() -> None:
    assert DesiredStack.from_json(GATEWAY_API.to_json()) == GATEWAY_API


def test_a_stack_written_before_routers_reads_as_istios() -> None:
    data = json.loads(ISTIO.to_json())
    del data["router"], data["parent_refs"]
    assert DesiredStack.from_json(json.dumps(data)) == ISTIO


# The fields a DesiredStack gained after its fingerprints were first written to statuses.
ADDED_FIELDS = {"router", "parent_refs", "baseline_template", "baseline_revision", "baseline_autoscaler"}


def test_an_istio_stack_keeps_the_fingerprint_it_had_before_routers_were_named() -> None:
    before = {key: value for key, value in dataclasses.asdict(ISTIO).items() if key not in ADDED_FIELDS}
    assert ISTIO.fingerprint() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]


def test_the_router_and_its_parents_change_the_fingerprint() -> None:
    assert (
        GATEWAY_API.fingerprint()
        != dataclasses.replace(GATEWAY_API, router=Router.ISTIO, parent_refs=()).fingerprint()
    )
    other_parent = dataclasses.replace(GATEWAY_API, parent_refs=(GatewayRef("gateways", "internal"),))
    assert GATEWAY_API.fingerprint() != other_parent.fingerprint()


SPEC = {
    "image": "web:v2",
    "imageListenPort": 8088,
    "prometheusQuery": "up == 0",
    "prometheusURL": "http://prometheus:9090",
    "replicas": 4,
    "testReplicas": 2,
}
BASELINE_SPEC = CanaryAppSpec.model_validate({**SPEC, "analysis": {"baseline": True}})
ANALYSED = written(primary="web:v1", canary="web:v2", **{"phase": "Progressing", "canaryWeight": 20})


def stack_of(spec: CanaryAppSpec, status: CanaryAppStatus) -> DesiredStack:
    return desired_stack("web", "shop", "u1", spec, status)


def test_a_baseline_runs_the_primarys_release_at_the_canarys_size_and_weight() -> None:
    desired = stack_of(BASELINE_SPEC, ANALYSED)
    assert desired.baseline_template == desired.primary_template == ANALYSED.pod_template(revision("web:v1"))
    assert desired.baseline_revision == desired.primary_revision == revision("web:v1")
    assert desired.test_replicas == 2
    assert desired.baseline_autoscaler is None
    assert (desired.primary_weight, desired.canary_weight, desired.baseline_weight) == (60, 20, 20)


def test_a_baseline_takes_the_canarys_autoscaler() -> None:
    autoscaled = CanaryAppSpec.model_validate(
        {
            **SPEC,
            "analysis": {"baseline": True},
            "autoscaler": {"minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 70},
        }
    )
    desired = stack_of(autoscaled, ANALYSED)
    assert desired.baseline_autoscaler == desired.canary_autoscaler == AutoscalerSpec(2, 6, 70)


@pytest.mark.parametrize(
    ("spec", "status"),
    [
        pytest.param(CanaryAppSpec.model_validate(SPEC), ANALYSED, id="no analysis.baseline"),
        pytest.param(
            BASELINE_SPEC,
            written(primary="web:v1", **{"phase": "Succeeded"}),
            id="no canary",
        ),
        pytest.param(
            BASELINE_SPEC,
            written(primary="web:v2", canary="web:v2", **{"phase": "Promoting", "canaryWeight": 50}),
            id="promoting: nothing left to compare",
        ),
    ],
)
def test_no_baseline(spec: CanaryAppSpec, status: CanaryAppStatus) -> None:
    desired = stack_of(spec, status)
    assert (desired.baseline_template, desired.baseline_revision, desired.baseline_autoscaler) == (
        None,
        None,
        None,
    )
    assert desired.baseline_weight == 0
    assert desired.primary_weight + desired.canary_weight == 100


def test_a_stack_without_a_baseline_keeps_its_fingerprint_and_a_baseline_changes_it() -> None:
    without = stack_of(CanaryAppSpec.model_validate(SPEC), ANALYSED)
    before = {key: value for key, value in dataclasses.asdict(without).items() if key not in ADDED_FIELDS}
    assert (
        without.fingerprint() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
    )
    assert stack_of(BASELINE_SPEC, ANALYSED).fingerprint() != without.fingerprint()


def test_a_stack_with_a_baseline_round_trips_through_json() -> None:
    desired = dataclasses.replace(
        stack_of(BASELINE_SPEC, ANALYSED),
        baseline_autoscaler=AutoscalerSpec(2, 6, 80),
        router=Router.GATEWAY_API,
    )
    assert DesiredStack.from_json(desired.to_json()) == desired
