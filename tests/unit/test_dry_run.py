"""The dry run (reconciler/dry_run.py, what `pulumi preview` runs): the next step of the CanaryApp its stack
names, and a deputy too: it queries nothing the reconciler would not."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest

from devenv.hostile_endpoint import HostileEndpoint
from reconciler.core.endpoints import CREDENTIALS_LABEL, SecretData
from reconciler.core.errors import PermanentError
from reconciler.core.grants import GRANT_ANNOTATION
from reconciler.core.model import CanaryApp
from reconciler.core.names import Router
from reconciler.core.policy import MetricsPolicy
from reconciler.core.readiness import DeploymentState
from reconciler.dry_run import next_step_of, split_stack_name

LOCAL = MetricsPolicy(("http://127.0.0.1:*",))
DUE = datetime.datetime(2026, 1, 1, 0, 5, tzinfo=datetime.UTC)  # a check is due: the last was 5 minutes ago


class DryRunCluster:
    """What the dry run reads, with its caller's rights: the CanaryApp, its Deployments and its Secret."""

    def __init__(self, url: str, annotations: dict[str, str]) -> None:
        self.app = {
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1"},
            "spec": {
                "image": "web:v2",
                "imageListenPort": 80,
                "prometheusQuery": "errors",
                "prometheusURL": url,
                "prometheusSecretRef": {"name": "creds"},
                "minCanaryRequests": 0,
            },
            "status": {
                "phase": "Progressing",
                "primaryImage": "web:v1",
                "canaryImage": "web:v2",
                "canaryWeight": 10,
                "lastTrafficShift": "2026-01-01T00:00:00Z",
                "lastCheckTime": "2026-01-01T00:00:00Z",
            },
        }
        self.secret = SecretData({CREDENTIALS_LABEL: "true"}, {"token": "dry-run-t0ken"}, annotations)

    def get_canary_app(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.app if (namespace, name) == ("shop", "web") else None

    def deployment_state(self, namespace: str, name: str) -> DeploymentState | None:
        if name == "web-primary":
            return DeploymentState(image="web:v1", ready=True)
        return DeploymentState(
            image="web:v2", ready=True, revision=CanaryApp.model_validate(self.app).spec.revision
        )

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        return self.secret if (namespace, name) == ("shop", "creds") else None

    def http_route(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None


@pytest.fixture
def echo() -> Iterator[HostileEndpoint]:
    with HostileEndpoint() as endpoint:
        yield endpoint


GRANTED = {GRANT_ANNOTATION: "web"}


def test_the_dry_run_refuses_a_url_the_reconciler_refuses(echo: HostileEndpoint) -> None:
    cluster = DryRunCluster(echo.url("echo"), GRANTED)
    with pytest.raises(PermanentError) as refused:
        next_step_of(cluster, "shop", "web", MetricsPolicy(), DUE)  # type: ignore[arg-type]
    assert "spec.prometheusURL: 'http://127.0.0.1:" in str(refused.value)
    assert "set CANARYAPP_ALLOWED_METRIC_URLS as the reconciler has it" in str(refused.value)
    assert echo.requests == []


def test_the_dry_run_queries_with_a_granted_secret_only(echo: HostileEndpoint) -> None:
    granted = DryRunCluster(echo.url("echo"), GRANTED)
    next_step_of(granted, "shop", "web", LOCAL, DUE)  # type: ignore[arg-type]
    assert [headers["authorization"] for headers in echo.headers_received("echo")] == ["Bearer dry-run-t0ken"]
    elsewhere = DryRunCluster(echo.url("echo"), {GRANT_ANNOTATION: "api"})
    step = next_step_of(elsewhere, "shop", "web", LOCAL, DUE)  # type: ignore[arg-type]
    assert "is not granted to CanaryApp shop/web" in step.decision.message
    assert len(echo.requests) == 1


def test_the_dry_run_follows_no_redirect_the_policy_does_not_allow(echo: HostileEndpoint) -> None:
    with HostileEndpoint() as target:
        elsewhere = target.url("echo").replace("127.0.0.1", "localhost")  # not what LOCAL allows
        cluster = DryRunCluster(echo.url("redirect", target=elsewhere), GRANTED)
        step = next_step_of(cluster, "shop", "web", LOCAL, DUE)  # type: ignore[arg-type]
    assert "which --allowed-metric-urls does not allow; not followed" in step.decision.message
    assert target.requests == []


@pytest.mark.parametrize("stack", ["web", "shop.", ".web", ""])
def test_a_stack_name_that_names_no_canaryapp_is_refused_with_the_form_it_takes(stack: str) -> None:
    with pytest.raises(PermanentError) as refused:
        split_stack_name(stack)
    assert "use `--stack <namespace>.<name>`" in str(refused.value)


def test_a_stack_name_splits_at_its_first_dot() -> None:
    assert split_stack_name("shop.web.v2") == ("shop", "web.v2")


def test_the_dry_run_names_a_canaryapp_that_does_not_exist(echo: HostileEndpoint) -> None:
    cluster = DryRunCluster(echo.url("echo"), GRANTED)
    with pytest.raises(PermanentError) as refused:
        next_step_of(cluster, "shop", "api", LOCAL, DUE)  # type: ignore[arg-type]
    assert str(refused.value) == "CanaryApp shop/api does not exist: check the stack name and KUBECONFIG"
    assert echo.requests == []


def test_the_next_step_is_what_the_reconciler_would_declare(echo: HostileEndpoint) -> None:
    cluster = DryRunCluster(echo.url("echo"), GRANTED)
    step = next_step_of(cluster, "shop", "web", LOCAL, DUE)  # type: ignore[arg-type]
    assert (step.desired.namespace, step.desired.name) == ("shop", "web")
    assert step.desired.canary_weight == step.decision.status.canary_weight
    assert step.desired.primary_weight + step.desired.canary_weight == 100


def test_the_dry_run_previews_the_router_the_reconciler_applied_when_the_spec_names_none(
    echo: HostileEndpoint,
) -> None:
    """A CanaryApp that names no router has the one of the reconciler's --default-router, which the dry run
    cannot know but the status records."""
    cluster = DryRunCluster(echo.url("echo"), GRANTED)
    assert next_step_of(cluster, "shop", "web", LOCAL, DUE).desired.router == Router.ISTIO  # type: ignore[arg-type]
    cluster.app["spec"]["parentRefs"] = [{"name": "own"}]
    cluster.app["status"]["router"] = "gateway-api"
    step = next_step_of(cluster, "shop", "web", LOCAL, DUE)  # type: ignore[arg-type]
    assert step.desired.router == Router.GATEWAY_API
    assert step.desired.parent_refs[0].name == "own"
