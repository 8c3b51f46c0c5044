"""examples/argocd-app/ against Argo CD's own CRDs (v3.6.1, which `make tools` fetches with
tools/argocd-crds/) on a real API server: the AppProject and Application pass server-side validation, broken
copies do not, and the synced CanaryApps and the argocd-cm patch are accepted too. Every create is a dry run,
so nothing is stored."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from devenv.cluster import LocalCluster
from devenv.processes import REPO_ROOT, tools_share

pytestmark = pytest.mark.integration

EXAMPLE = REPO_ROOT / "examples" / "argocd-app"
ARGO_GROUP, ARGO_VERSION = "argoproj.io", "v1alpha1"


def ensure_namespace(kube: kubernetes.client.ApiClient, name: str) -> None:
    try:
        kubernetes.client.CoreV1Api(kube).create_namespace({"metadata": {"name": name}})
    except ApiException as error:
        if error.status != 409:
            raise


@pytest.fixture(scope="module")
def argocd(cluster: LocalCluster, kube: kubernetes.client.ApiClient) -> kubernetes.client.ApiClient:
    """The cluster with Argo CD's Application and AppProject CRDs and the namespaces the example uses."""
    folder = tools_share() / "argocd-crds"
    crd_files = [folder / "application-crd.yaml", folder / "appproject-crd.yaml"]
    missing = [str(path) for path in crd_files if not path.exists()]
    if missing:
        pytest.fail(f"Argo CD's CRDs are missing ({', '.join(missing)}): run `make tools`")
    for path in crd_files:
        cluster.apply_crd_file(path)
    ensure_namespace(kube, "argocd")
    ensure_namespace(kube, "canaryapps")
    return kube


def manifest(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLE / name).read_text())
    return document


def dry_run_create(kube: kubernetes.client.ApiClient, plural: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = kubernetes.client.CustomObjectsApi(kube).create_namespaced_custom_object(
        ARGO_GROUP, ARGO_VERSION, body["metadata"]["namespace"], plural, body, dry_run="All"
    )
    return created


@pytest.mark.parametrize(
    ("file", "plural"),
    [
        pytest.param("appproject.yaml", "appprojects", id="AppProject"),
        pytest.param("application.yaml", "applications", id="Application"),
    ],
)
def test_the_manifest_passes_argo_cds_schema(
    argocd: kubernetes.client.ApiClient, file: str, plural: str
) -> None:
    body = manifest(file)
    created = dry_run_create(argocd, plural, body)
    assert created["kind"] == body["kind"]
    assert created["spec"] == body["spec"]
    with pytest.raises(ApiException) as not_stored:
        kubernetes.client.CustomObjectsApi(argocd).get_namespaced_custom_object(
            ARGO_GROUP, ARGO_VERSION, "argocd", plural, body["metadata"]["name"]
        )
    assert not_stored.value.status == 404


def without_repo_url(application: dict[str, Any]) -> dict[str, Any]:
    del application["spec"]["source"]["repoURL"]
    return application


def with_kindless_whitelist_entry(project: dict[str, Any]) -> dict[str, Any]:
    project["spec"]["namespaceResourceWhitelist"] = [{"group": "canary.atze.io"}]
    return project


@pytest.mark.parametrize(
    ("file", "plural", "break_it", "field"),
    [
        pytest.param("application.yaml", "applications", without_repo_url, "repoURL", id="Application"),
        pytest.param(
            "appproject.yaml", "appprojects", with_kindless_whitelist_entry, "kind", id="AppProject"
        ),
    ],
)
def test_the_schema_really_checks_the_manifest(
    argocd: kubernetes.client.ApiClient, file: str, plural: str, break_it: Any, field: str
) -> None:
    broken = break_it(copy.deepcopy(manifest(file)))
    with pytest.raises(ApiException) as rejected:
        dry_run_create(argocd, plural, broken)
    assert rejected.value.status == 422
    assert field in rejected.value.body


def test_the_synced_canaryapps_pass_the_canaryapp_crd(argocd: kubernetes.client.ApiClient) -> None:
    paths = sorted((EXAMPLE / "canaryapps").glob("*.yaml"))
    assert paths
    for path in paths:
        body = yaml.safe_load(path.read_text())
        created = kubernetes.client.CustomObjectsApi(argocd).create_namespaced_custom_object(
            "canary.atze.io", "v1", "canaryapps", "canaryapps", body, dry_run="All"
        )
        assert created["spec"]["image"] == body["spec"]["image"], path


def test_the_argocd_cm_patch_is_a_valid_config_map(argocd: kubernetes.client.ApiClient) -> None:
    body = manifest("argocd-cm-patch.yaml")
    created = kubernetes.client.CoreV1Api(argocd).create_namespaced_config_map("argocd", body, dry_run="All")
    assert created.data == body["data"]
