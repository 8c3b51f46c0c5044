"""What a CanaryApp says about its analysis beyond the single `prometheusQuery`: a baseline, several metrics
and the score's rules (`spec.analysis`), and the reusable metric definitions of MetricTemplate and
ClusterMetricTemplate objects that its metrics may name.

The shape of the API, validated once when parsed, with every message naming the field and the fix; the CRDs
check the same rules at admission (crds/). Resolving a metric against its template (`resolve`) turns both into
one `ResolvedMetric`, what the analysis renders and the judge receives. Pure: the templates are given, never
read here.

A metric measures one workload at a time: its query names it with `{{ target }}`, which the check renders once
for the canary and once for the baseline (Kayenta's scopes). `{{ baseline }}` names the baseline's workload in
any query, and a template's arguments are `{{ args.NAME }}`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from reconciler.core import templates
from reconciler.core.judge_terms import (
    DEFAULT_CONFIDENCE,
    DEFAULT_MARGINAL_SCORE,
    DEFAULT_PASS_SCORE,
    Direction,
    MetricKind,
)

MAX_METRICS = 10
MAX_METRIC_QUERY_LENGTH = 4096
MAX_ARGS = 16
MAX_ARG_VALUE_LENGTH = 256
# A metric's name is shown in the status, Events and the plugin: a DNS label.
METRIC_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_METRIC_NAME_LENGTH = 63
ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# An argument's value goes into PromQL: a label value, a number, a duration or a metric name, never syntax
# (no quotes, braces, parentheses, operators or spaces), so an argument cannot change what a query asks.
ARG_VALUE = re.compile(r"^[A-Za-z0-9_.:/-]*$")
DEFAULT_SAMPLE_STEP_SECONDS = 2
DEFAULT_ALLOWED_EFFECT = 0.1
DEFAULT_ALLOWED_SPREAD_INCREASE = 0.5
# The variables of a metric's query beyond the CanaryApp's (templates.VARIABLES): the workload measured.
METRIC_VARIABLES = ("target",)
TEMPLATE_KINDS = ("MetricTemplate", "ClusterMetricTemplate")
_T = TypeVar("_T")


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


Query = Annotated[str, Field(min_length=1, max_length=MAX_METRIC_QUERY_LENGTH)]


class Threshold(_Model):
    """An absolute range for the canary's level: the median of its samples, or its failure rate."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _a_range(self) -> Threshold:
        bounds = [bound for bound in (self.min, self.max) if bound is not None]
        if not bounds:
            raise ValueError("threshold: give min, max or both")
        if not all(math.isfinite(bound) for bound in bounds):
            raise ValueError("threshold: min and max must be finite numbers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"threshold: min ({self.min:g}) is above max ({self.max:g}): swap them")
        return self


class CountQueries(_Model):
    """A counts metric: failures out of trials in the window, e.g. 5xx responses out of requests. Each query
    returns one number (summed over its series), rounded to a whole count."""

    failures: Query
    trials: Query


class TemplateRef(_Model):
    """A MetricTemplate in the CanaryApp's namespace, or a ClusterMetricTemplate."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    kind: Literal["MetricTemplate", "ClusterMetricTemplate"] = "MetricTemplate"


class TemplateArg(_Model):
    """An argument a template's queries use as `{{ args.NAME }}`; without a default a metric must give it."""

    name: Annotated[str, Field(min_length=1, max_length=63)]
    default: Annotated[str, Field(max_length=MAX_ARG_VALUE_LENGTH)] | None = None

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        if not ARG_NAME.match(name):
            raise ValueError(f"args: {name!r} is not a name: use letters, digits and _, not first a digit")
        return name

    @field_validator("default")
    @classmethod
    def _plain_default(cls, value: str | None) -> str | None:
        return _plain_arg_value("default", value) if value is not None else None


def _plain_arg_value(name: str, value: str) -> str:
    if not ARG_VALUE.match(value):
        raise ValueError(
            f"args.{name}: {value!r} may hold only letters, digits and . _ : / - (an argument is a value in "
            "the query, never PromQL syntax)"
        )
    return value


class Rules(_Model):
    """How a metric is judged; a CanaryApp's metric may override any of its template's."""

    direction: Direction | None = None
    threshold: Threshold | None = None
    compare_to_baseline: bool | None = None
    allowed_effect: Annotated[float, Field(ge=0, le=100)] | None = None
    allowed_spread_increase: Annotated[float, Field(ge=0, le=100)] | None = None


class MetricTemplateSpec(Rules):
    """The spec of a MetricTemplate or ClusterMetricTemplate: a metric's queries with arguments and its
    default rules."""

    query: Query | None = None
    counts: CountQueries | None = None
    args: Annotated[tuple[TemplateArg, ...], Field(max_length=MAX_ARGS)] = ()

    @model_validator(mode="after")
    def _one_kind_of_query(self) -> MetricTemplateSpec:
        problems = _query_problems(self.query, self.counts, "")
        problems += _variable_problems(_queries(self.query, self.counts), {arg.name for arg in self.args}, "")
        names = [arg.name for arg in self.args]
        doubled = sorted({name for name in names if names.count(name) > 1})
        if doubled:
            problems.append(f"args: {', '.join(doubled)} declared twice")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class MetricSpec(Rules):
    """One metric of `spec.analysis.metrics`: its own query (or counts), or a template's with arguments."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_METRIC_NAME_LENGTH)]
    query: Query | None = None
    counts: CountQueries | None = None
    template_ref: TemplateRef | None = None
    args: Annotated[
        dict[str, Annotated[str, Field(max_length=MAX_ARG_VALUE_LENGTH)]], Field(max_length=MAX_ARGS)
    ] = Field(default_factory=dict)
    weight: Annotated[float, Field(gt=0, le=1000)] = 1.0
    critical: bool = False
    optional: bool = False

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        if not METRIC_NAME.match(name):
            raise ValueError(f"name: {name!r} must be lower-case letters, digits and '-' (e.g. error-rate)")
        return name

    @field_validator("args")
    @classmethod
    def _plain_args(cls, args: dict[str, str]) -> dict[str, str]:
        for name, value in args.items():
            if not ARG_NAME.match(name):
                raise ValueError(
                    f"args: {name!r} is not a name: use letters, digits and _, not first a digit"
                )
            _plain_arg_value(name, value)
        return args

    @model_validator(mode="after")
    def _query_or_template(self) -> MetricSpec:
        where = f"metric {self.name!r}: "
        problems = []
        if self.template_ref is not None:
            if self.query is not None or self.counts is not None:
                problems.append(f"{where}give templateRef or its own query/counts, not both")
        else:
            problems += _query_problems(self.query, self.counts, where)
            if self.args:
                problems.append(f"{where}args are for a template's queries: name one in templateRef")
            problems += _variable_problems(_queries(self.query, self.counts), set(), where)
        if self.critical and self.optional:
            problems.append(f"{where}a critical metric cannot be optional: drop one of them")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class ScoreThresholds(_Model):
    """The check's score (0..100): at least `pass` passes, at least `marginal` is Marginal, below fails."""

    marginal: Annotated[float, Field(ge=0, le=100)] = DEFAULT_MARGINAL_SCORE
    pass_: Annotated[float, Field(ge=0, le=100, alias="pass")] = DEFAULT_PASS_SCORE

    @model_validator(mode="after")
    def _ordered(self) -> ScoreThresholds:
        if self.marginal > self.pass_:
            raise ValueError(
                f"scoreThresholds: marginal ({self.marginal:g}) must not exceed pass ({self.pass_:g})"
            )
        return self


class AnalysisSpec(_Model):
    """`spec.analysis`: a baseline beside the canary, the metrics the judge compares and the score's rules."""

    baseline: bool = False
    metrics: Annotated[tuple[MetricSpec, ...], Field(max_length=MAX_METRICS)] = ()
    confidence: Annotated[float, Field(ge=0.5, lt=1)] = DEFAULT_CONFIDENCE
    score_thresholds: ScoreThresholds = Field(default_factory=ScoreThresholds)
    # The resolution of a continuous metric's samples (query_range's step) over the window.
    sample_step_seconds: Annotated[int, Field(ge=1, le=300)] = DEFAULT_SAMPLE_STEP_SECONDS
    min_samples: Annotated[int, Field(ge=2, le=1000)] = 10
    min_trials: Annotated[int, Field(ge=1)] = 10

    @model_validator(mode="after")
    def _unique_names(self) -> AnalysisSpec:
        names = [metric.name for metric in self.metrics]
        doubled = sorted({name for name in names if names.count(name) > 1})
        if doubled:
            raise ValueError(f"analysis.metrics: the names {', '.join(doubled)} are used twice: rename one")
        if not self.baseline:
            comparing = [metric.name for metric in self.metrics if metric.compare_to_baseline]
            if comparing:
                raise ValueError(
                    f"analysis.metrics: {', '.join(comparing)} compare to a baseline, but analysis.baseline "
                    "is false: set analysis.baseline: true or compareToBaseline: false with a threshold"
                )
        return self


class ResolvedMetric(_Model):
    """A metric with its template applied: the queries (arguments filled in; the CanaryApp's variables and
    `{{ target }}` still to render at the check) and every rule decided."""

    name: str
    kind: MetricKind
    query: str | None
    counts: CountQueries | None
    direction: Direction
    threshold: Threshold | None
    compare_to_baseline: bool
    allowed_effect: float
    allowed_spread_increase: float
    weight: float
    critical: bool
    optional: bool


class TemplateError(ValueError):
    """A metric names a template that is missing or does not fit it; the message names both and the fix."""


def resolve(metric: MetricSpec, template: MetricTemplateSpec | None, baseline: bool) -> ResolvedMetric:
    """`metric` with `template` (the object its templateRef names, None when it names none or it is
    missing) applied: the metric's own rules first, then the template's, then the defaults. Raises
    TemplateError when the template is missing, an argument is unknown or one without a default is not
    given."""
    source: Rules = metric
    query, counts = metric.query, metric.counts
    if metric.template_ref is not None:
        ref = metric.template_ref
        if template is None:
            raise TemplateError(
                f"metric {metric.name!r}: {ref.kind} {ref.name!r} not found: create it or fix templateRef"
            )
        values = _arguments(metric, template)
        query = _fill(template.query, values)
        counts = (
            CountQueries(
                failures=_fill(template.counts.failures, values) or "",
                trials=_fill(template.counts.trials, values) or "",
            )
            if template.counts is not None
            else None
        )
        source = template
    compare = _first(metric.compare_to_baseline, source.compare_to_baseline, baseline)
    threshold = metric.threshold or source.threshold
    if not compare and threshold is None:
        raise TemplateError(
            f"metric {metric.name!r} judges nothing: compare it to the baseline (analysis.baseline: true) or "
            "give it a threshold"
        )
    return ResolvedMetric(
        name=metric.name,
        kind=MetricKind.COUNTS if counts is not None else MetricKind.CONTINUOUS,
        query=query,
        counts=counts,
        direction=_first(metric.direction, source.direction, Direction.INCREASE),
        threshold=threshold,
        compare_to_baseline=compare,
        allowed_effect=_first(metric.allowed_effect, source.allowed_effect, DEFAULT_ALLOWED_EFFECT),
        allowed_spread_increase=_first(
            metric.allowed_spread_increase, source.allowed_spread_increase, DEFAULT_ALLOWED_SPREAD_INCREASE
        ),
        weight=metric.weight,
        critical=metric.critical,
        optional=metric.optional,
    )


def _first(*values: _T | None) -> _T:
    for value in values:
        if value is not None:
            return value
    raise AssertionError("the last value is the default")


def _arguments(metric: MetricSpec, template: MetricTemplateSpec) -> dict[str, str]:
    declared = {arg.name: arg.default for arg in template.args}
    ref = metric.template_ref
    assert ref is not None
    unknown = sorted(set(metric.args) - set(declared))
    if unknown:
        raise TemplateError(
            f"metric {metric.name!r}: {ref.kind} {ref.name!r} has no argument {', '.join(unknown)}; "
            f"it takes {', '.join(sorted(declared)) or 'none'}"
        )
    values = {name: metric.args.get(name, default) for name, default in declared.items()}
    missing = sorted(name for name, value in values.items() if value is None)
    if missing:
        raise TemplateError(
            f"metric {metric.name!r}: {ref.kind} {ref.name!r} needs the argument {', '.join(missing)}: "
            "give it in args"
        )
    return {name: value for name, value in values.items() if value is not None}


def _fill(query: str | None, args: dict[str, str]) -> str | None:
    """The template's `{{ args.NAME }}` filled in; the CanaryApp's variables are left for the check."""
    if query is None:
        return None
    return templates.render_partial(query, {f"args.{name}": value for name, value in args.items()})


def _queries(query: str | None, counts: CountQueries | None) -> list[str]:
    return [q for q in (query, counts.failures if counts else None, counts.trials if counts else None) if q]


def _query_problems(query: str | None, counts: CountQueries | None, where: str) -> list[str]:
    if (query is None) == (counts is None):
        return [
            f"{where}give exactly one of query (a continuous metric such as latency, sampled over the "
            "window) and counts (failures and trials, such as errors out of requests)"
        ]
    return []


def _variable_problems(queries: list[str], args: set[str], where: str) -> list[str]:
    known = set(templates.VARIABLES) | set(METRIC_VARIABLES) | {f"args.{name}" for name in args}
    unknown = sorted({name for query in queries for name in templates.placeholders(query)} - known)
    if not unknown:
        return []
    usable = ", ".join("{{ " + name + " }}" for name in (*templates.VARIABLES, *METRIC_VARIABLES))
    return [
        f"{where}unknown query variable {', '.join(repr(name) for name in unknown)}: use {usable}"
        + (" or a declared argument as {{ args.NAME }}" if args or where == "" else "")
    ]
