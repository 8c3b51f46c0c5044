"""The CanaryApp API as pydantic models that mirror `crds/canary.atze.io_canaryapps.yaml`.

The spec keeps every field of the original CanaryApp operator (same names, same meaning), so its manifests
apply unchanged; the added fields default to the original behaviour. The status is the reconciler's memory:
everything a restarted reconciler needs to continue a rollout is stored here, in the cluster.
"""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from reconciler import templates

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
# How much evidence the status keeps: the last checks and the last rollouts.
MAX_CHECK_RECORDS = 10
MAX_ROLLOUT_RECORDS = 10
MAX_SERIES_PER_CHECK = 3
MAX_EVIDENCE_TEXT = 512


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class CanaryAppSpec(_Model):
    """What the user asks for. `extra="forbid"`: a misspelt field is an error, not silently ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")

    image: Annotated[str, Field(min_length=1)]
    image_listen_port: Annotated[int, Field(ge=1, le=65535)]
    replicas: Annotated[int, Field(ge=1)] = 1
    test_replicas: Annotated[int, Field(ge=1)] = 1
    prometheus_query: Annotated[str, Field(min_length=1)]
    prometheus_url: Annotated[AnyHttpUrl, Field(alias="prometheusURL")]
    fail_when_prometheus_fails: bool = True
    traffic_shift_update_interval: Annotated[int, Field(ge=1)] = DEFAULT_TRAFFIC_SHIFT_INTERVAL_SECONDS
    deployment_ready_wait_time: Annotated[int, Field(ge=1)] = DEFAULT_DEPLOYMENT_READY_WAIT_SECONDS
    step_weight: Annotated[int, Field(ge=1, le=100)] = DEFAULT_STEP_WEIGHT
    max_weight: Annotated[int, Field(ge=1, le=100)] = DEFAULT_MAX_WEIGHT
    failure_threshold: Annotated[int, Field(ge=1)] = DEFAULT_FAILURE_THRESHOLD
    hosts: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()
    canary_traffic_query: Annotated[str, Field(min_length=1)] | None = None
    min_canary_requests: Annotated[int, Field(ge=0)] = DEFAULT_MIN_CANARY_REQUESTS
    progress_deadline_seconds: Annotated[int, Field(ge=1)] = DEFAULT_PROGRESS_DEADLINE_SECONDS

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

    @field_validator("image")
    @classmethod
    def _image_has_no_spaces(cls, image: str) -> str:
        if any(char.isspace() for char in image):
            raise ValueError("image must be an image reference such as 'registry/app:v2' (no spaces)")
        return image

    @model_validator(mode="after")
    def _step_fits_max_weight(self) -> CanaryAppSpec:
        if self.step_weight > self.max_weight:
            raise ValueError(
                f"stepWeight ({self.step_weight}) must not exceed maxWeight ({self.max_weight}): "
                "lower stepWeight or raise maxWeight"
            )
        return self

    def service_hosts(self, name: str) -> tuple[str, ...]:
        return self.hosts or (name,)


class Phase(enum.StrEnum):
    """Where a CanaryApp is. Steady phases: Ready, Succeeded, Failed. Moving ones: the rest."""

    INITIALIZING = "Initializing"  # first primary rollout, no canary yet
    READY = "Ready"  # primary serves everything; nothing to roll out
    PROGRESSING = "Progressing"  # canary running: waiting for it to be ready, or shifting weight
    PROMOTING = "Promoting"  # primary rolls out the canary's image; canary still carries its weight
    SUCCEEDED = "Succeeded"  # the last rollout was promoted
    FAILED = "Failed"  # the last rollout was rolled back; its image is in failedImages


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


class RolloutResult(enum.StrEnum):
    PROGRESSING = "Progressing"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    ABANDONED = "Abandoned"


class Series(_Model):
    """One series a query returned: its labels and its value at the check."""

    labels: dict[str, str]
    value: str


class CheckRecord(_Model):
    """The evidence of one check: when, at which weight, what was asked and what came back."""

    time: str
    weight: int
    outcome: CheckOutcome
    message: str = ""
    query: str = ""
    series: tuple[Series, ...] = ()
    canary_requests: float | None = None


class RolloutRecord(_Model):
    """One rollout from start to end: the image, when, the weights it reached, how and why it ended."""

    image: str
    started_at: str
    finished_at: str | None = None
    result: RolloutResult = RolloutResult.PROGRESSING
    weights: tuple[int, ...] = ()
    reason: str = ""


class CanaryAppStatus(_Model):
    phase: Phase | None = None
    message: str = ""
    observed_generation: int | None = None
    primary_image: str | None = None
    canary_image: str | None = None
    canary_weight: int = 0
    failed_checks: int = 0
    failed_images: tuple[str, ...] = ()
    canary_started_at: str | None = None
    promotion_started_at: str | None = None
    last_traffic_shift: str | None = None
    last_check_time: str | None = None
    last_check_outcome: CheckOutcome | None = None
    last_check_message: str = ""
    last_retry_token: str | None = None  # the retry request handled last (before handledRequests existed)
    handled_requests: dict[str, str] = Field(default_factory=dict)
    paused: bool = False
    queued_at: str | None = None  # waiting for a rollout slot (--max-concurrent-rollouts) since
    last_applied_hash: str | None = None
    checks: tuple[CheckRecord, ...] = ()
    rollouts: tuple[RolloutRecord, ...] = ()
    conditions: tuple[Condition, ...] = ()
    # Fields of the original operator, kept up to date for tools that read them.
    successful_release: str | None = None
    test_running: bool = False
    traffic_shift: int = 0
    last_failed_tag: str | None = None

    def condition(self, condition_type: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == condition_type), None)


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

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"
