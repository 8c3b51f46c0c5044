"""The desired stack as the worker process receives it and as the status fingerprints it (desired.py): a
gateway-api stack round-trips through JSON with its parents, and an Istio stack keeps the fingerprint it had
before routers were named, so upgrading the reconciler runs no step."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from reconciler.core.desired import DesiredStack
from reconciler.core.names import Router
from reconciler.core.routes import GatewayRef
from reconciler.core.workload import effective_template

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


def test_an_istio_stack_keeps_the_fingerprint_it_had_before_routers_were_named() -> None:
    before = {
        key: value for key, value in dataclasses.asdict(ISTIO).items() if key not in {"router", "parent_refs"}
    }
    assert ISTIO.fingerprint() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]


def test_the_router_and_its_parents_change_the_fingerprint() -> None:
    assert (
        GATEWAY_API.fingerprint()
        != dataclasses.replace(GATEWAY_API, router=Router.ISTIO, parent_refs=()).fingerprint()
    )
    other_parent = dataclasses.replace(GATEWAY_API, parent_refs=(GatewayRef("gateways", "internal"),))
    assert GATEWAY_API.fingerprint() != other_parent.fingerprint()
