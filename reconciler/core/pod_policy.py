"""What a CanaryApp's pods may ask for that Pod Security does not judge: pure predicates, set by whoever runs
the reconciler.

The reconciler may create Deployments in every namespace, and it creates the primary and canary Deployments
from `spec.template`. Whoever writes that template decides what runs in the pods, so through it a CanaryApp
author who may not create Pods or Deployments would gain what a pod's creator has. Two guards share the work:

- **Pod Security (the platform's own, `pod_security.py`).** Privileges on the node — privileged
  containers, host namespaces and ports, hostPath volumes, added capabilities, unsafe sysctls, SELinux types,
  seccomp and AppArmor profiles, /proc mounts, running as root — are what Kubernetes' Pod Security Standards
  judge. The reconciler requires the CanaryApp's namespace to enforce at least the operator's level and asks
  the API server (a server-side dry run) about every template; this module holds no copy of those rules.
- **This policy: what only the reconciler's operator can know.** Pod Security judges a pod on its own; it
  does not know which of the namespace's objects a pod may use, or who the pod may pretend to be:
  - the pod's identity: the ServiceAccount it runs as (`--allowed-service-accounts`, or granted by the
    account's owner: `reconciler/core/grants.py`);
  - the namespace's Secrets a pod may read (`--allowed-secrets`, or granted by the Secret's owner);
  - scheduling priority that may evict others' pods (`--allowed-priority-classes`);
  - labels, which join Services, NetworkPolicies and AuthorizationPolicies selecting them
    (`--allowed-pod-labels`), and annotations, which steer mutating webhooks such as Istio's sidecar injector
    or Vault's (`--allowed-pod-annotations`);
  - a DNS name of the author's choosing (`hostname`/`subdomain`: `--allow-pod-hostname`);
  - how many pods it may run (`--max-replicas`);
  - credentials and claims no setting permits: projected ServiceAccount tokens or pod certificates (a
    credential for any audience), resource claims (devices), ephemeral volumes (a PersistentVolumeClaim of
    any size, created by Kubernetes for the pod), and a fixed `nodeName` (which bypasses the scheduler).

Names are never granted by the CanaryApp's own name, which its author chooses: a grant comes from the
operator's allow-list or from the owner of the object.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.grants import how_to_grant

DEFAULT_SERVICE_ACCOUNT = "default"
DEFAULT_MAX_REPLICAS = 50
POD_SPEC = "spec.template.spec"
POD_METADATA = "spec.template.metadata"
CONTAINER_KINDS = ("initContainers", "containers", "ephemeralContainers")

Fields = Mapping[str, Any]
# (kind, name) -> whether the object's owner granted it to the CanaryApp (grants.py); the caller
# reads the object. Kinds: "ServiceAccount", "Secret".
GrantLookup = Callable[[str, str], bool]


def no_grants(kind: str, name: str) -> bool:
    return False


@dataclass(frozen=True)
class PodPolicy:
    """Set by the operator of the reconciler. Service account, Secret, priority class, label and annotation
    patterns are case-sensitive shell-style globs; a label or annotation pattern matches the key."""

    allowed_service_accounts: tuple[str, ...] = (DEFAULT_SERVICE_ACCOUNT,)
    allowed_secrets: tuple[str, ...] = ()
    allowed_priority_classes: tuple[str, ...] = ()
    allowed_pod_labels: tuple[str, ...] = ()
    allowed_pod_annotations: tuple[str, ...] = ()
    allow_pod_hostname: bool = False
    max_replicas: int = DEFAULT_MAX_REPLICAS

    def references(self, template: Mapping[str, Any] | None) -> list[tuple[str, str]]:
        """The (kind, name) objects `template` uses that no allow-list permits: the caller looks up whether
        their owners granted them (and passes the answers to `violations`)."""
        pod = _fields(_fields(template).get("spec"))
        return sorted(
            {(kind, name) for kind, _, name in _references(pod) if not _matches(name, self._allowed(kind))}
        )

    def violations(
        self,
        namespace: str,
        name: str,
        template: Mapping[str, Any] | None,
        replicas: Mapping[str, int] | None = None,
        granted: GrantLookup = no_grants,
    ) -> list[str]:
        """Every way the pods ask for more than this policy allows, each naming the field and the fix.

        `replicas` maps spec fields to the pod counts they ask for (`spec.replicas`: 3). `granted` answers
        whether an object's owner granted it to this CanaryApp. Fields of the wrong type are skipped: the
        API server refuses them when the Deployment is created."""
        problems = list(self._replica_violations(replicas or {}))
        if not isinstance(template, Mapping):
            return problems
        pod, metadata = _fields(template.get("spec")), _fields(template.get("metadata"))
        for kind, field, object_name in _references(pod):
            if not (_matches(object_name, self._allowed(kind)) or granted(kind, object_name)):
                problems.append(
                    _refusal(
                        field,
                        f"{USES[kind]} {namespace}/{object_name}",
                        _setting(FLAGS[kind], self._allowed(kind)),
                        how_to_grant(kind, namespace, object_name, name),
                    )
                )
        problems += self._pod_violations(pod)
        problems += self._metadata_violations(metadata)
        problems += _unpermitted(pod)
        return problems

    def _allowed(self, kind: str) -> tuple[str, ...]:
        return self.allowed_service_accounts if kind == "ServiceAccount" else self.allowed_secrets

    def _replica_violations(self, replicas: Mapping[str, int]) -> Iterator[str]:
        for field, count in replicas.items():
            if count > self.max_replicas:
                yield _refusal(
                    field,
                    f"{count} pods",
                    f"--max-replicas={self.max_replicas}",
                    f"ask for at most {self.max_replicas}",
                )

    def _pod_violations(self, pod: Fields) -> Iterator[str]:
        priority = pod.get("priorityClassName")
        if isinstance(priority, str) and priority and not _matches(priority, self.allowed_priority_classes):
            yield _refusal(
                f"{POD_SPEC}.priorityClassName",
                f"the priority class {priority!r} (it may preempt other pods)",
                _setting("--allowed-priority-classes", self.allowed_priority_classes),
                "remove it",
            )
        if not self.allow_pod_hostname:
            for field in ("hostname", "subdomain"):
                if isinstance(value := pod.get(field), str) and value:
                    yield _refusal(
                        f"{POD_SPEC}.{field}",
                        f"a DNS name of the template's choosing ({value!r})",
                        "--no-allow-pod-hostname",
                        "remove it",
                    )

    def _metadata_violations(self, metadata: Fields) -> Iterator[str]:
        for field, flag, allowed, effect in (
            ("labels", "--allowed-pod-labels", self.allowed_pod_labels, "selectors of other apps match it"),
            (
                "annotations",
                "--allowed-pod-annotations",
                self.allowed_pod_annotations,
                "admission webhooks act on it",
            ),
        ):
            for key in sorted(_fields(metadata.get(field))):
                if isinstance(key, str) and not _matches(key, allowed):
                    yield _refusal(
                        f"{POD_METADATA}.{field}[{key!r}]",
                        f"the pod {field[:-1]} {key!r} ({effect})",
                        _setting(flag, allowed),
                        "remove it",
                    )


# What using each kind of object means, and the flag that allows it for every CanaryApp.
USES = {"ServiceAccount": "running as the ServiceAccount", "Secret": "reading the Secret"}
FLAGS = {"ServiceAccount": "--allowed-service-accounts", "Secret": "--allowed-secrets"}


def _references(pod: Fields) -> list[tuple[str, str, str]]:
    """(kind, field, name) of every ServiceAccount and Secret the pod uses."""
    return [
        *(("ServiceAccount", field, account) for field, account in _service_accounts(pod)),
        *(("Secret", field, secret) for field, secret in _secret_references(pod)),
    ]


def _service_accounts(pod: Fields) -> list[tuple[str, str]]:
    named = [
        (f"{POD_SPEC}.{field}", account)
        for field in ("serviceAccountName", "serviceAccount")
        if isinstance(account := pod.get(field), str) and account
    ]
    return named or [(f"{POD_SPEC}.serviceAccountName", DEFAULT_SERVICE_ACCOUNT)]


def _secret_references(pod: Fields) -> Iterator[tuple[str, str]]:
    """Every Secret the pod reads: volumes, projected volumes, env and envFrom, image pull Secrets."""
    candidates: list[tuple[str, object]] = []
    for index, volume in _items(pod.get("volumes")):
        path = f"{POD_SPEC}.volumes[{index}]"
        candidates.append((f"{path}.secret.secretName", _fields(volume.get("secret")).get("secretName")))
        for source_index, source in _items(_fields(volume.get("projected")).get("sources")):
            field = f"{path}.projected.sources[{source_index}].secret.name"
            candidates.append((field, _fields(source.get("secret")).get("name")))
    for path, container in _containers(pod):
        for index, variable in _items(container.get("env")):
            secret = _fields(_fields(variable.get("valueFrom")).get("secretKeyRef")).get("name")
            candidates.append((f"{path}.env[{index}].valueFrom.secretKeyRef.name", secret))
        for index, source in _items(container.get("envFrom")):
            candidates.append(
                (f"{path}.envFrom[{index}].secretRef.name", _fields(source.get("secretRef")).get("name"))
            )
    for index, reference in _items(pod.get("imagePullSecrets")):
        candidates.append((f"{POD_SPEC}.imagePullSecrets[{index}].name", reference.get("name")))
    for field, secret in candidates:
        if isinstance(secret, str) and secret:
            yield field, secret


# Fields no setting permits, with the reason and the fix.
UNPERMITTED_VOLUME_SOURCES = {
    "ephemeral": (
        "an ephemeral volume (a PersistentVolumeClaim Kubernetes creates for the pod)",
        "use an emptyDir with a sizeLimit",
    ),
}
UNPERMITTED_PROJECTIONS = {
    "serviceAccountToken": (
        "a projected ServiceAccount token (a credential for any audience)",
        "use the token Kubernetes mounts in /var/run/secrets/kubernetes.io/serviceaccount",
    ),
    "podCertificate": ("a projected pod certificate (a credential for any signer)", "remove it"),
    "clusterTrustBundle": ("a projected cluster trust bundle", "remove it"),
}


def _unpermitted(pod: Fields) -> Iterator[str]:
    if isinstance(node := pod.get("nodeName"), str) and node:
        yield _refusal(
            f"{POD_SPEC}.nodeName", f"a fixed node ({node!r}, bypassing the scheduler)", None, "remove it"
        )
    if pod.get("resourceClaims"):
        yield _refusal(f"{POD_SPEC}.resourceClaims", "resource claims (devices)", None, "remove them")
    for index, volume in _items(pod.get("volumes")):
        path = f"{POD_SPEC}.volumes[{index}]"
        for source, (what, fix) in UNPERMITTED_VOLUME_SOURCES.items():
            if source in volume:
                yield _refusal(f"{path}.{source}", what, None, fix)
        for source_index, projection in _items(_fields(volume.get("projected")).get("sources")):
            for source, (what, fix) in UNPERMITTED_PROJECTIONS.items():
                if source in projection:
                    yield _refusal(f"{path}.projected.sources[{source_index}].{source}", what, None, fix)


def _refusal(field: str, what: str, setting: str | None, fix: str) -> str:
    if setting is None:
        return f"{field}: {what} is not allowed: no setting of the reconciler permits it; {fix}"
    return (
        f"{field}: {what} is not allowed: the reconciler runs with {setting}; {fix}, or ask its operator "
        "to permit it"
    )


def _setting(flag: str, patterns: tuple[str, ...]) -> str:
    return f"{flag}={','.join(patterns)!r}"


def _fields(value: object) -> Fields:
    return value if isinstance(value, Mapping) else {}


def _items(value: object) -> Iterator[tuple[int, Fields]]:
    """The objects of a list with their indexes as the CanaryApp spells them; anything else is skipped."""
    for index, item in enumerate(value if isinstance(value, list) else []):
        if isinstance(item, Mapping):
            yield index, item


def _containers(pod: Fields) -> Iterator[tuple[str, Fields]]:
    for kind in CONTAINER_KINDS:
        for index, container in _items(pod.get(kind)):
            yield f"{POD_SPEC}.{kind}[{index}]", container


def _matches(value: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)
