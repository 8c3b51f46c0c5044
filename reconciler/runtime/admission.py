"""Whether a pass may act on a CanaryApp at all: its spec parses, and it keeps within the routing, pod,
metrics and Pod Security policies. Pod Security is the platform's own judgement (the namespace's labels, and a
server-side dry run of the template), remembered per template revision so a template is asked about once."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from reconciler.core import pod_security, reasons, workload
from reconciler.core.endpoints import EndpointError, endpoint_for
from reconciler.core.grants import granted
from reconciler.core.model import CanaryApp
from reconciler.core.names import canary_name
from reconciler.core.pod_policy import PodPolicy
from reconciler.core.policy import MetricsPolicy, RoutingPolicy
from reconciler.core.ports import ClusterReader

# Dry runs remembered per (namespace, revision, namespace labels): a template is asked about once, not every
# pass, and again when the namespace's Pod Security labels change.
POD_SECURITY_CACHE_SIZE = 512


@dataclass(frozen=True)
class Refused:
    """Why a CanaryApp is not acted on: each field and what is wrong with it, `; `-separated, and the reason
    of its Stalled condition (a spec that does not parse, or one a policy refuses)."""

    problems: str
    reason: str = reasons.POLICY_DENIED


def describe_validation_error(error: ValidationError) -> str:
    """`spec.stepWeight: Input should be ...` lines: the field and what is wrong with it."""
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


class Admission:
    def __init__(
        self,
        cluster: ClusterReader,
        policy: RoutingPolicy,
        pod_policy: PodPolicy,
        metrics_policy: MetricsPolicy,
        pod_security_level: str,
    ) -> None:
        self.cluster = cluster
        self.policy = policy
        self.pod_policy = pod_policy
        self.metrics_policy = metrics_policy
        self.pod_security_level = pod_security_level
        self._dry_runs: OrderedDict[tuple[Any, ...], list[str]] = OrderedDict()

    def admit(self, raw: dict[str, Any]) -> CanaryApp | Refused:
        """The CanaryApp if its spec is valid and within the policy, else why not."""
        try:
            app = CanaryApp.model_validate(raw)
        except ValidationError as error:
            return Refused(describe_validation_error(error), reasons.INVALID_SPEC)
        app = app.model_copy(update={"spec": self.policy.routed(app.spec)})
        namespace, name = app.metadata.namespace, app.metadata.name
        refused = [
            *self.policy.violations(namespace, name, app.spec, app.status),
            *self._pod_violations(app),
            *self.metrics_policy.violations(namespace, name, app.spec),
            *self._endpoint_violations(app),
        ]
        return Refused("; ".join(refused)) if refused else app

    def _endpoint_violations(self, app: CanaryApp) -> list[str]:
        """The metrics Secret must be usable before anything is created: marked, granted to this CanaryApp,
        complete (checks read it again each time, so a rotation or a revoked grant counts at once)."""
        reference = app.spec.prometheus_secret_ref
        if reference is None:
            return []
        namespace = app.metadata.namespace
        try:
            endpoint_for(
                app.spec, namespace, app.metadata.name, self.cluster.read_secret(namespace, reference.name)
            )
        except EndpointError as error:
            return [f"spec.prometheusSecretRef: {error}"]
        return []

    def _pod_violations(self, app: CanaryApp) -> list[str]:
        """The reconciler's pod policy, then the platform's own Pod Security: the namespace must enforce the
        operator's level, and the API server must not warn about the template (a server-side dry run)."""
        namespace, name, spec = app.metadata.namespace, app.metadata.name, app.spec
        replicas = {"spec.replicas": spec.replicas, "spec.testReplicas": spec.test_replicas}
        if spec.autoscaler is not None:
            replicas["spec.autoscaler.maxReplicas"] = spec.autoscaler.max_replicas
        answers = {
            reference: granted(self.cluster.object_annotations(namespace, *reference), name)
            for reference in self.pod_policy.references(spec.template)
        }
        problems = self.pod_policy.violations(
            namespace, name, spec.template, replicas, lambda kind, object_name: answers[(kind, object_name)]
        )
        if problems or self.pod_security_level == "privileged":
            return problems
        labels = self.cluster.namespace_labels(namespace) or {}
        problems = pod_security.namespace_violations(namespace, labels, self.pod_security_level)
        if problems:
            return problems
        try:
            template = workload.effective_template(spec.template, spec.image, spec.image_listen_port)
        except workload.TemplateError:
            return []  # the model reports the contradiction
        return pod_security.template_violations(self._dry_run(app, template, labels))

    def _dry_run(self, app: CanaryApp, template: dict[str, Any], labels: dict[str, str]) -> list[str]:
        namespace, name = app.metadata.namespace, app.metadata.name
        key = (namespace, workload.revision(template), tuple(sorted(labels.items())))
        if key in self._dry_runs:
            self._dry_runs.move_to_end(key)
            return self._dry_runs[key]
        pod = workload.pod_template(name, "canary", template)
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"generateName": f"{canary_name(name)}-", "namespace": namespace},
            "spec": {"replicas": 0, "selector": {"matchLabels": pod["metadata"]["labels"]}, "template": pod},
        }
        warnings = self.cluster.pod_security_warnings(namespace, deployment)
        self._dry_runs[key] = warnings
        while len(self._dry_runs) > POD_SECURITY_CACHE_SIZE:
            self._dry_runs.popitem(last=False)
        return warnings
