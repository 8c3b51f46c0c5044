"""Prometheus in the real world: a real Prometheus behind basic auth and TLS (its own --web.config.file) is
queried with the credentials and CA of a labelled Secret granted to the CanaryApp; a CanaryApp naming a
Secret not marked for metric queries, or not granted to it, is refused before anything is created, and the
Secret never used; a URL the operator did not allow is never contacted; a redirect to a host it did not
allow is not followed; an oversized answer ends as a failed query. The reconciler runs with
--allowed-metric-urls=http(s)://127.0.0.1:* (devenv/reconciler_process.py): `localhost` is *not* allowed."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from devenv.exporter import ControlledExporter
from devenv.hostile_endpoint import HostileEndpoint
from devenv.prometheus import PrometheusServer
from devenv.reconciler_process import ReconcilerProcess
from reconciler.core.endpoints import CREDENTIALS_LABEL
from reconciler.core.grants import GRANT_ANNOTATION
from tests.integration.helpers import Apps, canary_app, error_query, traffic_query, wait_for

pytestmark = pytest.mark.integration

ROLLOUT_TIMEOUT = 180
PASSWORD = "correct-horse-battery"  # the test's own Prometheus


@pytest.fixture(scope="module")
def guarded_prometheus(
    exporter: ControlledExporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    server = PrometheusServer(
        tmp_path_factory.mktemp("guarded-prometheus"),
        {"controlled": [exporter.address]},
        tls=True,
        basic_auth=("canary", PASSWORD),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def apps(kube: kubernetes.client.ApiClient, namespace: str) -> Apps:
    return Apps(kube, namespace)


@pytest.fixture
def hostile() -> Iterator[HostileEndpoint]:
    with HostileEndpoint() as server:
        yield server


def create_secret(
    apps: Apps, name: str, data: dict[str, str], *, granted_to: str, marked: bool = True
) -> None:
    """A Secret marked for metric queries (unless not `marked`), granted to the CanaryApps `granted_to`."""
    labels = {CREDENTIALS_LABEL: "true"} if marked else {}
    apps.core.create_namespaced_secret(
        apps.namespace,
        {
            "metadata": {"name": name, "labels": labels, "annotations": {GRANT_ANNOTATION: granted_to}},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
        },
    )


def set_gauges(exporter: ControlledExporter, namespace: str, name: str) -> None:
    exporter.set("canary_errors", {"namespace": namespace, "canaryapp": name}, 0)
    exporter.set("canary_requests", {"namespace": namespace, "canaryapp": name}, 50)


def create_ready(apps: Apps, name: str, url: str, **spec: Any) -> None:
    """A CanaryApp on app:v1 querying `url`, with the traffic check on unless `spec` turns it off, Ready."""
    apps.create_ready(name, url, **{"canaryTrafficQuery": traffic_query(), "minCanaryRequests": 1, **spec})


def rolled_back_for(apps: Apps, name: str) -> dict[str, Any]:
    apps.patch_spec(name, image="app:v2")
    return wait_for(lambda: apps.phase_is(name, "Failed"), ROLLOUT_TIMEOUT, f"{name} rolled back")


def test_a_prometheus_behind_basic_auth_and_tls_is_queried_with_the_secrets_credentials(
    apps: Apps,
    reconciler: ReconcilerProcess,
    exporter: ControlledExporter,
    guarded_prometheus: PrometheusServer,
) -> None:
    assert guarded_prometheus.url.startswith("https://")
    assert guarded_prometheus.ca_pem is not None
    create_secret(
        apps,
        "prom-creds",
        {"username": "canary", "password": PASSWORD, "ca.crt": guarded_prometheus.ca_pem},
        granted_to="web",
    )
    set_gauges(exporter, apps.namespace, "web")
    # Every check is to be clean, the first one too: Prometheus must hold the canary's requests before the
    # rollout starts (a loaded machine's scrape came late once, and the first check saw no canary traffic).
    requests = f'canary_requests{{namespace="{apps.namespace}", canaryapp="web"}} > 0'
    wait_for(lambda: guarded_prometheus.query(requests), 30, "Prometheus to hold the canary's requests")
    create_ready(
        apps,
        "web",
        guarded_prometheus.url,
        prometheusSecretRef={"name": "prom-creds"},
        prometheusHeaders={"X-Scope-OrgID": "team-a"},
    )
    apps.patch_spec("web", image="app:v2")
    promoted = wait_for(lambda: apps.phase_is("web", "Succeeded"), ROLLOUT_TIMEOUT, "v2 promoted")
    # The checks saw the exporter's samples through TLS and basic auth: clean, with the canary's requests.
    assert {check["outcome"] for check in promoted["checks"]} == {"Clean"}
    assert {check["canaryRequests"] for check in promoted["checks"]} == {50}
    assert PASSWORD not in str(promoted)
    assert PASSWORD not in reconciler.log()


@pytest.mark.parametrize(
    ("marked", "granted_to", "fragment"),
    [
        pytest.param(
            False,
            "api",
            f"is not marked for metric queries: label it {CREDENTIALS_LABEL}=true",
            id="not marked",
        ),
        pytest.param(
            True,
            "web",
            f"is not granted to CanaryApp {{namespace}}/api: annotate the Secret {{namespace}}/db-password "
            f"with {GRANT_ANNOTATION}=api",
            id="granted to another CanaryApp",
        ),
    ],
)
def test_a_secret_not_meant_for_this_canaryapps_queries_is_never_used(
    apps: Apps,
    reconciler: ReconcilerProcess,
    guarded_prometheus: PrometheusServer,
    marked: bool,
    granted_to: str,
    fragment: str,
) -> None:
    create_secret(
        apps,
        "db-password",
        {"username": "canary", "password": PASSWORD},
        granted_to=granted_to,
        marked=marked,
    )
    apps.create(
        canary_app(
            "api",
            "app:v1",
            error_query(apps.namespace, "api"),
            guarded_prometheus.url,
            prometheusSecretRef={"name": "db-password"},
        )
    )
    secret = f"the Secret {apps.namespace}/db-password (spec.prometheusSecretRef)"
    expected = f"spec.prometheusSecretRef: {secret} "
    status = wait_for(
        lambda: expected in apps.status("api").get("message", "") and apps.status("api"),
        60,
        "the Secret refused",
    )
    assert fragment.format(namespace=apps.namespace) in status["message"]
    assert apps.deployment("api-primary") is None  # refused before anything was created
    assert PASSWORD not in str(apps.get("api"))
    assert PASSWORD not in reconciler.log()


def test_a_url_the_operator_did_not_allow_is_invalid_and_never_contacted(
    apps: Apps, reconciler: ReconcilerProcess, hostile: HostileEndpoint
) -> None:
    url = hostile.url("echo").replace("127.0.0.1", "localhost")
    apps.create(canary_app("web", "app:v1", error_query(apps.namespace, "web"), url))
    status = wait_for(
        lambda: "--allowed-metric-urls" in apps.status("web").get("message", "") and apps.status("web"),
        60,
        "the URL refused",
    )
    assert f"spec.prometheusURL: '{url}' is not allowed" in status["message"]
    assert apps.deployment("web-primary") is None
    assert hostile.requests == []


@pytest.mark.parametrize(
    ("behaviour", "fragment"),
    [
        pytest.param("redirect", "which --allowed-metric-urls does not allow; not followed", id="redirect"),
        pytest.param("huge", "answered more than 4096 KiB", id="oversized answer"),
    ],
)
def test_a_bad_answer_is_a_failed_query_that_rolls_back(
    apps: Apps, reconciler: ReconcilerProcess, tmp_path: Path, behaviour: str, fragment: str
) -> None:
    with HostileEndpoint() as target, HostileEndpoint() as hostile:
        # The redirect goes to another local server under a name the reconciler may not contact.
        disallowed = target.url("echo").replace("127.0.0.1", "localhost")
        url = hostile.url(behaviour, target=disallowed) if behaviour == "redirect" else hostile.url(behaviour)
        create_ready(apps, "web", url, minCanaryRequests=0)
        failed = rolled_back_for(apps, "web")
        check = failed["checks"][-1]
        assert check["outcome"] == "QueryFailed"
        assert fragment in check["message"], check["message"]
        assert failed["rollouts"][-1]["result"] == "RolledBack"
        assert target.requests == []  # the redirect's target never got a request
        assert len(str(failed)) < 64 * 1024  # nothing of a huge answer reached the status
