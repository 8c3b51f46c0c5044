"""A CanaryApp's metric endpoint: which URLs the operator allows, how the Secret becomes credentials, which
headers a spec may set, and a check that never queries without the credentials it was told to use."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.analysis import QueryResult
from reconciler.endpoints import CREDENTIALS_LABEL, EndpointError, MetricsEndpoint, SecretData, endpoint_for
from reconciler.model import CanaryApp, CanaryAppSpec, CheckOutcome
from reconciler.policy import DEFAULT_METRIC_URLS, MetricsPolicy
from reconciler.reconcile import check_canary

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
MARKED = {CREDENTIALS_LABEL: "true"}


def spec(**more: Any) -> CanaryAppSpec:
    return CanaryAppSpec.model_validate(
        {
            "image": "app:v1",
            "imageListenPort": 8088,
            "prometheusQuery": "up == 0",
            "prometheusURL": "https://mimir.monitoring.svc/prometheus",
            "minCanaryRequests": 0,
            **more,
        }
    )


@pytest.mark.parametrize(
    ("allowed", "url", "expected"),
    [
        pytest.param(DEFAULT_METRIC_URLS, "http://prometheus.istio-system:9090", True, id="istio add-on"),
        pytest.param(DEFAULT_METRIC_URLS, "http://prometheus.istio-system:9090/", True, id="trailing slash"),
        pytest.param(DEFAULT_METRIC_URLS, "http://prometheus.istio-system:9091", False, id="other port"),
        pytest.param(DEFAULT_METRIC_URLS, "https://prometheus.istio-system:9090", False, id="other scheme"),
        pytest.param(DEFAULT_METRIC_URLS, "http://10.0.0.1:9090", False, id="an address"),
        pytest.param(
            DEFAULT_METRIC_URLS, "http://user:pw@prometheus.istio-system:9090", False, id="credentials"
        ),
        pytest.param(("https://*.monitoring.svc",), "https://mimir.monitoring.svc/x", True, id="host glob"),
        pytest.param(
            ("https://*.monitoring.svc",), "https://evil.com/.monitoring.svc", False, id="glob is host"
        ),
        pytest.param(
            ("https://mimir.example.com/prometheus",), "https://mimir.example.com/prometheus/t", True
        ),
        pytest.param(
            ("https://mimir.example.com/prometheus",), "https://mimir.example.com/prometheus-x", False
        ),
        pytest.param(("http://127.0.0.1:*",), "http://127.0.0.1:41234", True, id="any port"),
        pytest.param(("http://prometheus.{namespace}.svc:9090",), "http://prometheus.shop.svc:9090", True),
        pytest.param(("http://prometheus.{namespace}.svc:9090",), "http://prometheus.other.svc:9090", False),
        pytest.param((), "http://prometheus.istio-system:9090", False, id="nothing allowed"),
    ],
)
def test_the_allow_list(allowed: tuple[str, ...], url: str, expected: bool) -> None:
    assert MetricsPolicy(allowed).allows("shop", url) is expected


def test_a_disallowed_url_is_an_invalid_spec_naming_the_field_and_the_flag() -> None:
    [problem] = MetricsPolicy().violations("shop", spec())
    assert problem.startswith("spec.prometheusURL: 'https://mimir.monitoring.svc/prometheus' is not allowed")
    assert "--allowed-metric-urls" in problem


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        pytest.param(SecretData(MARKED, {"token": "t0k\n"}), ("t0k", None, None), id="bearer token"),
        pytest.param(
            SecretData(MARKED, {"username": "u", "password": "p", "ca.crt": CA}),
            (None, ("u", "p"), CA),
            id="basic",
        ),
        pytest.param(SecretData(MARKED, {"ca.crt": CA}), (None, None, CA), id="CA only"),
    ],
)
def test_the_secret_becomes_credentials(secret: SecretData, expected: tuple[Any, ...]) -> None:
    endpoint = endpoint_for(spec(prometheusSecretRef={"name": "creds"}), "shop", secret)
    assert (endpoint.bearer_token, endpoint.basic_auth, endpoint.ca_pem) == expected


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        pytest.param(None, "the Secret shop/creds (spec.prometheusSecretRef) does not exist", id="missing"),
        pytest.param(SecretData({}, {"token": "t"}), f"label it {CREDENTIALS_LABEL}=true", id="not marked"),
        pytest.param(SecretData(MARKED, {"token": "t", "password": "p"}), "keep one", id="both"),
        pytest.param(SecretData(MARKED, {"username": "u"}), "needs both username and password", id="half"),
        pytest.param(SecretData(MARKED, {"other": "x"}), "has none of the keys", id="empty"),
        pytest.param(SecretData(MARKED, {"ca.crt": "junk"}), "not a PEM certificate", id="bad CA"),
    ],
)
def test_an_unusable_secret_is_an_error_without_its_values(secret: SecretData | None, fragment: str) -> None:
    with pytest.raises(EndpointError) as error:
        endpoint_for(spec(prometheusSecretRef={"name": "creds"}), "shop", secret)
    assert fragment in str(error.value)
    assert "t0k" not in str(error.value)


def test_headers_go_along_and_credentials_may_not_be_headers() -> None:
    endpoint = endpoint_for(spec(prometheusHeaders={"X-Scope-OrgID": "team-a"}), "shop", None)
    assert endpoint.headers == (("X-Scope-OrgID", "team-a"),)
    for header in ("Authorization", "cookie"):
        with pytest.raises(ValidationError, match="put credentials in a Secret"):
            spec(prometheusHeaders={header: "x"})
    with pytest.raises(ValidationError, match="line break"):
        spec(prometheusHeaders={"X-Tenant": "a\r\nX-Evil: 1"})


class Recorder:
    def __init__(self) -> None:
        self.endpoints: list[MetricsEndpoint] = []

    def query(
        self, endpoint: MetricsEndpoint, query: str, at: datetime.datetime | None = None
    ) -> QueryResult:
        self.endpoints.append(endpoint)
        return QueryResult(CheckOutcome.CLEAN, "query returned no result")


class Secrets:
    def __init__(self, secret: SecretData | None) -> None:
        self.secret = secret
        self.reads: list[tuple[str, str]] = []

    def read_secret(self, namespace: str, name: str) -> SecretData | None:
        self.reads.append((namespace, name))
        return self.secret


def app(**more: Any) -> CanaryApp:
    return CanaryApp.model_validate(
        {"metadata": {"name": "web", "namespace": "shop"}, "spec": spec(**more).model_dump(by_alias=True)}
    )


NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def test_a_check_reads_only_the_named_secret_in_its_own_namespace_and_uses_it() -> None:
    metrics, secrets = Recorder(), Secrets(SecretData(MARKED, {"token": "t0k"}))
    the_app = app(prometheusSecretRef={"name": "creds"})
    result = check_canary(metrics, the_app, the_app.status, NOW, secrets)
    assert result.outcome == CheckOutcome.CLEAN
    assert secrets.reads == [("shop", "creds")]
    assert {endpoint.bearer_token for endpoint in metrics.endpoints} == {"t0k"}


def test_a_check_without_its_secret_fails_and_queries_nothing() -> None:
    metrics, secrets = Recorder(), Secrets(None)
    the_app = app(prometheusSecretRef={"name": "creds"})
    result = check_canary(metrics, the_app, the_app.status, NOW, secrets)
    assert result.outcome == CheckOutcome.QUERY_FAILED
    assert "does not exist" in result.message
    assert metrics.endpoints == []


def test_a_check_without_a_secret_ref_reads_no_secret() -> None:
    metrics, secrets = Recorder(), Secrets(None)
    the_app = app()
    check_canary(metrics, the_app, the_app.status, NOW, secrets)
    assert secrets.reads == []
    assert not metrics.endpoints[0].authenticated
