"""A CanaryApp's metric endpoint: which URLs the operator allows, how the Secret becomes credentials, which
headers a spec may set, and a check that never queries without the credentials it was told to use."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from reconciler.core.analysis import QueryResult
from reconciler.core.endpoints import (
    CREDENTIALS_LABEL,
    EndpointError,
    MetricsEndpoint,
    SecretData,
    endpoint_for,
)
from reconciler.core.grants import GRANT_ANNOTATION
from reconciler.core.model import CanaryApp, CanaryAppSpec, CheckOutcome
from reconciler.core.policy import DEFAULT_METRIC_URLS, MetricsPolicy
from reconciler.runtime.observe import check_canary

CA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
MIMIR = ("https://mimir.example.com/prometheus",)
MARKED = {CREDENTIALS_LABEL: "true"}
GRANTED = {GRANT_ANNOTATION: "web"}


def secret_data(data: dict[str, str], annotations: dict[str, str] | None = None) -> SecretData:
    """A Secret marked for metric queries and granted to CanaryApp `web` (unless `annotations` says else)."""
    return SecretData(MARKED, data, GRANTED if annotations is None else annotations)


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
        pytest.param(MIMIR, "https://mimir.example.com/prometheus/./t", True, id="a dot segment"),
        pytest.param(MIMIR, "https://mimir.example.com/%70rometheus/t", True, id="an encoded letter"),
        pytest.param(MIMIR, "https://mimir.example.com/prometheus/%7Et", True, id="an encoded tilde"),
        pytest.param(MIMIR, "https://mimir.example.com/prometheus/t/../u", True, id="dots within the prefix"),
        pytest.param(MIMIR, "https://mimir.example.com/prometheus/../admin", False, id="dot dot"),
        pytest.param(MIMIR, "https://mimir.example.com/prometheus/%2e%2e/admin", False, id="encoded dot dot"),
        pytest.param(MIMIR, "https://mimir.example.com/prometheus/%2E%2e/admin", False, id="mixed case"),
        pytest.param(MIMIR, "https://mimir.example.com/prometheus/.%2e/admin", False, id="half encoded"),
        pytest.param(MIMIR, "https://mimir.example.com/prometheus/t/%2e%2e/%2e%2e/x", False, id="two up"),
        pytest.param(MIMIR, "https://mimir.example.com/prometheus/..", False, id="dot dot at the end"),
        pytest.param(
            MIMIR, "https://mimir.example.com/prometheus/t%2f..%2f..%2fadmin", False, id="encoded slash"
        ),
        pytest.param(
            MIMIR, "https://mimir.example.com/prometheus/%5c../admin", False, id="encoded backslash"
        ),
        pytest.param(MIMIR, "https://mimir.example.com/prometheus/t\\..\\..\\admin", False, id="backslashes"),
        pytest.param(MIMIR, "https://mimir.example.com/prometheus/%252e%252e/x", False, id="double encoded"),
        pytest.param(MIMIR, "https://mimir.example.com/prometheus/..;/admin", False, id="dot dot parameter"),
        pytest.param(("http://*:9090",), "http://evil%2eexample:9090", False, id="encoded host"),
    ],
)
def test_the_allow_list(allowed: tuple[str, ...], url: str, expected: bool) -> None:
    assert MetricsPolicy(allowed).allows("shop", url) is expected


def test_a_disallowed_url_is_an_invalid_spec_naming_the_field_and_the_setting() -> None:
    [problem] = MetricsPolicy().violations("shop", "web", spec())
    assert problem.startswith("spec.prometheusURL: 'https://mimir.monitoring.svc/prometheus' is not allowed")
    assert "--allowed-metric-urls (or CANARYAPP_ALLOWED_METRIC_URLS)" in problem


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://reader:s3cret@mimir.monitoring.svc/prometheus", id="user and password"),
        pytest.param("https://s3cret@mimir.monitoring.svc/prometheus", id="token as user name"),
        pytest.param("http://reader:s3cret@prometheus.istio-system:9090", id="an allowed host"),
    ],
)
def test_a_refused_url_is_shown_without_its_user_info(url: str) -> None:
    [problem] = MetricsPolicy().violations("shop", "web", spec(prometheusURL=url))
    assert "s3cret" not in problem
    assert "://***@" in problem


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        pytest.param(secret_data({"token": "t0k\n"}), ("t0k", None, None), id="bearer token"),
        pytest.param(
            secret_data({"username": "u", "password": "p", "ca.crt": CA}),
            (None, ("u", "p"), CA),
            id="basic",
        ),
        pytest.param(secret_data({"ca.crt": CA}), (None, None, CA), id="CA only"),
        pytest.param(
            secret_data({"token": "t0k"}, {GRANT_ANNOTATION: "api, web"}), ("t0k", None, None), id="in a list"
        ),
        pytest.param(
            secret_data({"token": "t0k"}, {GRANT_ANNOTATION: "*"}), ("t0k", None, None), id="every CanaryApp"
        ),
    ],
)
def test_the_secret_becomes_credentials(secret: SecretData, expected: tuple[Any, ...]) -> None:
    endpoint = endpoint_for(spec(prometheusSecretRef={"name": "creds"}), "shop", "web", secret)
    assert (endpoint.bearer_token, endpoint.basic_auth, endpoint.ca_pem) == expected


@pytest.mark.parametrize(
    ("secret", "fragment"),
    [
        pytest.param(None, "the Secret shop/creds (spec.prometheusSecretRef) does not exist", id="missing"),
        pytest.param(
            SecretData({}, {"token": "t0k"}, GRANTED), f"label it {CREDENTIALS_LABEL}=true", id="not marked"
        ),
        pytest.param(
            secret_data({"token": "t0k"}, {}),
            "the Secret shop/creds (spec.prometheusSecretRef) is not granted to CanaryApp shop/web: "
            f"annotate the Secret shop/creds with {GRANT_ANNOTATION}=web",
            id="marked but granted to no CanaryApp",
        ),
        pytest.param(
            secret_data({"token": "t0k"}, {GRANT_ANNOTATION: "api,web-2"}),
            "is not granted to CanaryApp shop/web",
            id="granted to other CanaryApps only",
        ),
        pytest.param(secret_data({"token": "t0k", "password": "p"}), "keep one", id="both"),
        pytest.param(secret_data({"username": "u"}), "needs both username and password", id="half"),
        pytest.param(secret_data({"other": "x"}), "has none of the keys", id="empty"),
        pytest.param(secret_data({"ca.crt": "junk"}), "not a PEM certificate", id="bad CA"),
    ],
)
def test_an_unusable_secret_is_an_error_without_its_values(secret: SecretData | None, fragment: str) -> None:
    with pytest.raises(EndpointError) as error:
        endpoint_for(spec(prometheusSecretRef={"name": "creds"}), "shop", "web", secret)
    assert fragment in str(error.value)
    assert "t0k" not in str(error.value)


@pytest.mark.parametrize(
    ("data", "refused"),
    [
        pytest.param({"token": "t0k"}, True, id="token"),
        pytest.param({"username": "u", "password": "t0k"}, True, id="basic auth"),
        pytest.param({"token": "t0k", "ca.crt": CA}, True, id="token and a CA the flag would ignore"),
        pytest.param({"ca.crt": CA}, False, id="no credentials"),
    ],
)
def test_credentials_are_never_sent_without_verifying_tls(data: dict[str, str], refused: bool) -> None:
    insecure = spec(prometheusSecretRef={"name": "creds"}, prometheusInsecureSkipVerify=True)
    if not refused:
        assert endpoint_for(insecure, "shop", "web", secret_data(data)).insecure_skip_verify
        return
    with pytest.raises(EndpointError) as error:
        endpoint_for(insecure, "shop", "web", secret_data(data))
    message = str(error.value)
    assert message.startswith("spec.prometheusInsecureSkipVerify is true and the Secret shop/creds")
    assert "put the endpoint's CA certificate in the Secret as ca.crt" in message
    assert "t0k" not in message


def test_headers_go_along_and_credentials_may_not_be_headers() -> None:
    endpoint = endpoint_for(spec(prometheusHeaders={"X-Scope-OrgID": "team-a"}), "shop", "web", None)
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
    metrics, secrets = Recorder(), Secrets(secret_data({"token": "t0k"}))
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


def test_a_check_with_a_secret_granted_to_another_canaryapp_fails_and_queries_nothing() -> None:
    metrics, secrets = Recorder(), Secrets(secret_data({"token": "t0k"}, {GRANT_ANNOTATION: "api"}))
    the_app = app(prometheusSecretRef={"name": "creds"})
    result = check_canary(metrics, the_app, the_app.status, NOW, secrets)
    assert result.outcome == CheckOutcome.QUERY_FAILED
    assert "is not granted to CanaryApp shop/web" in result.message
    assert metrics.endpoints == []


def test_a_check_without_a_secret_ref_reads_no_secret() -> None:
    metrics, secrets = Recorder(), Secrets(None)
    the_app = app()
    check_canary(metrics, the_app, the_app.status, NOW, secrets)
    assert secrets.reads == []
    assert not metrics.endpoints[0].authenticated
