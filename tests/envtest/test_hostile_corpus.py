"""A corpus of hostile CanaryApps, written by the limited user (examples/limited-user: CanaryApps in `default`
and nothing else) against a real API server and the reconciler with its secure defaults (in this process, on a
recording stack runner: tests/envtest/conftest.py). Each asks, through
the reconciler, for more than its author may have: a privileged pod, another identity, someone's Secret, a
node, a priority, a webhook's attention, another app's traffic, a metric endpoint of its choosing, or a file
read or URL fetched by Pulumi's engine. Each is refused, at admission (the CRD) or by the reconciler (status,
InvalidSpec Event), naming the field, before any step: no stack is applied or destroyed; and the whole corpus
changes nothing in `default` (objects, labels, field managers), contacts no endpoint, and shows no Secret's
value anywhere a user can read."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from devenv.cluster import LocalCluster
from devenv.hostile_endpoint import HostileEndpoint
from reconciler.core.endpoints import CREDENTIALS_LABEL
from reconciler.core.grants import GRANT_ANNOTATION
from reconciler.core.model import GROUP, PLURAL, VERSION
from reconciler.core.reserved_keys import PULUMI_SIGNATURE_KEY
from tests.envtest.conftest import InProcessReconciler
from tests.integration.helpers import canary_app

pytestmark = pytest.mark.envtest

NAMESPACE = "default"  # where the limited user may create CanaryApps
ADMISSION, RECONCILER = "admission", "reconciler"
REFUSAL_TIMEOUT = 120.0
DELETION_TIMEOUT = 90.0
# Replaced by the recording listener's port when a case is created: every URL in the corpus that a mistake
# could make the reconciler (or Pulumi's engine) fetch points at the listener.
PORT = "{listener-port}"
LISTENER = f"http://127.0.0.1:{PORT}/echo"  # an allowed metric URL (--allowed-metric-urls=http://127.0.0.1:*)

# The Secrets and ServiceAccounts the corpus points at (created by the admin); no value of a Secret, nor the
# password in a URL, may show up anywhere.
URL_PASSWORD = "hunter2"
SOMEONE_ELSE = "someone-else"  # a CanaryApp name the grants below name, never in the corpus
INSECURE_CASE = "insecure-metrics"

SECRETS: tuple[dict[str, Any], ...] = (
    {"metadata": {"name": "corpus-db"}, "stringData": {"password": "corpus-secret-value-1"}},
    {"metadata": {"name": "corpus-pull"}, "stringData": {"password": "corpus-secret-value-2"}},
    {
        "metadata": {"name": "corpus-db-granted-elsewhere", "annotations": {GRANT_ANNOTATION: SOMEONE_ELSE}},
        "stringData": {"password": "corpus-secret-value-3"},
    },
    {"metadata": {"name": "corpus-metrics-unmarked"}, "stringData": {"token": "corpus-secret-value-4"}},
    {
        "metadata": {
            "name": "corpus-metrics-granted-elsewhere",
            "labels": {CREDENTIALS_LABEL: "true"},
            "annotations": {GRANT_ANNOTATION: SOMEONE_ELSE},
        },
        "stringData": {"token": "corpus-secret-value-5"},
    },
    {
        "metadata": {
            "name": "corpus-metrics-granted",
            "labels": {CREDENTIALS_LABEL: "true"},
            "annotations": {GRANT_ANNOTATION: INSECURE_CASE},
        },
        "stringData": {"token": "corpus-secret-value-6"},
    },
)
PLANTED = (*(value for secret in SECRETS for value in secret["stringData"].values()), URL_PASSWORD)
SERVICE_ACCOUNTS: tuple[dict[str, Any], ...] = (
    {"metadata": {"name": "corpus-admin"}},
    {"metadata": {"name": "ci"}},  # named like the CanaryApp `ci`, and granted to nothing
    {"metadata": {"name": "corpus-deployer", "annotations": {GRANT_ANNOTATION: SOMEONE_ELSE}}},
)

# With the asset signature and a `uri` or `path`, Pulumi's engine would fetch the URL or read the file.
FETCH_ASSET = {PULUMI_SIGNATURE_KEY: "c44067f5952c0a294b673a41bacd8c17", "uri": f"http://127.0.0.1:{PORT}/x"}
READ_ASSET = {PULUMI_SIGNATURE_KEY: "c44067f5952c0a294b673a41bacd8c17", "path": "/dev/zero"}
POD_SECURITY = (
    'spec.template: the API server\'s Pod Security admission would violate PodSecurity "baseline:latest"'
)
POD_POLICY = "is not allowed: the reconciler runs with"
NO_SETTING = "is not allowed: no setting of the reconciler permits it"
APP = {"name": "app"}  # the main container; spec.image fills in its image


@dataclass(frozen=True)
class Case:
    """A hostile CanaryApp, where it must be refused, and what the refusal must say (the field first)."""

    body: dict[str, Any]
    where: str
    expected: tuple[str, ...]
    id: str

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


def case(
    name: str, where: str, *expected: str, case_id: str | None = None, image: str = "evil:v1", **spec: Any
) -> Case:
    """CanaryApp `name`: `spec` on top of a valid spec that queries the listener."""
    body = canary_app(name, image, "vector(1) > 2", LISTENER, **spec)
    return Case(body, where, expected, case_id or name)


def pod(
    name: str, where: str, *expected: str, metadata: dict[str, Any] | None = None, **pod_spec: Any
) -> Case:
    template: dict[str, Any] = {"spec": {"containers": [APP], **pod_spec}}
    if metadata is not None:
        template["metadata"] = metadata
    return case(name, where, *expected, template=template)


def beyond_baseline(name: str, reason: str, **pod_spec: Any) -> Case:
    """A template the API server's own Pod Security (baseline) warns about: `reason` is its check's."""
    return pod(name, RECONCILER, POD_SECURITY, reason, **pod_spec)


def secured(context: dict[str, Any]) -> dict[str, Any]:
    return {**APP, "securityContext": context}


ADMISSION_CASES = [
    pod(
        "asset-in-annotations",
        ADMISSION,
        "spec.template.metadata.annotations",
        metadata={"annotations": FETCH_ASSET},
    ),
    pod("asset-in-labels", ADMISSION, "spec.template.metadata.labels", metadata={"labels": READ_ASSET}),
    pod("asset-in-node-selector", ADMISSION, "spec.template.spec.nodeSelector", nodeSelector=FETCH_ASSET),
    case(
        "asset-in-limits",
        ADMISSION,
        "spec.template.spec.containers[0].resources.limits",
        template={"spec": {"containers": [{**APP, "resources": {"limits": READ_ASSET}}]}},
    ),
    pod(
        "asset-in-csi-attributes",
        ADMISSION,
        "spec.template.spec.volumes[0].csi.volumeAttributes",
        volumes=[{"name": "data", "csi": {"driver": "csi.example.com", "volumeAttributes": FETCH_ASSET}}],
    ),
    pod(
        "asset-in-claim-template",
        ADMISSION,
        "spec.template.spec.volumes[0].ephemeral.volumeClaimTemplate.metadata.annotations",
        volumes=[
            {
                "name": "scratch",
                "ephemeral": {
                    "volumeClaimTemplate": {
                        "metadata": {"annotations": READ_ASSET},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                },
            }
        ],
    ),
    pod(
        "asset-in-affinity",
        ADMISSION,
        "spec.template.spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"
        ".labelSelector.matchLabels",
        affinity={
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": FETCH_ASSET}, "topologyKey": "kubernetes.io/hostname"}
                ]
            }
        },
    ),
    case("asset-in-headers", ADMISSION, "spec.prometheusHeaders", prometheusHeaders=FETCH_ASSET),
    case("a" * 56, ADMISSION, "metadata.name must be at most 55 characters", case_id="name-too-long"),
    case("evil.example", ADMISSION, "metadata.name must start with a letter", case_id="name-with-a-dot"),
    case(
        "header-authorization",
        ADMISSION,
        "spec.prometheusHeaders",
        prometheusHeaders={"Authorization": "Bearer stolen"},
    ),
    case("header-cookie", ADMISSION, "spec.prometheusHeaders", prometheusHeaders={"Cookie": "s=1"}),
    case(
        "header-host",
        ADMISSION,
        "spec.prometheusHeaders",
        prometheusHeaders={"Host": "metadata.google.internal"},
    ),
    case(
        "header-name-line-break",
        ADMISSION,
        "spec.prometheusHeaders",
        prometheusHeaders={"X-Tenant\r\nAuthorization": "Bearer stolen"},
    ),
    case(
        "too-many-headers",
        ADMISSION,
        "spec.prometheusHeaders: Too many",
        prometheusHeaders={f"X-Header-{index}": "x" for index in range(17)},
    ),
    case(
        "header-value-too-long",
        ADMISSION,
        "spec.prometheusHeaders.X-Tenant: Too long",
        prometheusHeaders={"X-Tenant": "x" * 1025},
    ),
    case("too-many-hosts", ADMISSION, "spec.hosts: Too many", hosts=[f"h{index}" for index in range(257)]),
    case("host-too-long", ADMISSION, "spec.hosts[0]: Too long", hosts=["h" * 254]),
    case(
        "too-many-gateways",
        ADMISSION,
        "spec.gateways: Too many",
        gateways=[f"istio-system/g{index}" for index in range(65)],
    ),
    case("image-too-long", ADMISSION, "spec.image: Too long", image="evil:" + "v" * 1024),
    case("image-with-spaces", ADMISSION, "spec.image", image="evil:v1 --privileged"),
    case("url-file-scheme", ADMISSION, "spec.prometheusURL", prometheusURL="file:///etc/passwd"),
    case("url-gopher-scheme", ADMISSION, "spec.prometheusURL", prometheusURL=f"gopher://127.0.0.1:{PORT}/_x"),
    case(
        "url-too-long",
        ADMISSION,
        "spec.prometheusURL: Too long",
        prometheusURL=f"http://127.0.0.1:{PORT}/" + "x" * 2048,
    ),
    case("query-too-long", ADMISSION, "spec.prometheusQuery: Too long", prometheusQuery="x" * 16385),
    case(
        "secret-name-too-long",
        ADMISSION,
        "spec.prometheusSecretRef.name: Too long",
        prometheusSecretRef={"name": "s" * 254},
    ),
    case(
        "too-many-containers",
        ADMISSION,
        "spec.template.spec.containers: Too many",
        template={
            "spec": {"containers": [APP] + [{"name": f"c{index}", "image": "evil:v1"} for index in range(32)]}
        },
    ),
]

POD_SECURITY_CASES = [
    beyond_baseline("privileged", "privileged", containers=[secured({"privileged": True})]),
    beyond_baseline("host-network", "host namespaces", hostNetwork=True),
    beyond_baseline("host-pid", "host namespaces", hostPID=True),
    beyond_baseline("host-ipc", "host namespaces", hostIPC=True),
    beyond_baseline(
        "host-port", "hostPort", containers=[{**APP, "ports": [{"containerPort": 22, "hostPort": 22}]}]
    ),
    beyond_baseline(
        "host-path-root",
        "hostPath volumes",
        containers=[{**APP, "volumeMounts": [{"name": "root", "mountPath": "/host"}]}],
        volumes=[{"name": "root", "hostPath": {"path": "/"}}],
    ),
    beyond_baseline(
        "sys-admin",
        "non-default capabilities",
        containers=[secured({"capabilities": {"add": ["SYS_ADMIN"]}})],
    ),
    beyond_baseline("selinux-spc-t", "seLinuxOptions", securityContext={"seLinuxOptions": {"type": "spc_t"}}),
    beyond_baseline(
        "seccomp-pod", "seccompProfile", securityContext={"seccompProfile": {"type": "Unconfined"}}
    ),
    beyond_baseline(
        "seccomp-container",
        "seccompProfile",
        containers=[secured({"seccompProfile": {"type": "Unconfined"}})],
    ),
    beyond_baseline(
        "unsafe-sysctl",
        "forbidden sysctls",
        securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "65536"}]},
    ),
    beyond_baseline("apparmor", "AppArmor", securityContext={"appArmorProfile": {"type": "Unconfined"}}),
    # An unmasked /proc without a user namespace is invalid outright: the dry run's 422 is the refusal.
    pod(
        "proc-mount",
        RECONCILER,
        "spec.template: the API server refused the template",
        "procMount",
        containers=[secured({"procMount": "Unmasked"})],
    ),
    beyond_baseline(
        "host-process",
        "hostProcess",
        hostNetwork=True,
        securityContext={"windowsOptions": {"hostProcess": True, "runAsUserName": "NT AUTHORITY\\SYSTEM"}},
    ),
]

SERVICE_ACCOUNT = "spec.template.spec.serviceAccountName: running as the ServiceAccount default/"
READS = ": reading the Secret default/"
POD_POLICY_CASES = [
    pod(
        "another-account",
        RECONCILER,
        SERVICE_ACCOUNT + "corpus-admin",
        POD_POLICY,
        serviceAccountName="corpus-admin",
    ),
    pod(
        "deprecated-account-field",
        RECONCILER,
        "spec.template.spec.serviceAccount: running as the ServiceAccount default/corpus-admin",
        serviceAccount="corpus-admin",
    ),
    pod("ci", RECONCILER, SERVICE_ACCOUNT + "ci", GRANT_ANNOTATION, serviceAccountName="ci"),
    pod(
        "account-granted-elsewhere",
        RECONCILER,
        SERVICE_ACCOUNT + "corpus-deployer",
        serviceAccountName="corpus-deployer",
    ),
    case(
        "secret-in-env",
        RECONCILER,
        "spec.template.spec.containers[0].env[0].valueFrom.secretKeyRef.name" + READS + "corpus-db",
        template={
            "spec": {
                "containers": [
                    {
                        **APP,
                        "env": [
                            {
                                "name": "DB_PASSWORD",
                                "valueFrom": {"secretKeyRef": {"name": "corpus-db", "key": "password"}},
                            }
                        ],
                    }
                ]
            }
        },
    ),
    pod(
        "secret-in-env-from",
        RECONCILER,
        "spec.template.spec.initContainers[0].envFrom[0].secretRef.name" + READS + "corpus-db",
        initContainers=[
            {"name": "steal", "image": "evil:v1", "envFrom": [{"secretRef": {"name": "corpus-db"}}]}
        ],
    ),
    pod(
        "secret-volume",
        RECONCILER,
        "spec.template.spec.volumes[0].secret.secretName" + READS + "corpus-db",
        volumes=[{"name": "db", "secret": {"secretName": "corpus-db"}}],
    ),
    pod(
        "projected-secret",
        RECONCILER,
        "spec.template.spec.volumes[0].projected.sources[0].secret.name" + READS + "corpus-db",
        volumes=[{"name": "db", "projected": {"sources": [{"secret": {"name": "corpus-db"}}]}}],
    ),
    pod(
        "image-pull-secret",
        RECONCILER,
        "spec.template.spec.imagePullSecrets[0].name" + READS + "corpus-pull",
        imagePullSecrets=[{"name": "corpus-pull"}],
    ),
    pod(
        "secret-granted-elsewhere",
        RECONCILER,
        "spec.template.spec.volumes[0].secret.secretName" + READS + "corpus-db-granted-elsewhere",
        volumes=[{"name": "db", "secret": {"secretName": "corpus-db-granted-elsewhere"}}],
    ),
    pod(
        "projected-token",
        RECONCILER,
        "spec.template.spec.volumes[0].projected.sources[0].serviceAccountToken",
        NO_SETTING,
        volumes=[
            {
                "name": "token",
                "projected": {"sources": [{"serviceAccountToken": {"audience": "vault", "path": "t"}}]},
            }
        ],
    ),
    pod(
        "pod-certificate",
        RECONCILER,
        "spec.template.spec.volumes[0].projected.sources[0].podCertificate",
        NO_SETTING,
        volumes=[
            {
                "name": "cert",
                "projected": {
                    "sources": [
                        {
                            "podCertificate": {
                                "signerName": "example.com/any",
                                "keyType": "ED25519",
                                "credentialBundlePath": "bundle.pem",
                            }
                        }
                    ]
                },
            }
        ],
    ),
    pod(
        "trust-bundle",
        RECONCILER,
        "spec.template.spec.volumes[0].projected.sources[0].clusterTrustBundle",
        volumes=[
            {
                "name": "bundle",
                "projected": {
                    "sources": [{"clusterTrustBundle": {"signerName": "example.com/any", "path": "ca.pem"}}]
                },
            }
        ],
    ),
    pod(
        "ephemeral-volume",
        RECONCILER,
        "spec.template.spec.volumes[0].ephemeral",
        NO_SETTING,
        volumes=[
            {
                "name": "scratch",
                "ephemeral": {
                    "volumeClaimTemplate": {
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "10Ti"}},
                        }
                    }
                },
            }
        ],
    ),
    pod(
        "resource-claims",
        RECONCILER,
        "spec.template.spec.resourceClaims",
        resourceClaims=[{"name": "gpu", "resourceClaimTemplateName": "gpu"}],
    ),
    pod("node-name", RECONCILER, "spec.template.spec.nodeName", nodeName="kwok-node-0"),
    pod(
        "node-critical",
        RECONCILER,
        "spec.template.spec.priorityClassName",
        POD_POLICY,
        priorityClassName="system-node-critical",
    ),
    pod(
        "hostname",
        RECONCILER,
        "spec.template.spec.hostname",
        "spec.template.spec.subdomain",
        hostname="payments",
        subdomain="default",
    ),
    pod(
        "label-of-another-app",
        RECONCILER,
        "spec.template.metadata.labels['app.kubernetes.io/name']",
        metadata={"labels": {"app.kubernetes.io/name": "payments"}},
    ),
    pod(
        "reserved-label",
        RECONCILER,
        "spec.template.metadata.labels: 'app' is set by the reconciler",
        metadata={"labels": {"app": "payments"}},
    ),
    pod(
        "sidecar-proxy-image",
        RECONCILER,
        "spec.template.metadata.annotations['sidecar.istio.io/proxyImage']",
        metadata={"annotations": {"sidecar.istio.io/proxyImage": "evil/proxy:v1"}},
    ),
    pod(
        "sidecar-user-volume",
        RECONCILER,
        "spec.template.metadata.annotations['sidecar.istio.io/userVolume']",
        metadata={"annotations": {"sidecar.istio.io/userVolume": '{"root":{"hostPath":{"path":"/"}}}'}},
    ),
    pod(
        "sidecar-exclude-ports",
        RECONCILER,
        "spec.template.metadata.annotations['traffic.sidecar.istio.io/excludeOutboundPorts']",
        metadata={"annotations": {"traffic.sidecar.istio.io/excludeOutboundPorts": "443"}},
    ),
    pod(
        "vault-agent",
        RECONCILER,
        "spec.template.metadata.annotations['vault.hashicorp.com/agent-inject']",
        metadata={"annotations": {"vault.hashicorp.com/agent-inject": "true"}},
    ),
    case("many-replicas", RECONCILER, "spec.replicas: 100000 pods", replicas=100000),
    case("many-test-replicas", RECONCILER, "spec.testReplicas: 1000 pods", testReplicas=1000),
    case(
        "many-autoscaled",
        RECONCILER,
        "spec.autoscaler.maxReplicas: 10000 pods",
        autoscaler={"maxReplicas": 10000},
    ),
]

ROUTING_CASES = [
    case(
        "public-gateway",
        RECONCILER,
        "spec.gateways: 'istio-system/public-gateway'",
        gateways=["istio-system/public-gateway"],
    ),
    case(
        "another-apps-host",
        RECONCILER,
        "spec.hosts: 'payments.default.svc.cluster.local'",
        hosts=["payments.default.svc.cluster.local"],
    ),
    case("every-host", RECONCILER, "spec.hosts: '*'", hosts=["*"]),
    case("kubernetes", RECONCILER, "metadata.name: the Service default/kubernetes is reserved"),
    case(
        "public-parent",
        RECONCILER,
        "spec.parentRefs: Gateway istio-system/public is not allowed",
        router="gateway-api",
        parentRefs=[{"name": "public", "namespace": "istio-system"}],
    ),
    case(
        "apex-service-query",
        RECONCILER,
        'spec.prometheusQuery: it filters on destination_service_name="apex-service-query"',
        router="gateway-api",
        parentRefs=[{"name": "own"}],
        prometheusQuery='sum(rate(istio_requests_total{destination_service_name="{{ name }}"}[1m])) > 0',
    ),
    case(
        "parent-refs-with-istio",
        ADMISSION,
        "spec.parentRefs: only the gateway-api router attaches to Gateways",
        router="istio",
        parentRefs=[{"name": "public", "namespace": "istio-system"}],
    ),
    case(
        "gateways-with-gateway-api",
        ADMISSION,
        "spec.gateways: only the istio router binds VirtualService gateways",
        router="gateway-api",
        parentRefs=[{"name": "own"}],
        gateways=["istio-system/public"],
    ),
    case(
        "route-attached-to-nothing",
        ADMISSION,
        "spec.parentRefs: the gateway-api router needs at least one Gateway",
        router="gateway-api",
    ),
    case(
        "too-many-parents",
        ADMISSION,
        "spec.parentRefs: Too many",
        router="gateway-api",
        parentRefs=[{"name": f"g{index}"} for index in range(33)],
    ),
]

NOT_ALLOWED_URL = "is not allowed: the reconciler queries only what its --allowed-metric-urls"
CREDENTIALS_IN_URL = "carries a user name or password"
METRICS_CASES = [
    case(
        "url-localhost",
        RECONCILER,
        "spec.prometheusURL",
        NOT_ALLOWED_URL,
        prometheusURL=f"http://localhost:{PORT}/echo",
    ),
    case(
        "url-metadata",
        RECONCILER,
        "spec.prometheusURL",
        NOT_ALLOWED_URL,
        prometheusURL="http://169.254.169.254/",
    ),
    case(
        "url-metadata-hex",
        RECONCILER,
        "spec.prometheusURL",
        NOT_ALLOWED_URL,
        prometheusURL="http://0xa9fea9fe/latest/meta-data/",
    ),
    case("url-private", RECONCILER, "spec.prometheusURL", NOT_ALLOWED_URL, prometheusURL="http://10.0.0.1/"),
    case(
        "url-ipv6-loopback",
        RECONCILER,
        "spec.prometheusURL",
        NOT_ALLOWED_URL,
        prometheusURL=f"http://[::1]:{PORT}/echo",
    ),
    case(
        "url-loopback-name",
        RECONCILER,
        "spec.prometheusURL",
        NOT_ALLOWED_URL,
        prometheusURL=f"http://127.0.0.1.nip.io:{PORT}/echo",
    ),
    case(
        "url-encoded-slash",
        RECONCILER,
        "spec.prometheusURL",
        NOT_ALLOWED_URL,
        prometheusURL=f"http://127.0.0.1:{PORT}/echo/..%2f..%2fadmin",
    ),
    case(
        "url-user-info",
        RECONCILER,
        "spec.prometheusURL",
        CREDENTIALS_IN_URL,
        prometheusURL=f"http://canary:{URL_PASSWORD}@127.0.0.1:{PORT}/echo",
    ),
    case(
        "url-user-info-trick",
        RECONCILER,
        "spec.prometheusURL",
        CREDENTIALS_IN_URL,
        prometheusURL=f"http://127.0.0.1:{PORT}@169.254.169.254/",
    ),
    case(
        "secret-unmarked",
        RECONCILER,
        "spec.prometheusSecretRef: the Secret default/corpus-metrics-unmarked",
        "is not marked for metric queries",
        prometheusSecretRef={"name": "corpus-metrics-unmarked"},
    ),
    case(
        "secret-of-another-app",
        RECONCILER,
        "spec.prometheusSecretRef: the Secret default/corpus-metrics-granted-elsewhere",
        "is not granted to CanaryApp default/secret-of-another-app",
        prometheusSecretRef={"name": "corpus-metrics-granted-elsewhere"},
    ),
    case(
        INSECURE_CASE,
        RECONCILER,
        "spec.prometheusSecretRef: spec.prometheusInsecureSkipVerify is true",
        prometheusSecretRef={"name": "corpus-metrics-granted"},
        prometheusInsecureSkipVerify=True,
    ),
    case(
        "secret-missing",
        RECONCILER,
        "spec.prometheusSecretRef: the Secret default/corpus-metrics-missing",
        "does not exist",
        prometheusSecretRef={"name": "corpus-metrics-missing"},
    ),
    case(
        "header-value-line-break",
        RECONCILER,
        "spec.prometheusHeaders",
        "line break",
        prometheusHeaders={"X-Tenant": "a\r\nAuthorization: Bearer stolen"},
    ),
]

CASES = ADMISSION_CASES + POD_SECURITY_CASES + POD_POLICY_CASES + ROUTING_CASES + METRICS_CASES


@dataclass(frozen=True)
class ObjectState:
    uid: str
    resource_version: str
    labels: dict[str, str]
    annotations: dict[str, str]
    managers: tuple[tuple[str, str, str], ...]  # (manager, operation, subresource), sorted


@dataclass(frozen=True)
class Snapshot:
    objects: dict[tuple[str, str], ObjectState]  # by (kind, name)
    namespace_labels: dict[str, str]

    def differences(self, later: Snapshot) -> list[str]:
        changes = []
        if later.namespace_labels != self.namespace_labels:
            changes.append(f"namespace labels: {self.namespace_labels} -> {later.namespace_labels}")
        for key in sorted(self.objects.keys() | later.objects.keys()):
            before, after = self.objects.get(key), later.objects.get(key)
            if before != after:
                changes.append(f"{key[0]} {NAMESPACE}/{key[1]}: {before} -> {after}")
        return changes


def watched_lists(kube: kubernetes.client.ApiClient) -> dict[str, Callable[[], Any]]:
    """What the corpus must leave alone: how to list each kind a CanaryApp may lead to, in `default`."""
    core, custom = kubernetes.client.CoreV1Api(kube), kubernetes.client.CustomObjectsApi(kube)

    def of_group(group: str, version: str, plural: str) -> Callable[[], Any]:
        return lambda: custom.list_namespaced_custom_object(group, version, NAMESPACE, plural)

    return {
        "Deployment": of_group("apps", "v1", "deployments"),
        "ReplicaSet": of_group("apps", "v1", "replicasets"),
        "Pod": lambda: core.list_namespaced_pod(NAMESPACE),
        "Service": lambda: core.list_namespaced_service(NAMESPACE),
        "ServiceAccount": lambda: core.list_namespaced_service_account(NAMESPACE),
        "Secret": lambda: core.list_namespaced_secret(NAMESPACE),
        "ConfigMap": lambda: core.list_namespaced_config_map(NAMESPACE),
        "PersistentVolumeClaim": lambda: core.list_namespaced_persistent_volume_claim(NAMESPACE),
        "HorizontalPodAutoscaler": of_group("autoscaling", "v2", "horizontalpodautoscalers"),
        "VirtualService": of_group("networking.istio.io", "v1", "virtualservices"),
        "DestinationRule": of_group("networking.istio.io", "v1", "destinationrules"),
    }


def snapshot(kube: kubernetes.client.ApiClient) -> Snapshot:
    objects = {}
    for kind, listing in watched_lists(kube).items():
        for item in kube.sanitize_for_serialization(listing())["items"]:
            metadata = item["metadata"]
            objects[(kind, metadata["name"])] = ObjectState(
                uid=metadata["uid"],
                resource_version=metadata["resourceVersion"],
                labels=metadata.get("labels") or {},
                annotations=metadata.get("annotations") or {},
                managers=tuple(
                    sorted(
                        (entry.get("manager", ""), entry.get("operation", ""), entry.get("subresource", ""))
                        for entry in metadata.get("managedFields") or []
                    )
                ),
            )
    namespace: Any = kubernetes.client.CoreV1Api(kube).read_namespace(NAMESPACE)
    return Snapshot(objects, dict(namespace.metadata.labels or {}))


def with_port(body: dict[str, Any], port: int) -> dict[str, Any]:
    rendered: dict[str, Any] = json.loads(json.dumps(body).replace(PORT, str(port)))
    return rendered


@dataclass(frozen=True)
class Refusals:
    """What became of the corpus: refused by the API server, or created and then seen by the reconciler."""

    at_admission: dict[str, ApiException]
    created: list[str]
    statuses: dict[str, dict[str, Any]]
    invalid_spec_events: dict[str, list[str]]  # Warning InvalidSpec messages by CanaryApp name
    event_messages: list[str]  # every Event message in the namespace
    not_refused: list[str]


@dataclass(frozen=True)
class Corpus:
    refusals: Refusals
    reconciler: InProcessReconciler
    listener: HostileEndpoint
    before: Snapshot
    after: Snapshot


class LimitedUser:
    """The limited user's own rights: CanaryApps in `default`, created, listed and deleted."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.custom = kubernetes.client.CustomObjectsApi(client)

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body)

    def statuses(self) -> dict[str, dict[str, Any]]:
        listed: Any = self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)
        return {item["metadata"]["name"]: item.get("status") or {} for item in listed["items"]}

    def delete(self, names: list[str]) -> list[str]:
        """Deletes `names` and waits (DELETION_TIMEOUT) until the reconciler has released their finalizers.
        Returns the names still there then, whose finalizers the user removes (their right) so that the
        namespace is clean for the next tests."""
        for name in names:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name)
        deadline = time.monotonic() + DELETION_TIMEOUT
        while (left := sorted(set(names) & set(self.statuses()))) and time.monotonic() < deadline:
            time.sleep(1)
        for name in left:
            self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, name, {"metadata": {"finalizers": None}}
            )
        return left


def refused_by_reconciler(name: str, status: dict[str, Any]) -> bool:
    return str(status.get("message", "")).startswith(f"CanaryApp {NAMESPACE}/{name} is invalid: ")


def events_in(core: kubernetes.client.CoreV1Api) -> tuple[dict[str, list[str]], list[str]]:
    """The InvalidSpec Warning Events' messages by CanaryApp, and every Event message in the namespace."""
    events = core.list_namespaced_event(NAMESPACE).items
    invalid: dict[str, list[str]] = {}
    for event in events:
        if event.reason == "InvalidSpec" and event.type == "Warning":
            invalid.setdefault(str(event.involved_object.name), []).append(event.message or "")
    return invalid, [event.message or "" for event in events]


def create_corpus(user: LimitedUser, port: int) -> tuple[dict[str, ApiException], list[str]]:
    """Every case created as the limited user: the API server's refusals by name, and the names created."""
    refused: dict[str, ApiException] = {}
    created: list[str] = []
    for hostile in CASES:
        try:
            user.create(with_port(hostile.body, port))
        except ApiException as error:
            refused[hostile.name] = error
        else:
            created.append(hostile.name)
    return refused, created


def await_refusals(
    user: LimitedUser, core: kubernetes.client.CoreV1Api, refused: dict[str, ApiException], created: list[str]
) -> Refusals:
    """Waits (REFUSAL_TIMEOUT at most, for all together) until the reconciler has refused every created
    CanaryApp, in its status and with an Event; what it has not refused by then is left to the tests."""
    deadline = time.monotonic() + REFUSAL_TIMEOUT
    while True:
        statuses = user.statuses()
        invalid_spec_events, event_messages = events_in(core)
        not_refused = [
            name
            for name in created
            if not refused_by_reconciler(name, statuses.get(name, {})) or name not in invalid_spec_events
        ]
        if not not_refused or time.monotonic() > deadline:
            return Refusals(refused, created, statuses, invalid_spec_events, event_messages, not_refused)
        time.sleep(1)


@contextmanager
def admin_objects(core: kubernetes.client.CoreV1Api) -> Iterator[None]:
    """The Secrets and ServiceAccounts the corpus points at, created by the admin, deleted at the end."""
    try:
        for secret in SECRETS:
            core.create_namespaced_secret(NAMESPACE, secret)
        for account in SERVICE_ACCOUNTS:
            core.create_namespaced_service_account(NAMESPACE, account)
        yield
    finally:
        for secret in SECRETS:
            with suppress(ApiException):
                core.delete_namespaced_secret(secret["metadata"]["name"], NAMESPACE)
        for account in SERVICE_ACCOUNTS:
            with suppress(ApiException):
                core.delete_namespaced_service_account(account["metadata"]["name"], NAMESPACE)


@pytest.fixture(scope="module")
def corpus(
    cluster: LocalCluster,
    kube: kubernetes.client.ApiClient,
    limited_user: kubernetes.client.ApiClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Corpus]:
    """The corpus created and refused, with the world before and after; deleted at the end, which must
    change nothing either."""
    core = kubernetes.client.CoreV1Api(kube)
    user = LimitedUser(limited_user)
    reconciler = InProcessReconciler(cluster.kubeconfig, NAMESPACE, tmp_path_factory.mktemp("reconciler"))
    with admin_objects(core), HostileEndpoint() as listener:
        before = snapshot(kube)
        reconciler.start()
        created: list[str] = []
        try:
            started = time.monotonic()
            refused, created = create_corpus(user, listener.port)
            refusals = await_refusals(user, core, refused, created)
            print(
                f"Hostile corpus: {len(refused)} refused at admission, "
                f"{len(created) - len(refusals.not_refused)} by the reconciler, not refused: "
                f"{refusals.not_refused}, in {time.monotonic() - started:.1f} s"
            )
            yield Corpus(refusals, reconciler, listener, before, snapshot(kube))
        finally:
            try:
                left = user.delete(created)
            finally:
                reconciler.stop()
        assert not left, f"the reconciler never released the finalizers of {left} (removed by hand)"
        changes = before.differences(snapshot(kube))
        assert not changes, "deleting the corpus changed default:\n" + "\n".join(changes)
        assert listener.requests == []


def admission_error(error: ApiException) -> str:
    return f"{error.status}: {error.body}"


@pytest.mark.parametrize("hostile", [pytest.param(hostile, id=hostile.id) for hostile in CASES])
def test_each_hostile_canaryapp_is_refused_naming_the_field(corpus: Corpus, hostile: Case) -> None:
    name, expected, refusals = hostile.name, hostile.expected, corpus.refusals
    if hostile.where == ADMISSION:
        assert name not in refusals.created, f"the API server accepted {name}"
        refusal = refusals.at_admission[name]
        assert refusal.status == 422, admission_error(refusal)
        for fragment in expected:
            assert fragment in str(refusal.body), admission_error(refusal)
        return
    assert name in refusals.created, admission_error(refusals.at_admission[name])
    status = refusals.statuses.get(name, {})
    assert refused_by_reconciler(name, status), f"{name} was not refused; its status: {status}"
    for fragment in expected:
        assert fragment in status["message"]
    messages = refusals.invalid_spec_events.get(name, [])
    assert any(expected[0] in message for message in messages), messages


def test_the_corpus_is_large_and_refused_in_both_places(corpus: Corpus) -> None:
    places = Counter(hostile.where for hostile in CASES)
    print(f"Hostile corpus cases by where they must be refused: {dict(places)}")
    assert len(CASES) >= 50
    assert places[ADMISSION]
    assert places[RECONCILER]
    assert len(corpus.refusals.at_admission) + len(corpus.refusals.created) == len(CASES)


def test_the_corpus_changed_nothing_in_the_namespace(corpus: Corpus) -> None:
    """No object of any kind a CanaryApp may lead to was created, changed or deleted (the dry runs of Pod
    Security create nothing), no label or annotation, no field manager; the namespace's labels neither."""
    assert ("Secret", "corpus-db") in corpus.before.objects  # the snapshot sees what it should
    changes = corpus.before.differences(corpus.after)
    assert not changes, "\n".join(changes)


def test_no_step_was_taken_for_the_corpus(corpus: Corpus) -> None:
    """Refused before any `stack.up` or destroy: the recording runner saw none (so Pulumi's engine, which
    would fetch an asset's URL or read its file, was never handed a corpus spec)."""
    assert corpus.reconciler.stacks.applied == []
    assert corpus.reconciler.stacks.destroyed == []


def test_no_url_in_the_corpus_was_contacted(corpus: Corpus) -> None:
    assert corpus.listener.requests == []


def test_no_secret_value_is_shown_in_a_status_an_event_or_the_log(corpus: Corpus) -> None:
    statuses = json.dumps(corpus.refusals.statuses)
    events = "\n".join(corpus.refusals.event_messages)
    log = corpus.reconciler.log()
    assert "Rejected CanaryApp spec" in log  # the log is the reconciler's, and it saw the corpus
    for value in PLANTED:
        assert value not in statuses, value
        assert value not in events, value
        assert value not in log, value


def test_the_reconciler_survived_the_corpus(corpus: Corpus) -> None:
    assert corpus.reconciler.healthy(), "the reconciler's watch or workers stopped"
    assert "Traceback" not in corpus.reconciler.log()
