"""What both command lines share (reconciler/commands.py): the backtest, a deputy that queries nothing the
reconciler would not and checks its window first, and reading a CanaryApp with errors a person can act on."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from devenv.hostile_endpoint import HostileEndpoint
from reconciler import commands
from reconciler.core.endpoints import CREDENTIALS_LABEL, SecretData
from reconciler.core.grants import GRANT_ANNOTATION
from tests.unit.core.test_backtest import app

# The backtest command is a deputy too: it applies the reconciler's MetricsPolicy and Secret rules -----------

ECHO = "{echo}"  # in a spec or flag: the URL of a local endpoint that records what it is sent
LOCAL = "http://127.0.0.1:*"
TOKEN = "backtest-t0ken"


def secret(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> SecretData:
    """A Secret holding a token, marked for metric queries and granted to `web` unless told otherwise."""
    return SecretData(
        {CREDENTIALS_LABEL: "true"} if labels is None else labels,
        {"token": TOKEN},
        {GRANT_ANNOTATION: "web"} if annotations is None else annotations,
    )


class Cluster:
    """The two reads the backtest makes, with its caller's rights: the CanaryApp and its Secret `creds`."""

    def __init__(self, app: dict[str, Any], secret: SecretData) -> None:
        self.app, self.secret = app, secret

    def get_canary_app(self, namespace: str, name: str) -> dict[str, Any] | None:
        metadata = self.app["metadata"]
        return self.app if (metadata["namespace"], metadata["name"]) == (namespace, name) else None

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        return self.secret if (namespace, name) == (self.app["metadata"]["namespace"], "creds") else None


def run_command(
    echo: HostileEndpoint,
    url: str,
    argv: list[str],
    environment: dict[str, str],
    the_secret: SecretData,
    key: str = "shop/web",
    asked: str | None = None,
) -> int:
    """`canaryapp backtest` of CanaryApp `key` (querying `url`, with the Secret `creds`) over ten minutes."""
    namespace, name = key.split("/")
    raw = app(prometheusURL=url.replace(ECHO, echo.url("echo")), minCanaryRequests=0).model_dump(
        by_alias=True, mode="json"
    )
    raw["metadata"] = {"namespace": namespace, "name": name}
    raw["spec"]["prometheusSecretRef"] = {"name": "creds"}
    parser = argparse.ArgumentParser()
    commands.add_backtest_window(parser)
    args = parser.parse_args(
        ["--from", "2026-11-28T10:00:00Z", "--to", "2026-11-28T10:10:00Z"]
        + [arg.replace(ECHO, echo.url("echo")) for arg in argv]
    )
    asked_namespace, asked_name = (asked or key).split("/")
    return commands.backtest_canary_app(
        Cluster(raw, the_secret), asked_namespace, asked_name, args, environment
    )


@pytest.fixture
def echo() -> Iterator[HostileEndpoint]:
    with HostileEndpoint() as endpoint:
        yield endpoint


@pytest.mark.parametrize(
    ("url", "argv", "environment", "the_secret", "key", "fragment"),
    [
        pytest.param(
            ECHO,
            [],
            {},
            secret(),
            "shop/web",
            "spec.prometheusURL: 'http://127.0.0.1:",
            id="a URL the default policy does not allow",
        ),
        pytest.param(
            ECHO,
            ["--allowed-metric-urls", "https://mimir.example.com"],
            {"CANARYAPP_ALLOWED_METRIC_URLS": LOCAL},
            secret(),
            "shop/web",
            "is not allowed: the reconciler queries only what its --allowed-metric-urls (or "
            "CANARYAPP_ALLOWED_METRIC_URLS) permits (https://mimir.example.com)",
            id="the flag before the variable",
        ),
        pytest.param(
            ECHO,
            ["--prometheus-url", ECHO],
            {},
            secret(),
            "shop/web",
            "spec.prometheusURL: 'http://127.0.0.1:",
            id="a URL of the caller's does not admit the spec's",
        ),
        pytest.param(
            "http://prometheus.istio-system:9090",
            ["--prometheus-url", ECHO],
            {},
            secret(annotations={GRANT_ANNOTATION: "prometheus"}),
            "istio-system/prometheus",
            "metadata.name: the CanaryApp's Service istio-system/prometheus would be the metric endpoint",
            id="a CanaryApp that would be the metric endpoint",
        ),
        pytest.param(
            ECHO,
            ["--allowed-metric-urls", LOCAL],
            {},
            secret(labels={}),
            "shop/web",
            "the Secret shop/creds (spec.prometheusSecretRef) is not marked for metric queries",
            id="a Secret not marked for metric queries",
        ),
        pytest.param(
            ECHO,
            [],
            {"CANARYAPP_ALLOWED_METRIC_URLS": LOCAL},
            secret(annotations={GRANT_ANNOTATION: "api"}),
            "shop/web",
            "the Secret shop/creds (spec.prometheusSecretRef) is not granted to CanaryApp shop/web: annotate "
            f"the Secret shop/creds with {GRANT_ANNOTATION}=web",
            id="a Secret granted to another CanaryApp",
        ),
    ],
)
def test_the_backtest_refuses_what_the_reconciler_refuses_before_any_request(
    echo: HostileEndpoint,
    url: str,
    argv: list[str],
    environment: dict[str, str],
    the_secret: SecretData,
    key: str,
    fragment: str,
) -> None:
    with pytest.raises(SystemExit) as refused:
        run_command(echo, url, argv, environment, the_secret, key)
    assert fragment in str(refused.value)
    assert TOKEN not in str(refused.value)
    assert echo.requests == []


@pytest.mark.parametrize(
    ("url", "argv", "environment"),
    [
        pytest.param(ECHO, ["--allowed-metric-urls", LOCAL], {}, id="allowed by the flag"),
        pytest.param(ECHO, [], {"CANARYAPP_ALLOWED_METRIC_URLS": LOCAL}, id="allowed by the variable"),
        pytest.param(
            "http://prometheus.istio-system:9090", ["--prometheus-url", ECHO], {}, id="the caller's own URL"
        ),
    ],
)
def test_the_backtest_queries_what_the_reconciler_would(
    echo: HostileEndpoint, url: str, argv: list[str], environment: dict[str, str]
) -> None:
    assert run_command(echo, url, argv, environment, secret()) == 0
    headers = echo.headers_received("echo")
    assert len(headers) == 5  # one error query per step: 10% to 50%, then promoted
    assert {received["authorization"] for received in headers} == {f"Bearer {TOKEN}"}


def test_the_backtest_follows_no_redirect_the_policy_does_not_allow(echo: HostileEndpoint) -> None:
    with HostileEndpoint() as target:
        elsewhere = target.url("echo").replace("127.0.0.1", "localhost")  # not what LOCAL allows
        redirect = echo.url("redirect", target=elsewhere)
        code = run_command(echo, redirect, ["--allowed-metric-urls", LOCAL], {}, secret())
    assert code == 1  # the failed query rolled back
    assert target.requests == []


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        pytest.param(["--last", "a while"], "backtest: ", id="a duration it cannot read"),
        pytest.param(["--from", "yesterday"], "backtest: ", id="a start that is no ISO 8601 time"),
        pytest.param(
            ["--from", "2026-11-28T10:10:00Z", "--to", "2026-11-28T10:00:00Z"],
            "backtest: --from must be before --to",
            id="a window that ends before it starts",
        ),
    ],
)
def test_the_backtest_refuses_a_window_it_cannot_replay_before_any_read(
    argv: list[str], fragment: str
) -> None:
    parser = argparse.ArgumentParser()
    commands.add_backtest_window(parser)

    class NoReads:
        def get_canary_app(self, namespace: str, name: str) -> dict[str, Any] | None:
            raise AssertionError("the window is checked before the CanaryApp is read")

    with pytest.raises(SystemExit) as refused:
        commands.backtest_canary_app(NoReads(), "shop", "web", parser.parse_args(argv), {})  # type: ignore[arg-type]
    assert fragment in str(refused.value)


def test_the_backtest_names_a_canaryapp_that_is_not_there(echo: HostileEndpoint) -> None:
    with pytest.raises(SystemExit) as refused:
        run_command(echo, ECHO, [], {}, secret(), key="shop/web", asked="shop/api")
    assert str(refused.value) == "backtest: CanaryApp shop/api not found (check the kubeconfig)"
    assert echo.requests == []


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        pytest.param(
            404,
            "Not Found",
            "could not read CanaryApp shop/web: not found (check the name, --namespace and --context)",
            id="not found",
        ),
        pytest.param(
            403,
            "Forbidden",
            "could not read CanaryApp shop/web: forbidden, your account lacks the permission (Forbidden)",
            id="forbidden",
        ),
        pytest.param(
            500,
            "Internal Server Error",
            "could not read CanaryApp shop/web: HTTP 500 Internal Server Error",
            id="anything else",
        ),
    ],
)
def test_an_api_error_becomes_a_sentence_naming_what_failed_and_what_to_check(
    status: int, reason: str, message: str
) -> None:
    error = commands.api_problem(ApiException(status=status, reason=reason), "read CanaryApp shop/web")
    assert str(error) == message
