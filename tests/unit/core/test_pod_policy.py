"""What a CanaryApp's pods may ask for that Pod Security does not judge (pod_policy.py): service
accounts and Secrets (by allow-list or the owner's grant), priority classes, labels, annotations, DNS names,
replica counts and the credentials no setting permits; table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core.grants import GRANT_ANNOTATION, granted
from reconciler.core.pod_policy import PodPolicy

POD = "spec.template.spec"
META = "spec.template.metadata"


def template(
    *containers: dict[str, Any], metadata: dict[str, Any] | None = None, **pod: Any
) -> dict[str, Any]:
    return {"metadata": metadata or {}, "spec": {"containers": list(containers), **pod}}


def app(**fields: Any) -> dict[str, Any]:
    return {"name": "app", "image": "shop/web:v2", **fields}


def secret_env(secret: str) -> dict[str, Any]:
    return {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}}


def projected(source: dict[str, Any]) -> dict[str, Any]:
    return {"name": "p", "projected": {"sources": [source]}}


PLAIN = template(
    app(
        env=[
            {"name": "MODE", "value": "canary"},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "web-config", "key": "level"}}},
        ],
        envFrom=[{"configMapRef": {"name": "web-config"}}],
        resources={"requests": {"cpu": "100m"}, "limits": {"memory": "128Mi"}},
        # Pod Security judges these, not this policy: they pass here.
        securityContext={"privileged": True, "capabilities": {"add": ["NET_ADMIN"]}},
    ),
    volumes=[
        {"name": "config", "configMap": {"name": "web-config"}},
        {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "node", "hostPath": {"path": "/"}},
        projected({"configMap": {"name": "web-config"}}),
        projected(
            {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}
        ),
    ],
    serviceAccountName="default",
)


@pytest.mark.parametrize(
    ("pod_template", "problem_fields"),
    [
        pytest.param(None, [], id="no template"),
        pytest.param(PLAIN, [], id="a plain template (privileges are Pod Security's)"),
        pytest.param(template(app(), serviceAccountName="ci"), [f"{POD}.serviceAccountName"], id="account"),
        pytest.param(
            template(app(), serviceAccount="ci"), [f"{POD}.serviceAccount"], id="deprecated account"
        ),
        pytest.param(
            template(app(env=[secret_env("db")])),
            [f"{POD}.containers[0].env[0].valueFrom.secretKeyRef.name"],
            id="secretKeyRef",
        ),
        pytest.param(
            template(app(), initContainers=[app(envFrom=[{"secretRef": {"name": "db"}}])]),
            [f"{POD}.initContainers[0].envFrom[0].secretRef.name"],
            id="envFrom in an init container",
        ),
        pytest.param(
            template(app(), volumes=[{"name": "s", "secret": {"secretName": "db"}}]),
            [f"{POD}.volumes[0].secret.secretName"],
            id="secret volume",
        ),
        pytest.param(
            template(app(), volumes=[projected({"secret": {"name": "db"}})]),
            [f"{POD}.volumes[0].projected.sources[0].secret.name"],
            id="projected secret",
        ),
        pytest.param(
            template(app(), imagePullSecrets=[{"name": "registry"}]),
            [f"{POD}.imagePullSecrets[0].name"],
            id="image pull secret",
        ),
        pytest.param(
            template(app(), volumes=[projected({"serviceAccountToken": {"audience": "vault"}})]),
            [f"{POD}.volumes[0].projected.sources[0].serviceAccountToken"],
            id="projected token",
        ),
        pytest.param(
            template(app(), volumes=[projected({"podCertificate": {"signerName": "x/y"}})]),
            [f"{POD}.volumes[0].projected.sources[0].podCertificate"],
            id="pod certificate",
        ),
        pytest.param(
            template(app(), volumes=[{"name": "big", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]),
            [f"{POD}.volumes[0].ephemeral"],
            id="ephemeral volume",
        ),
        pytest.param(
            template(app(), resourceClaims=[{"name": "gpu"}]), [f"{POD}.resourceClaims"], id="claims"
        ),
        pytest.param(template(app(), nodeName="node-1"), [f"{POD}.nodeName"], id="nodeName"),
        pytest.param(
            template(app(), priorityClassName="system-node-critical"),
            [f"{POD}.priorityClassName"],
            id="priority class",
        ),
        pytest.param(
            template(app(), hostname="db-0", subdomain="db"),
            [f"{POD}.hostname", f"{POD}.subdomain"],
            id="dns",
        ),
        pytest.param(
            template(app(), metadata={"labels": {"app.kubernetes.io/name": "payments"}}),
            [f"{META}.labels['app.kubernetes.io/name']"],
            id="another app's label",
        ),
        pytest.param(
            template(
                app(),
                metadata={
                    "annotations": {
                        "sidecar.istio.io/proxyImage": "evil/proxy",
                        "sidecar.istio.io/userVolume": '[{"name":"h","hostPath":{"path":"/"}}]',
                    }
                },
            ),
            [
                f"{META}.annotations['sidecar.istio.io/proxyImage']",
                f"{META}.annotations['sidecar.istio.io/userVolume']",
            ],
            id="sidecar injector annotations",
        ),
    ],
)
def test_the_default_policy(pod_template: dict[str, Any] | None, problem_fields: list[str]) -> None:
    problems = PodPolicy().violations("shop", "web", pod_template)
    assert [problem.split(": ", 1)[0] for problem in problems] == problem_fields


@pytest.mark.parametrize(
    ("replicas", "refused"),
    [
        pytest.param({"spec.replicas": 3, "spec.testReplicas": 1}, [], id="a few"),
        pytest.param({"spec.replicas": 50}, [], id="the cap"),
        pytest.param({"spec.replicas": 100000}, ["spec.replicas"], id="replicas"),
        pytest.param({"spec.testReplicas": 51}, ["spec.testReplicas"], id="testReplicas"),
        pytest.param(
            {"spec.autoscaler.maxReplicas": 1000}, ["spec.autoscaler.maxReplicas"], id="maxReplicas"
        ),
    ],
)
def test_replicas_are_capped(replicas: dict[str, int], refused: list[str]) -> None:
    problems = PodPolicy().violations("shop", "web", None, replicas)
    assert [problem.split(": ", 1)[0] for problem in problems] == refused
    assert all("--max-replicas=50" in problem for problem in problems)


@pytest.mark.parametrize(
    ("policy", "pod_template"),
    [
        pytest.param(
            PodPolicy(allowed_service_accounts=("build-*",)), template(app(), serviceAccountName="build-1")
        ),
        pytest.param(PodPolicy(allowed_secrets=("shared-ca",)), template(app(env=[secret_env("shared-ca")]))),
        pytest.param(
            PodPolicy(allowed_priority_classes=("high",)), template(app(), priorityClassName="high")
        ),
        pytest.param(
            PodPolicy(allowed_pod_labels=("team",), allowed_pod_annotations=("prometheus.io/*",)),
            template(
                app(), metadata={"labels": {"team": "shop"}, "annotations": {"prometheus.io/scrape": "true"}}
            ),
        ),
        pytest.param(PodPolicy(allow_pod_hostname=True), template(app(), hostname="db-0", subdomain="db")),
    ],
)
def test_what_the_operator_permits(policy: PodPolicy, pod_template: dict[str, Any]) -> None:
    assert policy.violations("shop", "web", pod_template) == []


def test_an_owner_grants_a_service_account_or_secret_by_annotation_never_by_the_canaryapps_name() -> None:
    """A CanaryApp named `ci` gets ServiceAccount `ci` and Secret `ci-token` only if their owner says so."""
    pod_template = template(app(env=[secret_env("ci-token")]), serviceAccountName="ci")
    policy = PodPolicy()
    assert policy.references(pod_template) == [("Secret", "ci-token"), ("ServiceAccount", "ci")]
    owners = {
        ("ServiceAccount", "ci"): {GRANT_ANNOTATION: "ci"},
        ("Secret", "ci-token"): {GRANT_ANNOTATION: "web"},
    }
    problems = policy.violations(
        "shop", "ci", pod_template, granted=lambda kind, name: granted(owners.get((kind, name)), "ci")
    )
    assert [problem.split(": ", 1)[0] for problem in problems] == [
        f"{POD}.containers[0].env[0].valueFrom.secretKeyRef.name"
    ]
    assert f"annotate the Secret shop/ci-token with {GRANT_ANNOTATION}=ci" in problems[0]
    assert policy.violations("shop", "ci", pod_template) != []  # no grant read: refused


@pytest.mark.parametrize(
    ("annotations", "canaryapp", "allowed"),
    [
        pytest.param(None, "web", False, id="no annotations"),
        pytest.param({GRANT_ANNOTATION: "web"}, "web", True, id="named"),
        pytest.param({GRANT_ANNOTATION: "api, web"}, "web", True, id="one of several"),
        pytest.param({GRANT_ANNOTATION: "*"}, "web", True, id="every CanaryApp"),
        pytest.param({GRANT_ANNOTATION: "web-2"}, "web", False, id="a longer name"),
        pytest.param({GRANT_ANNOTATION: "we*"}, "web", False, id="no globs"),
        pytest.param({"other": "web"}, "web", False, id="another annotation"),
    ],
)
def test_grants(annotations: dict[str, str] | None, canaryapp: str, allowed: bool) -> None:
    assert granted(annotations, canaryapp) is allowed


def test_a_message_names_the_field_the_flag_and_the_fix() -> None:
    (message,) = PodPolicy().violations(
        "shop", "web", template(app(), priorityClassName="system-node-critical")
    )
    assert message == (
        f"{POD}.priorityClassName: the priority class 'system-node-critical' (it may preempt other pods) "
        "is not allowed: the reconciler runs with --allowed-priority-classes=''; remove it, or ask its "
        "operator to permit it"
    )
    (message,) = PodPolicy().violations("shop", "web", template(app(), nodeName="n"))
    assert "no setting of the reconciler permits it" in message


@pytest.mark.parametrize(
    "pod_template",
    [
        pytest.param({"spec": "not a map"}, id="spec not a map"),
        pytest.param({"spec": {"containers": "x", "volumes": [1, "a"]}}, id="lists of the wrong things"),
        pytest.param({"metadata": {"labels": ["a"]}, "spec": {}}, id="labels not a map"),
    ],
)
def test_malformed_templates_are_skipped_not_fatal(pod_template: Any) -> None:
    assert PodPolicy().violations("shop", "web", pod_template) == []
