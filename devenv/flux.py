"""Flux on the local cluster: a real Git repository, an artifact server that plays source-controller's part
for it, and Flux's real kustomize-controller as a process.

source-controller (Git, Helm, OCI, cloud SDKs) is not built: Flux 2.7 opened the ExternalArtifact API to
third-party sources, and this module is one. It packs the tree of a commit of a local bare Git repository as
the tar.gz Flux fetches, serves it over HTTP on loopback and writes the ExternalArtifact's status as
source-controller writes a GitRepository's (URL, revision `main@sha1:<commit>`, digest `sha256:<hex>`,
lastUpdateTime, Ready). kustomize-controller then fetches, verifies, builds, applies and health-checks as it
does in a real cluster.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import subprocess
import threading
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from devenv.loopback import LoopbackServer
from devenv.processes import ProcessGroup, free_port, tool, tools_share, wait_until

log = logging.getLogger(__name__)

SOURCE_GROUP, SOURCE_VERSION = "source.toolkit.fluxcd.io", "v1"
KUSTOMIZE_GROUP, KUSTOMIZE_VERSION = "kustomize.toolkit.fluxcd.io", "v1"
BRANCH = "main"
GIT_TIMEOUT_SECONDS = 30
# The identity of the test's commits: fixed, so that nothing depends on the machine's Git configuration.
COMMITTER = {
    "GIT_AUTHOR_NAME": "canaryapp tests",
    "GIT_AUTHOR_EMAIL": "tests@canaryapp.invalid",
    "GIT_COMMITTER_NAME": "canaryapp tests",
    "GIT_COMMITTER_EMAIL": "tests@canaryapp.invalid",
}


def flux_crd_files() -> list[Path]:
    """The CRDs tools/flux-kustomize-controller/ fetched: Kustomization and the source kinds it watches."""
    folder = tools_share() / "flux-crds"
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise RuntimeError(f"Flux's CRDs are missing from {folder}: run `make tools`")
    return files


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **COMMITTER, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull},
        capture_output=True,
        timeout=GIT_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode()


class GitRepository:
    """A bare repository (what a Git server holds) and a clone the test commits from and pushes to it."""

    def __init__(self, directory: Path) -> None:
        self.bare = directory / "repository.git"
        self.clone = directory / "clone"
        directory.mkdir(parents=True, exist_ok=True)
        git("init", "--quiet", "--bare", f"--initial-branch={BRANCH}", str(self.bare), cwd=directory)
        git("init", "--quiet", f"--initial-branch={BRANCH}", str(self.clone), cwd=directory)
        git("remote", "add", "origin", str(self.bare), cwd=self.clone)

    def commit(self, files: Mapping[str, str], message: str) -> str:
        """Writes `files` (path relative to the repository: text), commits them and pushes to the bare
        repository; returns the commit's full SHA-1."""
        for relative, text in files.items():
            path = self.clone / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("add", "--all", cwd=self.clone)
        git("commit", "--quiet", "--message", message, cwd=self.clone)
        git("push", "--quiet", "origin", BRANCH, cwd=self.clone)
        return git("rev-parse", "HEAD", cwd=self.bare).strip()

    def archive(self, commit: str) -> bytes:
        """The tree of `commit` in the bare repository as a tar.gz, files at its root, as Flux expects."""
        result = subprocess.run(
            ["git", "archive", "--format=tar.gz", commit],
            cwd=self.bare,
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"git archive {commit} failed: {result.stderr.decode(errors='replace')}")
        return result.stdout


def artifact_status(url: str, path: str, commit: str, content: bytes, generation: int) -> dict[str, Any]:
    """An ExternalArtifact's status for `content`, the archive of `commit`, as source-controller words a
    GitRepository's: revision `<branch>@sha1:<commit>` and digest `sha256:<hex>` of the bytes served."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    revision = f"{BRANCH}@sha1:{commit}"
    return {
        "artifact": {
            "path": path,
            "url": url,
            "revision": revision,
            "digest": f"sha256:{hashlib.sha256(content).hexdigest()}",
            "lastUpdateTime": now,
            "size": len(content),
        },
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Succeeded",
                "message": f"stored artifact for revision '{revision}'",
                "lastTransitionTime": now,
                "observedGeneration": generation,
            }
        ],
    }


class ArtifactServer(LoopbackServer):
    """Serves the archives of a Git repository's commits over HTTP on loopback and publishes each as the
    artifact of an ExternalArtifact (created when missing)."""

    def __init__(self, repository: GitRepository) -> None:
        super().__init__()
        self.repository = repository
        self._archives: dict[str, bytes] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    content = server._archives.get(self.path.lstrip("/"))
                if content is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/gzip")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: object) -> None:
                log.debug("Served artifact request", extra={"request": format % args})

        self.serve(Handler)

    def publish(self, kube: kubernetes.client.ApiClient, namespace: str, name: str, commit: str) -> str:
        """Packs `commit`, serves it and writes it into ExternalArtifact `name`'s status; returns the
        revision Flux will report (`main@sha1:<commit>`)."""
        content = self.repository.archive(commit)
        path = f"externalartifact/{namespace}/{name}/{commit}.tar.gz"
        with self._lock:
            self._archives[path] = content
        custom = kubernetes.client.CustomObjectsApi(kube)
        generation = self._ensure(custom, namespace, name)
        status = artifact_status(f"http://127.0.0.1:{self.port}/{path}", path, commit, content, generation)
        custom.patch_namespaced_custom_object_status(
            SOURCE_GROUP, SOURCE_VERSION, namespace, "externalartifacts", name, {"status": status}
        )
        artifact = status["artifact"]
        log.info(
            "Published ExternalArtifact revision",
            extra={
                "namespace": namespace,
                "name": name,
                "revision": artifact["revision"],
                "digest": artifact["digest"],
                "size": artifact["size"],
            },
        )
        return str(artifact["revision"])

    def _ensure(self, custom: kubernetes.client.CustomObjectsApi, namespace: str, name: str) -> int:
        """The generation of ExternalArtifact `name`, created first when missing."""
        body = {
            "apiVersion": f"{SOURCE_GROUP}/{SOURCE_VERSION}",
            "kind": "ExternalArtifact",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {},
        }
        try:
            found: Any = custom.create_namespaced_custom_object(
                SOURCE_GROUP, SOURCE_VERSION, namespace, "externalartifacts", body
            )
        except ApiException as error:
            if error.status != 409:
                raise
            found = custom.get_namespaced_custom_object(
                SOURCE_GROUP, SOURCE_VERSION, namespace, "externalartifacts", name
            )
        return int(found["metadata"]["generation"])


class KustomizeController:
    """Flux's kustomize-controller as a process, watching one namespace, with ExternalArtifact sources on.

    It runs with the cluster's admin kubeconfig, as Flux's own deployment runs with cluster-admin, and applies
    every Kustomization as the ServiceAccount the Kustomization names (`spec.serviceAccountName`; one without
    is applied as `default`, which Flux's multi-tenancy lockdown recommends): Flux's impersonation is what
    limits what a Kustomization from Git can touch. Cross-namespace references and remote bases are refused.
    """

    def __init__(self, kubeconfig: Path, namespace: str, log_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.processes = ProcessGroup(log_dir)
        self.metrics_port = free_port()
        self.health_port = free_port()

    def start(self, timeout: float = 60.0) -> None:
        self.processes.start(
            "kustomize-controller",
            [
                tool("kustomize-controller"),
                f"--metrics-addr=127.0.0.1:{self.metrics_port}",
                f"--health-addr=127.0.0.1:{self.health_port}",
                "--watch-all-namespaces=false",
                "--feature-gates=ExternalArtifact=true",
                "--default-service-account=default",
                "--no-cross-namespace-refs=true",
                "--no-remote-bases=true",
                "--log-level=debug",
            ],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig), "RUNTIME_NAMESPACE": self.namespace},
        )
        wait_until(self._ready, timeout=timeout, what="kustomize-controller /readyz")

    def _ready(self) -> bool:
        self.processes.check_alive()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=5) as response:
            return bool(response.status == 200)

    def stop(self) -> None:
        self.processes.stop_all()

    def log_tail(self, lines: int = 40) -> str:
        return self.processes.log_tail("kustomize-controller", lines)
