"""A baseline through the real engine and Kubernetes provider, with each router: it starts with the canary at
weight 0 (its Deployment running the primary's revision, its own subset or Service), takes the canary's
weight, and goes when the desired stack drops it (promotion), leaving the route with two destinations."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest

from devenv.cluster import LocalCluster
from devenv.kube import read_baseline_weight, read_deployment, read_weights, wait_deployment_gone
from reconciler.adapters.pulumi.runner import PulumiStacks
from reconciler.core.names import Router
from reconciler.core.routes import GatewayRef
from tests.integration.test_step_provider import desired, stacks_for

pytestmark = pytest.mark.integration


@pytest.fixture
def stacks(cluster: LocalCluster, tmp_path: Path) -> Iterator[PulumiStacks]:
    runner = stacks_for(cluster, tmp_path, long_lived=True)
    yield runner
    runner.close()


@pytest.mark.parametrize("router", list(Router))
def test_a_baseline_starts_takes_the_canarys_weight_and_goes(
    stacks: PulumiStacks, kube: kubernetes.client.ApiClient, namespace: str, router: Router
) -> None:
    custom, apps = kubernetes.client.CustomObjectsApi(kube), kubernetes.client.AppsV1Api(kube)
    core = kubernetes.client.CoreV1Api(kube)
    routed: dict[str, object] = {"router": router}
    if router == Router.GATEWAY_API:
        routed.update(hosts=(), parent_refs=(GatewayRef(namespace, "public"),))

    def service_names() -> set[str]:
        return {service.metadata.name for service in core.list_namespaced_service(namespace).items}

    def step(weight: int, with_baseline: bool) -> None:
        stack = dataclasses.replace(desired(namespace, weight), **routed)
        if with_baseline:
            stack = dataclasses.replace(
                stack, baseline_template=stack.primary_template, baseline_revision=stack.primary_revision
            )
        stacks.apply(stack)

    step(0, with_baseline=True)
    baseline = read_deployment(apps, namespace, "steps-baseline")
    assert baseline is not None
    assert baseline.metadata.annotations["canary.atze.io/revision"] == "r1"
    assert baseline.spec.template.metadata.labels["canary.atze.io/track"] == "baseline"
    assert baseline.spec.template.spec.containers[0].image == "app:v1"
    assert read_weights(custom, namespace, "steps", router) == (100, 0)
    assert read_baseline_weight(custom, namespace, "steps", router) == 0
    assert ("steps-baseline" in service_names()) is (router == Router.GATEWAY_API)

    step(20, with_baseline=True)
    assert read_weights(custom, namespace, "steps", router) == (60, 20)
    assert read_baseline_weight(custom, namespace, "steps", router) == 20

    step(20, with_baseline=False)
    assert wait_deployment_gone(apps, namespace, "steps-baseline") is None
    assert read_weights(custom, namespace, "steps", router) == (80, 20)
    assert read_baseline_weight(custom, namespace, "steps", router) is None
    assert "steps-baseline" not in service_names()
