"""Where a CanaryApp's queries go and how they authenticate: its metric endpoint, built from the spec and the
Secret it names. Pure: the Secret comes in as data, read by the caller.

The Secret (`spec.prometheusSecretRef`, in the CanaryApp's own namespace) holds a bearer `token`, or a
`username` and `password`, and optionally `ca.crt` (PEM) to verify the endpoint's TLS certificate with. The
reconciler uses it only if whoever may write Secrets in the namespace said so twice on the Secret:

- the label `canary.atze.io/metrics-credentials: "true"`: it is meant for metric queries, so a CanaryApp's
  author cannot make the reconciler send any other Secret (a database password, a cloud key) anywhere;
- the annotation `canary.atze.io/allowed-canaryapps` (see `grants.py`) names this CanaryApp (or is `*`): it
  is meant for this CanaryApp's queries, so another CanaryApp of the namespace cannot send it to an endpoint
  of its own choosing.

Credentials never go to an endpoint whose TLS certificate is not verified (`prometheusInsecureSkipVerify`):
whoever can intercept the connection would get them. The Secret's `ca.crt` is the way to trust a private CA.

Secrets never leave this value except in the request to the endpoint: `repr` hides them, and no message
built here contains one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.core.grants import granted, how_to_grant
from reconciler.core.model import CanaryAppSpec

CREDENTIALS_LABEL = "canary.atze.io/metrics-credentials"
TOKEN_KEY = "token"
USERNAME_KEY = "username"
PASSWORD_KEY = "password"
CA_KEY = "ca.crt"


@dataclass(frozen=True)
class SecretData:
    """A Secret as read from the API server: its labels, its decoded data and its annotations."""

    labels: Mapping[str, str]
    data: Mapping[str, str] = field(repr=False)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricsEndpoint:
    """A metric endpoint for one CanaryApp: the base URL, static headers, credentials and TLS trust."""

    url: str
    namespace: str
    headers: tuple[tuple[str, str], ...] = ()
    bearer_token: str | None = field(default=None, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    ca_pem: str | None = field(default=None, repr=False)
    insecure_skip_verify: bool = False

    @property
    def authenticated(self) -> bool:
        return self.bearer_token is not None or self.basic_auth is not None


class EndpointError(ValueError):
    """The endpoint cannot be used as specified; the message names the field or Secret and the fix (never a
    secret value)."""


def plain_endpoint(url: str, namespace: str = "") -> MetricsEndpoint:
    """An endpoint without headers or credentials (what every query used before credentials existed)."""
    return MetricsEndpoint(url=url, namespace=namespace)


def endpoint_for(
    spec: CanaryAppSpec, namespace: str, canaryapp: str, secret: SecretData | None
) -> MetricsEndpoint:
    """The endpoint of CanaryApp `namespace`/`canaryapp`. `secret` is the Secret `spec.prometheusSecretRef`
    names (None: it does not exist). Raises EndpointError when the Secret is missing, not marked for metrics,
    not granted to this CanaryApp, incomplete, or would send credentials without verifying TLS."""
    base = MetricsEndpoint(
        url=str(spec.prometheus_url),
        namespace=namespace,
        headers=tuple(sorted(spec.prometheus_headers.items())),
        insecure_skip_verify=spec.prometheus_insecure_skip_verify,
    )
    reference = spec.prometheus_secret_ref
    if reference is None:
        return base
    where = f"the Secret {namespace}/{reference.name} (spec.prometheusSecretRef)"
    if secret is None:
        raise EndpointError(f"{where} does not exist: create it, or remove prometheusSecretRef")
    if secret.labels.get(CREDENTIALS_LABEL) != "true":
        raise EndpointError(
            f"{where} is not marked for metric queries: label it {CREDENTIALS_LABEL}=true "
            "(kubectl label secret ...), which only someone who may write Secrets can do"
        )
    if not granted(secret.annotations, canaryapp):
        raise EndpointError(
            f"{where} is not granted to CanaryApp {namespace}/{canaryapp}: "
            + how_to_grant("Secret", namespace, reference.name, canaryapp)
        )
    data = secret.data
    token, username, password = data.get(TOKEN_KEY), data.get(USERNAME_KEY), data.get(PASSWORD_KEY)
    if token and (username or password):
        raise EndpointError(
            f"{where} has both {TOKEN_KEY} and {USERNAME_KEY}/{PASSWORD_KEY}: keep one of them"
        )
    if bool(username) != bool(password):
        raise EndpointError(f"{where} needs both {USERNAME_KEY} and {PASSWORD_KEY} for basic auth")
    ca = data.get(CA_KEY)
    if not (token or username or ca):
        raise EndpointError(
            f"{where} has none of the keys {TOKEN_KEY}, {USERNAME_KEY}+{PASSWORD_KEY}, {CA_KEY}: add them"
        )
    if ca is not None and "-----BEGIN CERTIFICATE-----" not in ca:
        raise EndpointError(f"{where}: {CA_KEY} is not a PEM certificate bundle")
    if spec.prometheus_insecure_skip_verify and (token or username):
        raise EndpointError(
            f"spec.prometheusInsecureSkipVerify is true and {where} holds credentials: they are never sent "
            "to an endpoint whose TLS certificate is not verified; put the endpoint's CA certificate in the "
            f"Secret as {CA_KEY} and remove prometheusInsecureSkipVerify"
        )
    return MetricsEndpoint(
        url=base.url,
        namespace=namespace,
        headers=base.headers,
        bearer_token=token.strip() if token else None,
        basic_auth=(username, password) if username and password else None,
        ca_pem=ca,
        insecure_skip_verify=base.insecure_skip_verify,
    )
