"""examples/limited-user/ on a real API server with RBAC: the user it creates manages CanaryApps in
`default` and is refused everything else, through the Kubernetes client and the README's own kubectl lines."""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from devenv.cluster import LocalCluster
from devenv.processes import REPO_ROOT
from tests.integration.helpers import LIMITED_USER, LIMITED_USER_EXAMPLE, kubectl

pytestmark = pytest.mark.integration

EXAMPLE = LIMITED_USER_EXAMPLE
USER = LIMITED_USER
GROUP, VERSION, PLURAL = "canary.atze.io", "v1", "canaryapps"


def sample_canaryapp(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO_ROOT / "examples" / "canaryapp-sample.yaml").read_text())
    document["metadata"] = {"name": name}
    return document


def test_the_user_creates_reads_changes_and_deletes_a_canaryapp(
    limited_user: kubernetes.client.ApiClient, kube: kubernetes.client.ApiClient
) -> None:
    as_user = kubernetes.client.CustomObjectsApi(limited_user)
    name = f"limited-{uuid.uuid4().hex[:6]}"
    as_user.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, sample_canaryapp(name))
    try:
        read = as_user.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
        assert read["spec"]["image"] == "status-code-server:v1"
        listed = as_user.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
        assert name in [item["metadata"]["name"] for item in listed["items"]]
        as_user.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, name, {"spec": {"image": "status-code-server:v2"}}
        )
        as_user.get_namespaced_custom_object_status(GROUP, VERSION, "default", PLURAL, name)
        as_admin = kubernetes.client.CustomObjectsApi(kube)
        stored = as_admin.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
        assert stored["spec"]["image"] == "status-code-server:v2"
    finally:
        as_user.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, name)
    with pytest.raises(ApiException) as gone:
        kubernetes.client.CustomObjectsApi(kube).get_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, name
        )
    assert gone.value.status == 404


def deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "a", "image": "a"}]},
            },
        },
    }


FORBIDDEN: list[Any] = [
    pytest.param(lambda c: kubernetes.client.CoreV1Api(c).list_namespaced_pod("default"), id="list-pods"),
    pytest.param(
        lambda c: kubernetes.client.AppsV1Api(c).list_namespaced_deployment("default"), id="list-deployments"
    ),
    pytest.param(
        lambda c: kubernetes.client.CustomObjectsApi(c).list_namespaced_custom_object(
            GROUP, VERSION, "kube-system", PLURAL
        ),
        id="list-canaryapps-in-kube-system",
    ),
    pytest.param(
        lambda c: kubernetes.client.AppsV1Api(c).create_namespaced_deployment(
            "default", deployment("sneaky")
        ),
        id="create-deployment",
    ),
    pytest.param(
        lambda c: kubernetes.client.CustomObjectsApi(c).patch_namespaced_custom_object_status(
            GROUP, VERSION, "default", PLURAL, "any", {"status": {"phase": "Succeeded"}}
        ),
        id="write-canaryapp-status",
    ),
    pytest.param(
        lambda c: kubernetes.client.CoreV1Api(c).list_namespaced_service("default"), id="list-services"
    ),
]


@pytest.mark.parametrize("attempt", FORBIDDEN)
def test_the_user_is_refused_everything_else(
    limited_user: kubernetes.client.ApiClient, attempt: Callable[[kubernetes.client.ApiClient], object]
) -> None:
    with pytest.raises(ApiException) as refused:
        attempt(limited_user)
    assert refused.value.status == 403, refused.value.body
    assert USER in refused.value.body


def readme_commands() -> list[tuple[str, str]]:
    """The README's `kubectl --as=...` lines with the outcome each one's comment promises."""
    commands = []
    for line in (EXAMPLE / "README.md").read_text().splitlines():
        if line.startswith(f"kubectl --as={USER} "):
            command, _, expected = line.partition("#")
            commands.append((command.strip(), expected.strip()))
    return commands


def test_the_readme_shows_the_five_commands() -> None:
    assert [expected for _, expected in readme_commands()] == [
        "allowed",
        "yes",
        "Forbidden",
        "Forbidden",
        "Forbidden",
    ]


@pytest.mark.parametrize(("command", "expected"), readme_commands())
def test_the_readme_commands_do_what_their_comments_say(
    limited_user: kubernetes.client.ApiClient, cluster: LocalCluster, command: str, expected: str
) -> None:
    result = kubectl(cluster.kubeconfig, *shlex.split(command)[1:])
    if expected == "Forbidden":
        assert result.returncode != 0
        assert "Error from server (Forbidden)" in result.stderr, result.stderr
    elif expected == "yes":
        assert (result.returncode, result.stdout.strip()) == (0, "yes"), result.stderr
    else:
        assert expected == "allowed"
        assert result.returncode == 0, result.stderr
