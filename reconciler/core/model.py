"""The CanaryApp API as pydantic models that mirror `crds/canary.atze.io_canaryapps.yaml`.

The spec keeps every field of the original CanaryApp operator (same names, same meaning), so its manifests
apply unchanged; the added fields default to the original behaviour. The status is the reconciler's memory:
everything a restarted reconciler needs to continue a rollout is stored here, in the cluster.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    UrlConstraints,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from reconciler.core import reserved_keys, templates, upgrade, workload
from reconciler.core.metrics import AnalysisSpec, MetricSpec
from reconciler.core.names import Router, baseline_name

GROUP = "canary.atze.io"
VERSION = "v1"
KIND = "CanaryApp"
PLURAL = "canaryapps"
API_VERSION = f"{GROUP}/{VERSION}"
FINALIZER = f"{GROUP}/finalizer"


class Action(enum.StrEnum):
    """One-shot requests a user makes with an annotation `canary.atze.io/<action>=<any new value>` (or
    `kubectl canaryapp <action>`): a new value is a new request, handled once and recorded in
    `status.handledRequests`, so a restart never repeats it and Git (Argo CD) never owns it."""

    ABORT = "abort"
    PROMOTE = "promote"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"

    @property
    def annotation(self) -> str:
        return f"{GROUP}/{self.value}"


RETRY_ANNOTATION = Action.RETRY.annotation

DEFAULT_TRAFFIC_SHIFT_INTERVAL_SECONDS = 30
# The original waited a fixed 20 s; a real readiness wait needs headroom for image pulls and probes.
DEFAULT_DEPLOYMENT_READY_WAIT_SECONDS = 120
DEFAULT_STEP_WEIGHT = 10
DEFAULT_MAX_WEIGHT = 50
DEFAULT_FAILURE_THRESHOLD = 1
DEFAULT_MIN_CANARY_REQUESTS = 1
# Flagger's default: how long a rollout may go without progress (no canary traffic, no answer) before it is
# rolled back.
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600
DEFAULT_TARGET_CPU_PERCENT = 80
# How much evidence the status keeps: the last checks and the last rollouts.
MAX_CHECK_RECORDS = 10
MAX_ROLLOUT_RECORDS = 10
MAX_SERIES_PER_CHECK = 3
MAX_EVIDENCE_TEXT = 512
# Bounds of the spec's own fields (the CRD declares the same; spec.template's lists are bounded there, see
# hack/crd_pod_template.py): far above what a real CanaryApp writes, low enough that no object can make the
# API server and the reconciler hold megabytes of one field.
MAX_IMAGE_LENGTH = 1024
MAX_QUERY_LENGTH = 16384
MAX_URL_LENGTH = 2048
MAX_HEADERS = 16
MAX_HEADER_VALUE_LENGTH = 1024
MAX_HOSTS = 256
MAX_HOST_LENGTH = 253  # a DNS name
MAX_GATEWAYS = 64
MAX_GATEWAY_LENGTH = 63 + 1 + 253  # <namespace>/<name>
MAX_PARENT_REFS = 32  # Gateway API's own bound on an HTTPRoute's parentRefs


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class Autoscaler(_Model):
    """A HorizontalPodAutoscaler per Deployment (primary and canary), scaling on CPU utilisation."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")

    min_replicas: Annotated[int, Field(ge=1)] = 1
    max_replicas: Annotated[int, Field(ge=1)]
    target_cpu_utilization_percentage: Annotated[
        int, Field(ge=1, le=100, alias="targetCPUUtilizationPercentage")
    ] = DEFAULT_TARGET_CPU_PERCENT

    @model_validator(mode="after")
    def _min_fits_max(self) -> Autoscaler:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"autoscaler.minReplicas ({self.min_replicas}) must not exceed autoscaler.maxReplicas "
                f"({self.max_replicas}): lower minReplicas or raise maxReplicas"
            )
        return self


# What a CanaryApp that names no router, read by anything but the reconciler (which has --default-router),
# means: what it meant before spec.router existed.
DEFAULT_ROUTER = Router.ISTIO


class ParentRef(_Model):
    """A Gateway an HTTPRoute attaches to (group gateway.networking.k8s.io, kind Gateway): Gateway API's
    ParentReference without group and kind. No namespace: the CanaryApp's."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=253)]
    namespace: Annotated[str, Field(min_length=1, max_length=63)] | None = None
    section_name: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None


class SecretRef(_Model):
    """A Secret in the CanaryApp's own namespace."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=253)]


# Headers the reconciler sets itself or that would change what the request means; credentials belong in
# prometheusSecretRef, never in a spec anyone with read access to CanaryApps can see.
RESERVED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
    }
)
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")


class CanaryAppSpec(_Model):
    """What the user asks for. `extra="forbid"`: a misspelt field is an error, not silently ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")

    image: Annotated[str, Field(min_length=1, max_length=MAX_IMAGE_LENGTH)] | None = None
    image_listen_port: Annotated[int, Field(ge=1, le=65535)]
    # A PodTemplateSpec as the API server serves it (validated there with the real schema); see workload.py.
    template: dict[str, Any] | None = None
    autoscaler: Autoscaler | None = None
    replicas: Annotated[int, Field(ge=1)] = 1
    test_replicas: Annotated[int, Field(ge=1)] = 1
    # The original operator's check: a result means errors. Optional when spec.analysis has metrics.
    prometheus_query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_LENGTH)] | None = None
    prometheus_url: Annotated[
        AnyHttpUrl, UrlConstraints(max_length=MAX_URL_LENGTH), Field(alias="prometheusURL")
    ]
    prometheus_secret_ref: SecretRef | None = None
    prometheus_headers: Annotated[
        dict[str, Annotated[str, Field(max_length=MAX_HEADER_VALUE_LENGTH)]], Field(max_length=MAX_HEADERS)
    ] = Field(default_factory=dict)
    prometheus_insecure_skip_verify: bool = False
    fail_when_prometheus_fails: bool = True
    traffic_shift_update_interval: Annotated[int, Field(ge=1)] = DEFAULT_TRAFFIC_SHIFT_INTERVAL_SECONDS
    deployment_ready_wait_time: Annotated[int, Field(ge=1)] = DEFAULT_DEPLOYMENT_READY_WAIT_SECONDS
    step_weight: Annotated[int, Field(ge=1, le=100)] = DEFAULT_STEP_WEIGHT
    max_weight: Annotated[int, Field(ge=1, le=100)] = DEFAULT_MAX_WEIGHT
    failure_threshold: Annotated[int, Field(ge=1)] = DEFAULT_FAILURE_THRESHOLD
    hosts: Annotated[
        tuple[Annotated[str, Field(min_length=1, max_length=MAX_HOST_LENGTH)], ...],
        Field(max_length=MAX_HOSTS),
    ] = ()
    gateways: Annotated[
        tuple[Annotated[str, Field(min_length=1, max_length=MAX_GATEWAY_LENGTH)], ...],
        Field(max_length=MAX_GATEWAYS),
    ] = ()
    # None: the reconciler's --default-router (Istio unless its operator says otherwise).
    router: Router | None = None
    parent_refs: Annotated[tuple[ParentRef, ...], Field(max_length=MAX_PARENT_REFS)] = ()
    canary_traffic_query: Annotated[str, Field(min_length=1, max_length=MAX_QUERY_LENGTH)] | None = None
    min_canary_requests: Annotated[int, Field(ge=0)] = DEFAULT_MIN_CANARY_REQUESTS
    progress_deadline_seconds: Annotated[int, Field(ge=1)] = DEFAULT_PROGRESS_DEADLINE_SECONDS
    # A baseline beside the canary and the metrics the statistical judge compares (metrics.py).
    analysis: AnalysisSpec | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_reserved_key(cls, spec: Any) -> Any:
        """The spec as written, before anything else reads it: no map in it, at any depth (spec.template,
        prometheusHeaders, ...), holds Pulumi's signature key (reserved_keys.py)."""
        reserved_keys.refuse_reserved_key(spec, "spec")
        return spec

    @field_validator("prometheus_query", "canary_traffic_query")
    @classmethod
    def _known_variables(cls, query: str | None) -> str | None:
        unknown = templates.unknown_variables(query or "")
        if unknown:
            raise ValueError(
                f"unknown query variable {', '.join(repr(name) for name in unknown)}: "
                f"use {', '.join('{{ ' + name + ' }}' for name in templates.VARIABLES)}"
            )
        return query

    @field_validator("prometheus_headers")
    @classmethod
    def _plain_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        for header, value in headers.items():
            if not _HEADER_NAME.match(header):
                raise ValueError(f"prometheusHeaders: {header!r} is not an HTTP header name")
            if header.lower() in RESERVED_HEADERS:
                raise ValueError(
                    f"prometheusHeaders: {header} may not be set here; put credentials in a Secret named by "
                    "prometheusSecretRef"
                )
            if any(char in value for char in "\r\n\0"):
                raise ValueError(f"prometheusHeaders: the value of {header} contains a line break")
        return headers

    @field_validator("image")
    @classmethod
    def _image_has_no_spaces(cls, image: str | None) -> str | None:
        if image is not None and any(char.isspace() for char in image):
            raise ValueError("image must be an image reference such as 'registry/app:v2' (no spaces)")
        return image

    @model_validator(mode="after")
    def _template_fits_shorthand(self) -> CanaryAppSpec:
        problems = workload.contradictions(self.template, self.image, self.image_listen_port)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def pod_template(self) -> dict[str, Any]:
        """The effective pod template (workload.effective_template)."""
        return workload.effective_template(self.template, self.image, self.image_listen_port)

    @property
    def revision(self) -> str:
        return workload.revision(self.pod_template)

    @property
    def main_image(self) -> str:
        """The main container's image, from spec.image or the template."""
        return self.image or workload.template_image(self.template) or ""

    @model_validator(mode="after")
    def _something_to_check(self) -> CanaryAppSpec:
        if self.prometheus_query is None and not self.metrics:
            raise ValueError(
                "prometheusQuery: required unless spec.analysis.metrics names the metrics to judge: give the "
                "query whose result means errors, or analysis.metrics"
            )
        if self.baseline and 2 * self.max_weight > 100:
            raise ValueError(
                f"maxWeight ({self.max_weight}) must be at most 50 with analysis.baseline: the baseline "
                "takes as much traffic as the canary, and the primary the rest"
            )
        return self

    @property
    def baseline(self) -> bool:
        """Whether a baseline runs beside the canary (spec.analysis.baseline)."""
        return self.analysis is not None and self.analysis.baseline

    @property
    def metrics(self) -> tuple[MetricSpec, ...]:
        return self.analysis.metrics if self.analysis is not None else ()

    @model_validator(mode="after")
    def _step_fits_max_weight(self) -> CanaryAppSpec:
        if self.step_weight > self.max_weight:
            raise ValueError(
                f"stepWeight ({self.step_weight}) must not exceed maxWeight ({self.max_weight}): "
                "lower stepWeight or raise maxWeight"
            )
        return self

    @model_validator(mode="after")
    def _fields_of_its_router(self) -> CanaryAppSpec:
        """The CRD's rules for a spec that names its router (the policy checks the router in effect)."""
        problems = router_field_problems(self, self.router)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def service_hosts(self, name: str) -> tuple[str, ...]:
        return self.hosts or (name,)

    def with_router(self, default: Router) -> CanaryAppSpec:
        """The spec with its router in effect written in: its own, else `default` (--default-router)."""
        return self if self.router is not None else self.model_copy(update={"router": default})

    @property
    def effective_router(self) -> Router:
        return self.router or DEFAULT_ROUTER


def router_field_problems(spec: CanaryAppSpec, router: Router | None) -> list[str]:
    """The fields `spec` sets that `router` has no use for (None: no router named, nothing to say)."""
    if router == Router.ISTIO and spec.parent_refs:
        return [
            "spec.parentRefs: only the gateway-api router attaches to Gateways; with spec.router istio name "
            "Istio gateways in spec.gateways, or set spec.router: gateway-api"
        ]
    problems = []
    if router == Router.GATEWAY_API and spec.gateways:
        problems.append(
            "spec.gateways: only the istio router binds VirtualService gateways; with spec.router "
            "gateway-api name the Gateways in spec.parentRefs, or set spec.router: istio"
        )
    if router == Router.GATEWAY_API and not spec.parent_refs:
        problems.append(
            "spec.parentRefs: the gateway-api router needs at least one Gateway to attach its HTTPRoute "
            "to (a route attached to nothing serves nothing): name one, e.g. [{name: public, namespace: gw}]"
        )
    return problems


class Phase(enum.StrEnum):
    """Where a CanaryApp is. Steady phases: Ready, Succeeded, Failed. Moving ones: the rest."""

    INITIALIZING = "Initializing"  # first primary rollout, no canary yet
    READY = "Ready"  # primary serves everything; nothing to roll out
    PROGRESSING = "Progressing"  # canary running: waiting for it to be ready, or shifting weight
    PROMOTING = "Promoting"  # primary rolls out the canary's image; canary still carries its weight
    SUCCEEDED = "Succeeded"  # the last rollout was promoted
    FAILED = "Failed"  # the last rollout was rolled back; its revision is in failedRevisions


STEADY_PHASES = frozenset({Phase.READY, Phase.SUCCEEDED, Phase.FAILED})


class ConditionStatus(enum.StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Model):
    """metav1.Condition."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class CheckOutcome(enum.StrEnum):
    """What the last metric check said (Argo Rollouts' outcomes, in this product's words)."""

    CLEAN = "Clean"  # the query returned no result: no errors
    ERRORS_FOUND = "ErrorsFound"  # the query returned a result: the canary is failing
    QUERY_FAILED = "QueryFailed"  # Prometheus unreachable, bad PromQL, timeout, unusable answer
    NO_CANARY_TRAFFIC = "NoCanaryTraffic"  # too few canary requests in the window: no evidence either way
    # The statistical judge (spec.analysis.metrics): its score below the marginal threshold, or a critical
    # metric not passing; a score between marginal and pass; no metric with data (no evidence either way).
    METRICS_FAILED = "MetricsFailed"
    MARGINAL = "Marginal"
    NO_DATA = "NoData"


class RolloutResult(enum.StrEnum):
    PROGRESSING = "Progressing"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABANDONED = "Abandoned"


class Series(_Model):
    """One series a query returned: its labels and its value at the check."""

    labels: dict[str, str]
    value: str


class MetricRecord(_Model):
    """One metric's verdict in a check and the numbers it rests on (the judge's MetricResult, bounded): the
    sizes of both sides (samples, or trials), the levels (median, or failure rate), the estimated shift of
    the canary against the baseline with its interval and p-value, and the spread's ratio. None where not
    computed (no data, not compared) or not a finite number."""

    name: str
    kind: str
    verdict: str
    reason: str = ""
    canary_size: int = 0
    baseline_size: int = 0
    canary_level: float | None = None
    baseline_level: float | None = None
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    spread_ratio: float | None = None


class CheckRecord(_Model):
    """The evidence of one check: when, at which weight, what was asked and what came back; with
    spec.analysis.metrics also the judge's score, verdict and each metric's record."""

    time: str
    weight: int
    outcome: CheckOutcome
    message: str = ""
    query: str = ""
    series: tuple[Series, ...] = ()
    canary_requests: float | None = None
    score: float | None = None
    verdict: str | None = None
    metrics: tuple[MetricRecord, ...] = ()


class RolloutRecord(_Model):
    """One rollout from start to end: the image and revision, what changed, when, the weights it reached, how
    and why it ended."""

    image: str
    revision: str = ""
    changes: tuple[str, ...] = ()
    started_at: str
    finished_at: str | None = None
    result: RolloutResult = RolloutResult.PROGRESSING
    weights: tuple[int, ...] = ()
    reason: str = ""


class RevisionTemplate(_Model):
    """A pod template revision (workload.revision) and the effective template it names."""

    revision: str
    template: dict[str, Any]


class CanaryAppStatus(_Model):
    """The status as the core uses it. wire.py writes it to the API server (adding the original operator's
    fields); the CanaryApp model upgrades a status of an earlier version as it parses it (upgrade.py)."""

    phase: Phase | None = None
    message: str = ""
    observed_generation: int | None = None
    # The generation the reconciler found invalid (and so acts on not at all); cleared by its next decision.
    invalid_generation: int | None = None
    canary_weight: int = 0
    failed_checks: int = 0
    # A release is a pod template revision (workload.revision); its image is shown, never decided on, and
    # read from its kept template (`primary_image`, ...). Only the images of failed releases are recorded
    # (their templates are not kept): failedImages and lastFailedTag, for tools of the original operator.
    failed_images: tuple[str, ...] = ()
    last_failed_tag: str | None = None
    primary_revision: str | None = None
    canary_revision: str | None = None
    successful_revision: str | None = None
    failed_revisions: tuple[str, ...] = ()
    # The effective pod template of each revision above except the failed ones: what the stack declares for
    # the primary and the canary, and what a rolled-back promotion returns to. A list, not a map: the status
    # is written as a merge patch, which replaces lists whole but would keep a map's removed keys.
    pod_templates: tuple[RevisionTemplate, ...] = ()
    # With an autoscaler: the primary's replicas when the rollout started, its autoscaler's floor until the
    # rollout ends (traffic moved to the canary must not let the primary scale down before promotion).
    primary_min_replicas: int | None = None
    canary_started_at: str | None = None
    promotion_started_at: str | None = None
    last_traffic_shift: str | None = None
    last_check_time: str | None = None
    last_check_outcome: CheckOutcome | None = None
    last_check_message: str = ""
    handled_requests: dict[str, str] = Field(default_factory=dict)
    paused: bool = False
    queued_at: str | None = None  # waiting for a rollout slot (--max-concurrent-rollouts) since
    # The gateway-api router: since when the current weight waits for its HTTPRoute's acceptance (None: it
    # does not); on acceptance the check window starts afresh.
    route_pending_since: str | None = None
    last_applied_hash: str | None = None
    # The router whose objects the last applied stack declared (None: none applied, or applied before
    # spec.router existed, i.e. Istio's): a switch of routers is refused while a canary runs on the old one.
    router: Router | None = None
    checks: tuple[CheckRecord, ...] = ()
    rollouts: tuple[RolloutRecord, ...] = ()
    conditions: tuple[Condition, ...] = ()

    @property
    def primary_image(self) -> str | None:
        return workload.template_image(self.pod_template(self.primary_revision))

    @property
    def canary_image(self) -> str | None:
        return workload.template_image(self.pod_template(self.canary_revision))

    @property
    def successful_image(self) -> str | None:
        return workload.template_image(self.pod_template(self.successful_revision))

    @property
    def applied_router(self) -> Router | None:
        """The router whose objects the stack holds: the one recorded, else (a stack applied before routers
        were recorded) Istio's; None when no stack was applied."""
        return self.router or (Router.ISTIO if self.last_applied_hash else None)

    def condition(self, condition_type: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == condition_type), None)

    def pod_template(self, revision: str | None) -> dict[str, Any] | None:
        return next((t.template for t in self.pod_templates if t.revision == revision), None)

    def with_pod_templates(
        self, kept: set[str | None], **added: dict[str, Any]
    ) -> tuple[RevisionTemplate, ...]:
        """The pod templates of the revisions in `kept`, plus `added` (revision=template)."""
        templates = {t.revision: t.template for t in self.pod_templates if t.revision in kept}
        templates.update(added)
        return tuple(RevisionTemplate(revision=r, template=t) for r, t in templates.items())


class ObjectMeta(BaseModel):
    """The metadata the decision needs (finalizers and deletion are handled on the raw object)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    annotations: dict[str, str] = Field(default_factory=dict)


class CanaryApp(BaseModel):
    """A whole CanaryApp object as read from the API server."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    api_version: str = Field(default=API_VERSION, alias="apiVersion")
    kind: str = KIND
    metadata: ObjectMeta
    spec: CanaryAppSpec
    status: CanaryAppStatus = Field(default_factory=CanaryAppStatus)

    @model_validator(mode="before")
    @classmethod
    def _current_status(cls, app: Any) -> Any:
        """A status written by an earlier version, upgraded before anything reads it (upgrade.py)."""
        return upgrade.upgraded_app(app)

    @model_validator(mode="after")
    def _baseline_name_fits(self) -> CanaryApp:
        if self.spec.baseline and len(baseline_name(self.metadata.name)) > 63:
            raise ValueError(
                f"spec.analysis.baseline: the baseline's name {baseline_name(self.metadata.name)!r} would be "
                "longer than 63 characters: use a CanaryApp name of at most 54"
            )
        return self

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"
