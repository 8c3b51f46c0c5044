"""The stack a CanaryApp's spec and status imply: plain data, handed to the Pulumi program in `stacks/`.

The desired stack follows from the status, never from `spec.image` or `spec.template` directly: a new pod
template reaches the cluster only through the decisions in `machine.py` (canary first, primary at promotion).
Replicas, the autoscaler, the port and the routes follow the spec at once; the router is the spec's as
admission resolved it (spec.router, else the reconciler's --default-router).

With spec.analysis.baseline a baseline runs beside the canary while it is analysed (phase Progressing): the
primary's release at the canary's size, given the canary's weight, so the judge compares two fresh copies
that see the same traffic. It goes at promotion (no check is left to compare) and with the canary.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from reconciler.core import workload
from reconciler.core.model import CanaryAppSpec, CanaryAppStatus, Phase
from reconciler.core.names import Router, stack_name
from reconciler.core.routes import GatewayRef, declared_weights, gateway_refs


@dataclass(frozen=True)
class AutoscalerSpec:
    """A HorizontalPodAutoscaler for one Deployment."""

    min_replicas: int
    max_replicas: int
    target_cpu_percent: int


@dataclass(frozen=True)
class DesiredStack:
    name: str
    namespace: str
    owner_uid: str
    port: int
    replicas: int
    test_replicas: int
    hosts: tuple[str, ...]
    gateways: tuple[str, ...]
    primary_image: str
    canary_image: str | None
    canary_weight: int
    # The effective pod templates (workload.py) and their revisions.
    primary_template: dict[str, Any]
    primary_revision: str
    canary_template: dict[str, Any] | None = None
    canary_revision: str | None = None
    # With spec.autoscaler: the Deployments' replicas are the autoscalers' (not declared).
    primary_autoscaler: AutoscalerSpec | None = None
    canary_autoscaler: AutoscalerSpec | None = None
    router: Router = Router.ISTIO
    # The Gateways of the gateway-api router's HTTPRoute.
    parent_refs: tuple[GatewayRef, ...] = ()
    # With a baseline (spec.analysis.baseline, while a canary is analysed): the primary's template and
    # revision at the canary's replicas (test_replicas), with the canary's autoscaler if it has one.
    baseline_template: dict[str, Any] | None = None
    baseline_revision: str | None = None
    baseline_autoscaler: AutoscalerSpec | None = None

    @property
    def baseline_weight(self) -> int:
        """The baseline gets what the canary gets: both see the same share of the same traffic."""
        return self.canary_weight if self.baseline_template is not None else 0

    @property
    def primary_weight(self) -> int:
        return declared_weights(self.canary_weight, self.baseline_template is not None)[0]

    @property
    def stack_name(self) -> str:
        return stack_name(self.namespace, self.name)

    def fingerprint(self) -> str:
        """A hash of everything the program declares: equal fingerprints mean `up` changes nothing."""
        data = dataclasses.asdict(self)
        if self.router == Router.ISTIO:
            # An Istio stack keeps the fingerprint it had before routers were named: no step after an upgrade.
            del data["router"], data["parent_refs"]
        if self.baseline_template is None:
            # Nor does a stack without a baseline: the fingerprint it had before baselines existed.
            del data["baseline_template"], data["baseline_revision"], data["baseline_autoscaler"]
        encoded = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DesiredStack:
        data = json.loads(text)
        data["hosts"] = tuple(data["hosts"])
        data["gateways"] = tuple(data["gateways"])
        data["router"] = Router(data.get("router", Router.ISTIO))
        data["parent_refs"] = tuple(GatewayRef(**ref) for ref in data.get("parent_refs", ()))
        for field in ("primary_autoscaler", "canary_autoscaler", "baseline_autoscaler"):
            if data.get(field) is not None:
                data[field] = AutoscalerSpec(**data[field])
        return cls(**data)


def baseline_runs(spec: CanaryAppSpec, status: CanaryAppStatus) -> bool:
    """Whether the stack declares a baseline: spec.analysis.baseline while a canary is analysed."""
    return spec.baseline and status.phase == Phase.PROGRESSING and status.canary_image is not None


def desired_stack(
    name: str, namespace: str, owner_uid: str, spec: CanaryAppSpec, status: CanaryAppStatus
) -> DesiredStack:
    primary_revision = status.primary_revision or spec.revision
    primary_template = status.pod_template(primary_revision) or spec.pod_template
    canary_template = status.pod_template(status.canary_revision) if status.canary_image else None
    autoscaler = spec.autoscaler
    primary_autoscaler = canary_autoscaler = None
    if autoscaler is not None:
        # During a rollout the primary keeps the replicas it had when the rollout started (machine.py).
        floor = min(max(autoscaler.min_replicas, status.primary_min_replicas or 0), autoscaler.max_replicas)
        primary_autoscaler = AutoscalerSpec(
            floor, autoscaler.max_replicas, autoscaler.target_cpu_utilization_percentage
        )
        canary_autoscaler = AutoscalerSpec(
            autoscaler.min_replicas, autoscaler.max_replicas, autoscaler.target_cpu_utilization_percentage
        )
    router = spec.effective_router
    with_baseline = baseline_runs(spec, status)
    return DesiredStack(
        name=name,
        namespace=namespace,
        owner_uid=owner_uid,
        port=spec.image_listen_port,
        replicas=spec.replicas,
        test_replicas=spec.test_replicas,
        # An HTTPRoute without hostnames takes its parents' (a VirtualService needs one: the apex Service).
        hosts=spec.hosts if router == Router.GATEWAY_API else spec.service_hosts(name),
        gateways=spec.gateways,
        primary_image=workload.template_image(primary_template) or "",
        canary_image=status.canary_image if canary_template is not None else None,
        canary_weight=status.canary_weight if canary_template is not None else 0,
        primary_template=primary_template,
        primary_revision=primary_revision,
        canary_template=canary_template,
        canary_revision=status.canary_revision if canary_template is not None else None,
        primary_autoscaler=primary_autoscaler,
        canary_autoscaler=canary_autoscaler if canary_template is not None else None,
        router=router,
        parent_refs=gateway_refs(namespace, spec.parent_refs),
        baseline_template=primary_template if with_baseline else None,
        baseline_revision=primary_revision if with_baseline else None,
        baseline_autoscaler=canary_autoscaler if with_baseline else None,
    )
