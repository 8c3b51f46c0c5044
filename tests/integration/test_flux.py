"""Flux end to end: Flux's real kustomize-controller (v1.9.6, tools/flux-kustomize-controller/) applies a
CanaryApp from a real local Git repository (served as an ExternalArtifact by devenv/flux.py) as the
ServiceAccount of examples/flux/rbac.yaml, with examples/flux/flux-kustomization.yaml's health check; the
reconciler process rolls it out with the real Pulumi engine against a real Prometheus. A commit that changes
the image starts a rollout, the Kustomization is not Ready while it runs, Ready with the new revision after
promotion, and fails its health check, before its timeout, when the canary is rolled back."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes.utils
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from devenv.cluster import LocalCluster
from devenv.exporter import ControlledExporter
from devenv.flux import (
    KUSTOMIZE_GROUP,
    KUSTOMIZE_VERSION,
    ArtifactServer,
    GitRepository,
    KustomizeController,
    flux_crd_files,
)
from devenv.kube import condition
from devenv.processes import REPO_ROOT
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from tests.integration.helpers import Apps, canary_app, error_query, traffic_query, wait_for

pytestmark = pytest.mark.integration

EXAMPLE = REPO_ROOT / "examples" / "flux"
APP = "web"
ARTIFACT = "canaryapps"
# Each wait covers one Flux reconciliation plus, at most, one whole test rollout (2 s steps to 40 %).
FLUX_WAIT_SECONDS = 180


def example(name: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all((EXAMPLE / name).read_text()) if document]


def in_namespace(document: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The example's object moved from its namespace `canaryapps` to the test's (targetNamespace too)."""
    text = re.sub(r"([nN]amespace): canaryapps$", rf"\1: {namespace}", yaml.safe_dump(document), flags=re.M)
    moved: dict[str, Any] = yaml.safe_load(text)
    return moved


@dataclass
class Flux:
    kube: kubernetes.client.ApiClient
    namespace: str
    repository: GitRepository
    artifacts: ArtifactServer
    controller: KustomizeController

    def commit_app(self, image: str, prometheus_url: str) -> str:
        """Commits the test's CanaryApp with `image` and publishes the commit; returns Flux's revision."""
        app = canary_app(
            APP,
            image,
            error_query(self.namespace, APP),
            prometheus_url,
            canaryTrafficQuery=traffic_query(),
            minCanaryRequests=1,
        )
        commit = self.repository.commit({f"{APP}.yaml": yaml.safe_dump(app)}, f"{APP}: {image}")
        return self.artifacts.publish(self.kube, self.namespace, ARTIFACT, commit)

    def create_kustomization(self) -> dict[str, Any]:
        """examples/flux/flux-kustomization.yaml in the test's namespace, its source the ExternalArtifact."""
        (body,) = example("flux-kustomization.yaml")
        body = in_namespace(body, self.namespace)
        body["spec"]["sourceRef"] = {"kind": "ExternalArtifact", "name": ARTIFACT}
        body["spec"]["path"] = "./"
        kubernetes.client.CustomObjectsApi(self.kube).create_namespaced_custom_object(
            KUSTOMIZE_GROUP, KUSTOMIZE_VERSION, self.namespace, "kustomizations", body
        )
        return body

    def kustomization(self) -> dict[str, Any]:
        found: Any = kubernetes.client.CustomObjectsApi(self.kube).get_namespaced_custom_object(
            KUSTOMIZE_GROUP, KUSTOMIZE_VERSION, self.namespace, "kustomizations", ARTIFACT
        )
        return dict(found.get("status") or {})

    def ready(self, revision: str) -> dict[str, Any] | None:
        """The Kustomization's status once it is Ready with `revision` applied, else None."""
        status = self.kustomization()
        ready = condition(status, "Ready")
        applied = status.get("lastAppliedRevision") == revision
        return status if applied and ready is not None and ready["status"] == "True" else None


@pytest.fixture
def flux(
    cluster: LocalCluster, kube: kubernetes.client.ApiClient, namespace: str, tmp_path: Path
) -> Iterator[Flux]:
    for path in flux_crd_files():
        cluster.apply_crd_file(path)
    for document in example("rbac.yaml"):
        kubernetes.utils.create_from_dict(kube, in_namespace(document, namespace))
    artifacts = ArtifactServer(GitRepository(tmp_path / "git"))
    artifacts.start()
    controller = KustomizeController(cluster.kubeconfig, namespace, tmp_path / "flux")
    try:
        controller.start()
        yield Flux(kube, namespace, artifacts.repository, artifacts, controller)
    finally:
        controller.stop()
        artifacts.stop()


@dataclass(frozen=True)
class Sample:
    ready: str
    reason: str
    last_attempted: str
    last_applied: str
    phase: str
    canary_weight: int


class Sampler:
    """Reads the Kustomization, then the CanaryApp, every 0.2 s. The Kustomization first: whatever it says
    was already true when the CanaryApp is read, so a Ready revision beside a running rollout is real."""

    def __init__(self, flux: Flux, apps: Apps) -> None:
        self.flux = flux
        self.apps = apps
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                status = self.flux.kustomization()
                app = self.apps.status(APP)
                weights = self.apps.weights(APP) or (100, 0)
            except ApiException:
                continue
            ready = condition(status, "Ready") or {}
            self.samples.append(
                Sample(
                    ready=str(ready.get("status", "")),
                    reason=str(ready.get("reason", "")),
                    last_attempted=str(status.get("lastAttemptedRevision", "")),
                    last_applied=str(status.get("lastAppliedRevision", "")),
                    phase=str(app.get("phase", "")),
                    canary_weight=weights[1],
                )
            )

    def seen(self, revision: str) -> list[Sample]:
        return [sample for sample in self.samples if sample.last_attempted == revision]


def set_gauges(exporter: ControlledExporter, namespace: str, errors: float) -> None:
    labels = {"namespace": namespace, "canaryapp": APP}
    exporter.set("canary_errors", labels, errors)
    exporter.set("canary_requests", labels, 50)


def test_flux_applies_a_canaryapp_from_git_and_health_checks_its_rollouts(
    flux: Flux,
    kube: kubernetes.client.ApiClient,
    namespace: str,
    reconciler: ReconcilerProcess,
    exporter: ControlledExporter,
    prometheus: PrometheusServer,
) -> None:
    apps = Apps(kube, namespace)
    set_gauges(exporter, namespace, errors=0)
    first = flux.commit_app("app:v1", prometheus.url)
    flux.create_kustomization()
    wait_for(lambda: flux.ready(first), FLUX_WAIT_SECONDS, f"Kustomization Ready at {first}")
    # Not Ready before the reconciler: a new CanaryApp's defaulted observedGeneration 0 reads InProgress.
    assert apps.phase_is(APP, "Ready"), apps.status(APP)
    assert apps.deployment_image(f"{APP}-primary") == "app:v1"
    applied = apps.get(APP)["metadata"]
    assert applied["labels"]["kustomize.toolkit.fluxcd.io/name"] == ARTIFACT
    assert "kustomize-controller" in {entry["manager"] for entry in applied["managedFields"]}

    with Sampler(flux, apps) as sampler:
        second = flux.commit_app("app:v2", prometheus.url)
        wait_for(
            lambda: [s for s in sampler.seen(second) if s.phase == "Progressing" and s.canary_weight > 0],
            FLUX_WAIT_SECONDS,
            f"the rollout of app:v2 running while Flux health-checks {second}",
        )
        promoted = wait_for(lambda: flux.ready(second), FLUX_WAIT_SECONDS, f"Kustomization Ready at {second}")
    running = [s for s in sampler.seen(second) if s.phase == "Progressing" and s.canary_weight > 0]
    assert {s.ready for s in running} <= {"Unknown", "False"}, running
    assert all(s.phase == "Succeeded" for s in sampler.samples if s.last_applied == second), sampler.samples
    assert condition(promoted, "Ready")["message"] == f"Applied revision: {second}"  # type: ignore[index]
    assert apps.status(APP)["phase"] == "Succeeded"
    assert apps.deployment_image(f"{APP}-primary") == "app:v2"

    set_gauges(exporter, namespace, errors=1)
    wait_for(lambda: prometheus.query(error_query(namespace, APP)), 30, "errors scraped")
    third = flux.commit_app("app:v3", prometheus.url)

    def health_check_failed() -> dict[str, Any] | None:
        status = flux.kustomization()
        ready = condition(status, "Ready") or {}
        attempted = status.get("lastAttemptedRevision") == third
        return ready if attempted and ready.get("reason") == "HealthCheckFailed" else None

    # Within FLUX_WAIT_SECONDS, far inside the example's 10 minute timeout: Flux fails fast on Stalled=True.
    failed = wait_for(
        health_check_failed, FLUX_WAIT_SECONDS, f"Kustomization's health check failed at {third}"
    )
    assert failed["status"] == "False"
    assert "failed early due to stalled resources" in failed["message"]
    assert f"CanaryApp/{namespace}/{APP} status: 'Failed'" in failed["message"]
    assert flux.kustomization()["lastAppliedRevision"] == second
    status = apps.status(APP)
    assert status["phase"] == "Failed"
    assert status["failedImages"] == ["app:v3"]
    assert apps.deployment_image(f"{APP}-primary") == "app:v2"
