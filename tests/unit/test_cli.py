"""The command lines: `canaryapp run` refuses to start without the binaries every step needs, saying what to
do; `kubectl canaryapp` prints what the status quotes from metric endpoints without its escape sequences;
the dry run (`pulumi preview`) queries nothing the reconciler would not."""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devenv.hostile_endpoint import HostileEndpoint
from reconciler import plugin
from reconciler.core.endpoints import CREDENTIALS_LABEL, SecretData
from reconciler.core.errors import PermanentError
from reconciler.core.grants import GRANT_ANNOTATION
from reconciler.core.model import CanaryApp
from reconciler.core.policy import MetricsPolicy
from reconciler.core.readiness import DeploymentState
from reconciler.dry_run import next_step_of

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_run_names_missing_binaries_and_the_fix() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from reconciler.cli import main; raise SystemExit(main())", "run"],
        env={"PATH": "/nonexistent", "HOME": "/tmp"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "pulumi, pulumi-resource-kubernetes not found on PATH" in result.stderr
    assert "make tools" in result.stderr


HOSTILE = "\x1b[2J\x1b[H\x1b[32mPromoted\x1b[0m\r\x1b]0;owned\x07"


def hostile_app() -> CanaryApp:
    check = {
        "time": "2026-01-01T00:00:00Z",
        "weight": 10,
        "outcome": "ErrorsFound",
        "message": f"query returned 1 series: {HOSTILE}",
        "series": [{"labels": {"pod": HOSTILE}, "value": f"1{HOSTILE}"}],
    }
    rollout = {
        "image": "web:v2",
        "startedAt": "2026-01-01T00:00:00Z",
        "result": "RolledBack",
        "reason": f"errors found: {HOSTILE}",
    }
    return CanaryApp.model_validate(
        {
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "image": "web:v2",
                "imageListenPort": 80,
                "prometheusQuery": "q",
                "prometheusURL": "http://p",
            },
            "status": {
                "phase": "Failed",
                "message": f"Rolled back: {HOSTILE}",
                "checks": [check],
                "rollouts": [rollout],
            },
        }
    )


@pytest.mark.parametrize(
    "render",
    [
        pytest.param(lambda app: plugin.render_status(app, NOW), id="status"),
        pytest.param(plugin.render_history, id="history"),
    ],
)
def test_the_plugin_prints_no_escape_sequence_from_the_status(render: Callable[[CanaryApp], str]) -> None:
    text = render(hostile_app())
    assert "Promoted" in text
    assert not any(character in text for character in "\x1b\r\x07")


# The dry run (`pulumi preview`, reconciler/dry_run.py) is a deputy too --------------------------------------

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
