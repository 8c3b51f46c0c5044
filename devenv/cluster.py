"""A real, local Kubernetes control plane for tests and the demo.

etcd, kube-apiserver (TLS, RBAC), kube-controller-manager and kube-scheduler run from the pinned builds, and
kwok plays kubelet for a few fake nodes, so Deployments really roll out and Pods become Ready. Istio's CRDs
are installed from the pinned istio.io/api module and the Gateway API's standard-channel CRDs from the pinned
sigs.k8s.io/gateway-api module, so VirtualServices and HTTPRoutes are validated against their real schemas;
the GatewayClass and Gateway of the local traffic layer (`devenv/mesh/`, which writes their status when it
runs) are created with them. Everything listens on loopback, lives in one folder and is stopped when the
cluster closes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import ssl
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devenv.mesh.gateway import CONTROLLER_NAME
from devenv.pki import CertificateAuthority, KeyPair, write_service_account_keys
from devenv.processes import REPO_ROOT, ProcessGroup, free_port, tool, tools_share, wait_until

log = logging.getLogger(__name__)

ADMIN_USER = "canaryapp-admin"
FAKE_NODE_COUNT = 3
# Go's collector for the control plane's processes (etcd, kube-apiserver, controllers, kwok): at 400 instead
# of Go's 100 the heap may grow to five times what is live before a collection, so they collect less often.
# Each test process runs a cluster of its own on a 2-core machine, where the kube-apiserver's collector was a
# tenth of its CPU: an idle cluster 8.0 -> 6.2 CPU-s a minute, its start 11 -> 8 (memory is plentiful). A
# GOGC in the environment wins.
CONTROL_PLANE_GOGC = "400"
# The labels every namespace the tests and the demo run CanaryApps in carries: the reconciler requires Pod
# Security enforced (and warned about) at its level, baseline by default (reconciler/core/pod_security.py).
POD_SECURITY_LABELS = {
    "pod-security.kubernetes.io/enforce": "baseline",
    "pod-security.kubernetes.io/warn": "baseline",
}
# The local traffic layer's Gateway API objects: its GatewayClass, and one Gateway of it whose HTTP listener
# admits routes from every namespace (each test has its own). `devenv.mesh` implements the class.
LOCAL_GATEWAY_CLASS = "canaryapp-local"
LOCAL_GATEWAY_NAMESPACE = "gateway-system"
LOCAL_GATEWAY = "ingress"
LOCAL_GATEWAY_LISTENER = "http"
GATEWAY_API = "/apis/gateway.networking.k8s.io/v1"


def yaml_documents(path: Path) -> list[Any]:
    """The documents of a YAML file, read with libyaml's safe loader when PyYAML has it (the same objects):
    the Istio and Gateway API CRDs (2 MiB) cost 1.4 s of CPU to the pure-Python loader at every cluster start,
    0.18 s to libyaml."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return list(yaml.load_all(path.read_text(), Loader=loader))


@dataclass(frozen=True)
class ClusterInfo:
    directory: Path
    server: str
    kubeconfig: Path
    ca_cert: Path


def write_kubeconfig(path: Path, server: str, ca_cert: Path, client: KeyPair | None, token: str = "") -> None:
    user: dict[str, str] = {}
    if client is not None:
        user = {"client-certificate": str(client.cert), "client-key": str(client.key)}
    if token:
        user = {"token": token}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca_cert)}}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "user"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)


class LocalCluster:
    """Owns the processes of one local cluster. Use `running()` or call `start()` / `stop()`."""

    def __init__(self, directory: Path, node_count: int = FAKE_NODE_COUNT) -> None:
        self.directory = directory
        self.node_count = node_count
        self.processes = ProcessGroup(directory / "logs")
        self.pki_dir = directory / "pki"
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        self.api_port = free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.kubeconfig = directory / "kubeconfig"
        self._ssl: ssl.SSLContext | None = None

    @property
    def info(self) -> ClusterInfo:
        return ClusterInfo(self.directory, self.server, self.kubeconfig, self.pki_dir / "ca.crt")

    def start(self, timeout: float = 120.0) -> ClusterInfo:
        started = time.monotonic()
        # Every start is a new cluster with a new CA: data left by an earlier run in the same folder would
        # hold objects (nodes, tokens) that clash with this one's, so it goes.
        shutil.rmtree(self.directory / "etcd", ignore_errors=True)
        ca = CertificateAuthority(self.pki_dir)
        serving = ca.issue(
            "apiserver",
            "kube-apiserver",
            dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
            ip_addresses=("127.0.0.1", "10.96.0.1"),
            server=True,
        )
        admin = ca.issue("admin", ADMIN_USER, organizations=("system:masters",))
        controller_manager = ca.issue("kcm", "system:kube-controller-manager")
        scheduler = ca.issue("scheduler", "system:kube-scheduler")
        service_account = write_service_account_keys(self.pki_dir)
        write_kubeconfig(self.kubeconfig, self.server, ca.cert_path, admin)
        kcm_config = self.directory / "kcm.kubeconfig"
        write_kubeconfig(kcm_config, self.server, ca.cert_path, controller_manager)
        scheduler_config = self.directory / "scheduler.kubeconfig"
        write_kubeconfig(scheduler_config, self.server, ca.cert_path, scheduler)
        self._ssl = ssl.create_default_context(cafile=str(ca.cert_path))
        self._ssl.load_cert_chain(str(admin.cert), str(admin.key))

        self._start_etcd()
        self._start_apiserver(ca, serving, service_account)
        wait_until(self._healthy, timeout=timeout, what="kube-apiserver /readyz")
        self._start_control_plane_process(
            "kube-controller-manager",
            [
                tool("kube-controller-manager"),
                f"--kubeconfig={kcm_config}",
                f"--authentication-kubeconfig={kcm_config}",
                f"--authorization-kubeconfig={kcm_config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--service-account-private-key-file={service_account.key}",
                f"--root-ca-file={ca.cert_path}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
                # HorizontalPodAutoscalers (spec.autoscaler) act within seconds, not the default 15 s.
                "--horizontal-pod-autoscaler-sync-period=3s",
            ],
        )
        self._start_control_plane_process(
            "kube-scheduler",
            [
                tool("kube-scheduler"),
                f"--kubeconfig={scheduler_config}",
                f"--authentication-kubeconfig={scheduler_config}",
                f"--authorization-kubeconfig={scheduler_config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
            ],
        )
        self._start_kwok()
        self._create_nodes()
        self._install_crds(tools_share() / "istio-crds.yaml", "Istio CRDs")
        self._install_crds(tools_share() / "gateway-api-crds", "Gateway API CRDs")
        self._create_local_gateway()
        wait_until(self._default_service_account_exists, timeout=timeout, what="default ServiceAccount")
        self._enforce_pod_security("default")
        log.info(
            "Started local cluster",
            extra={"server": self.server, "seconds": round(time.monotonic() - started, 1)},
        )
        return self.info

    def stop(self) -> None:
        self.processes.stop_all()

    # --- faults, as tests/integration/test_faults.py injects them --------------------------------------

    def kill_apiserver(self) -> None:
        """SIGKILLs the kube-apiserver (its port refuses connections until `start_apiserver_again`)."""
        self.processes.kill("kube-apiserver")

    def start_apiserver_again(self, timeout: float = 60.0) -> None:
        """Starts the killed kube-apiserver with its first command (same port, certificates, etcd)."""
        self.processes.start_again("kube-apiserver")
        wait_until(self._healthy, timeout=timeout, what="restarted kube-apiserver /readyz")

    def freeze_apiserver(self) -> None:
        """SIGSTOPs the kube-apiserver: connections are accepted by the kernel and never answered."""
        self.processes.signal("kube-apiserver", signal.SIGSTOP)

    def resume_apiserver(self, timeout: float = 60.0) -> None:
        self.processes.signal("kube-apiserver", signal.SIGCONT)
        wait_until(self._healthy, timeout=timeout, what="resumed kube-apiserver /readyz")

    def restart_etcd(self, timeout: float = 60.0) -> None:
        """SIGKILLs etcd and starts it again on the same data folder and ports, then waits for the
        kube-apiserver to be ready on it again."""
        self.processes.kill("etcd")
        self.processes.start_again("etcd")
        wait_until(self._healthy, timeout=timeout, what="kube-apiserver /readyz after etcd restarted")

    # --- processes -------------------------------------------------------------------------------------

    def _start_control_plane_process(self, name: str, argv: list[str]) -> None:
        environment = {"GOGC": CONTROL_PLANE_GOGC, **os.environ}
        self.processes.start(name, argv, env=environment)

    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self._start_control_plane_process(
            "etcd",
            [
                tool("etcd"),
                "--name=local",
                f"--data-dir={self.directory / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=local={peer_url}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

    def _start_apiserver(self, ca: CertificateAuthority, serving: KeyPair, sa: KeyPair) -> None:
        self._start_control_plane_process(
            "kube-apiserver",
            [
                tool("kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert_path}",
                f"--service-account-key-file={sa.cert}",
                f"--service-account-signing-key-file={sa.key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--cert-dir={self.pki_dir}",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
            ],
        )

    def _start_kwok(self) -> None:
        stages = sorted(str(path) for path in (tools_share() / "kwok-stages").glob("*.yaml"))
        if not stages:
            raise RuntimeError("kwok stage configs are missing from .tools/share: run `make tools`")
        self._start_control_plane_process(
            "kwok",
            [
                tool("kwok"),
                f"--kubeconfig={self.kubeconfig}",
                "--manage-all-nodes=true",
                "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{free_port()}",
                *[f"--config={stage}" for stage in stages],
            ],
        )

    # --- API calls (plain HTTPS: the harness must not depend on the code it tests) ----------------------

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, context=self._ssl, timeout=30) as response:
            payload = response.read()
        return json.loads(payload) if payload.startswith(b"{") else payload.decode()

    def _healthy(self) -> bool:
        self.processes.check_alive()
        return bool(self.request("GET", "/readyz") == "ok")

    def _default_service_account_exists(self) -> bool:
        self.processes.check_alive()
        self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")
        return True

    def _enforce_pod_security(self, namespace: str) -> None:
        """What a cluster administrator does for the namespaces CanaryApps live in: Pod Security enforced
        (and warned about) at the reconciler's default level."""
        self.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}",
            {"metadata": {"labels": POD_SECURITY_LABELS}},
            content_type="application/merge-patch+json",
        )

    def _create_nodes(self) -> None:
        for index in range(self.node_count):
            name = f"kwok-node-{index}"
            self.request(
                "POST",
                "/api/v1/nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                        "labels": {"kubernetes.io/hostname": name, "type": "kwok"},
                    },
                    "status": {
                        "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                        "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                    },
                },
            )

        def nodes_ready() -> bool:
            self.processes.check_alive()
            nodes = self.request("GET", "/api/v1/nodes")["items"]
            ready = [
                node
                for node in nodes
                if any(
                    cond["type"] == "Ready" and cond["status"] == "True"
                    for cond in node.get("status", {}).get("conditions", [])
                )
                # The node lifecycle controller lifts the not-ready taint the API server puts on new nodes.
                and not any(
                    taint["key"].startswith("node.kubernetes.io/") for taint in node["spec"].get("taints", [])
                )
            ]
            return len(ready) == self.node_count

        wait_until(nodes_ready, timeout=60, what="kwok nodes")

    def _install_crds(self, path: Path, what: str) -> None:
        """Creates every CRD of a YAML file, or of each YAML file in a folder, and waits until each is
        established; other documents (the Gateway API bundle's admission policy guarding CRD upgrades) are
        not installed."""
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        if not path.exists() or not files:
            raise RuntimeError(f"{what} are missing from .tools/share ({path}): run `make tools`")
        names = []
        for file in files:
            for document in yaml_documents(file):
                if not document or document.get("kind") != "CustomResourceDefinition":
                    continue
                self.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", document)
                names.append(document["metadata"]["name"])
        self.wait_for_crds(names)

    def _create_local_gateway(self) -> None:
        """The GatewayClass the local traffic layer implements and its Gateway, as a cluster administrator
        creates them for a Gateway API implementation."""
        self.request(
            "POST",
            f"{GATEWAY_API}/gatewayclasses",
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "GatewayClass",
                "metadata": {"name": LOCAL_GATEWAY_CLASS},
                "spec": {"controllerName": CONTROLLER_NAME},
            },
        )
        self.request("POST", "/api/v1/namespaces", {"metadata": {"name": LOCAL_GATEWAY_NAMESPACE}})
        self.request(
            "POST",
            f"{GATEWAY_API}/namespaces/{LOCAL_GATEWAY_NAMESPACE}/gateways",
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": LOCAL_GATEWAY, "namespace": LOCAL_GATEWAY_NAMESPACE},
                "spec": {
                    "gatewayClassName": LOCAL_GATEWAY_CLASS,
                    "listeners": [
                        {
                            "name": LOCAL_GATEWAY_LISTENER,
                            "protocol": "HTTP",
                            "port": 80,
                            "allowedRoutes": {"namespaces": {"from": "All"}},
                        }
                    ],
                },
            },
        )

    def apply_project_crds(self) -> None:
        """Creates (or replaces) the project's CRDs, the ones crds/kustomization.yaml lists (CanaryApp,
        MetricTemplate, ClusterMetricTemplate), and waits until each is established."""
        folder = REPO_ROOT / "crds"
        for resource in yaml.safe_load((folder / "kustomization.yaml").read_text())["resources"]:
            self.apply_crd_file(folder / resource)

    def apply_crd_file(self, path: Path) -> None:
        """Creates (or replaces) every CRD in a YAML file and waits until each is established."""
        names = []
        for document in yaml_documents(path):
            if not document:
                continue
            name = document["metadata"]["name"]
            try:
                current = self.request(
                    "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
                )
                document["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self.request(
                    "PUT", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", document
                )
            except urllib.error.HTTPError as error:
                if error.code != 404:
                    raise
                self.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", document)
            names.append(name)
        self.wait_for_crds(names)

    def wait_for_crds(self, names: list[str]) -> None:
        def established() -> bool:
            for name in names:
                crd = self.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conditions = crd.get("status", {}).get("conditions", [])
                if not any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    return False
            return True

        wait_until(established, timeout=60, what="CRDs established")


@contextmanager
def running(directory: Path | None = None, node_count: int = FAKE_NODE_COUNT) -> Iterator[LocalCluster]:
    """A started local cluster in `directory` (a temporary folder by default), stopped on exit."""
    owned = directory is None
    root = Path(tempfile.mkdtemp(prefix="canaryapp-cluster-")) if directory is None else directory
    cluster = LocalCluster(root, node_count=node_count)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if owned and not os.environ.get("CANARYAPP_KEEP_CLUSTER_DIR"):
            shutil.rmtree(root, ignore_errors=True)
