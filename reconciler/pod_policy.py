"""What a CanaryApp's pod template may ask for: pure predicates, set by whoever runs the reconciler.

The reconciler may create Deployments in every namespace, and it creates the primary and canary Deployments
from `spec.template`. Whoever writes that template decides what runs in the pods, so through it a CanaryApp
author who may not create Pods or Deployments would gain what a pod's creator has:

- **The pod's identity.** Code in the pod holds the token of its ServiceAccount, so naming another account
  acts with that account's permissions (`--allowed-service-accounts`).
- **The node.** A privileged container, host namespaces (network, PID, IPC), host ports, added capabilities,
  an unmasked /proc and host directories each reach past the container into the node and every pod on it
  (`--allow-privileged`, `--allowed-capabilities`, `--allowed-host-paths`).
- **The namespace's Secrets.** A pod may mount or read into its environment any Secret of its namespace,
  whether or not its creator may read Secrets (`--allowed-secrets`). A projected ServiceAccount token is a
  credential for any audience the template names (a vault, a cloud's identity federation) that its author
  could not request: no setting permits it; the token Kubernetes mounts for the API server remains.

`PodPolicy` refuses all of these by default; the operator permits each one by a flag. The namespace's Pod
Security admission still applies to the pods the reconciler creates: this policy narrows what a CanaryApp may
ask the reconciler for, it grants nothing that admission would refuse.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

NAME_PLACEHOLDER = "{name}"
DEFAULT_SERVICE_ACCOUNT = "default"
POD_SPEC = "spec.template.spec"
CONTAINER_KINDS = ("initContainers", "containers", "ephemeralContainers")
HOST_NAMESPACES = {
    "hostNetwork": "the node's network",
    "hostPID": "the node's PIDs",
    "hostIPC": "the node's IPC",
}
ALL_CAPABILITIES = "ALL"

Fields = Mapping[str, Any]


@dataclass(frozen=True)
class PodPolicy:
    """Set by the operator of the reconciler (`--allowed-service-accounts`, `--allow-privileged`,
    `--allowed-host-paths`, `--allowed-capabilities`, `--allowed-secrets`).

    Service account and Secret patterns are case-sensitive shell-style globs; `{name}` stands for the
    CanaryApp's name (`{name}-*`: the CanaryApp's own accounts or Secrets). Host paths are prefixes that end
    at a path segment. Capabilities are compared case-insensitively, with or without `CAP_`; `ALL` permits
    any.
    """

    allowed_service_accounts: tuple[str, ...] = (DEFAULT_SERVICE_ACCOUNT,)
    allow_privileged: bool = False
    allowed_host_paths: tuple[str, ...] = ()
    allowed_capabilities: tuple[str, ...] = ()
    allowed_secrets: tuple[str, ...] = ()

    def violations(self, namespace: str, name: str, template: Mapping[str, Any] | None) -> list[str]:
        """Every way `template` asks for more than this policy allows, each naming the field and the fix.

        Fields of the wrong type are skipped: the API server refuses them when the Deployment is created."""
        if not isinstance(template, Mapping):
            return []
        pod = _fields(template.get("spec"))
        problems = [
            *self._service_account_violations(namespace, name, pod),
            *([] if self.allow_privileged else _privileges(pod)),
            *self._volume_violations(namespace, name, pod),
        ]
        for path, container in _containers(pod):
            problems += self._capability_violations(path, _fields(container.get("securityContext")))
            problems += self._secret_reference_violations(namespace, name, path, container)
        return problems

    def _service_account_violations(self, namespace: str, name: str, pod: Fields) -> Iterator[str]:
        named = {
            field: account
            for field in ("serviceAccountName", "serviceAccount")
            if isinstance(account := pod.get(field), str) and account
        }
        for field, account in (named or {"serviceAccountName": DEFAULT_SERVICE_ACCOUNT}).items():
            if not _matches(account, self.allowed_service_accounts, name):
                yield _refusal(
                    f"{POD_SPEC}.{field}",
                    f"running as the ServiceAccount {namespace}/{account}",
                    _setting("--allowed-service-accounts", self.allowed_service_accounts),
                    "name a permitted ServiceAccount",
                )

    def _volume_violations(self, namespace: str, name: str, pod: Fields) -> Iterator[str]:
        for index, volume in _items(pod.get("volumes")):
            path = f"{POD_SPEC}.volumes[{index}]"
            host_path = _fields(volume.get("hostPath")).get("path")
            if isinstance(host_path, str) and not _within(host_path, self.allowed_host_paths):
                yield _refusal(
                    f"{path}.hostPath.path",
                    f"the node's directory {host_path!r}",
                    _setting("--allowed-host-paths", self.allowed_host_paths),
                    "use an emptyDir, configMap or persistentVolumeClaim volume instead",
                )
            secret = _fields(volume.get("secret")).get("secretName")
            yield from self._secret_refusals(namespace, name, f"{path}.secret.secretName", secret)
            for source_index, source in _items(_fields(volume.get("projected")).get("sources")):
                source_path = f"{path}.projected.sources[{source_index}]"
                secret = _fields(source.get("secret")).get("name")
                yield from self._secret_refusals(namespace, name, f"{source_path}.secret.name", secret)
                if isinstance(source.get("serviceAccountToken"), Mapping):
                    yield _refusal(
                        f"{source_path}.serviceAccountToken",
                        "a projected ServiceAccount token (a credential for any audience)",
                        None,
                        "use the token Kubernetes mounts in /var/run/secrets/kubernetes.io/serviceaccount",
                    )

    def _capability_violations(self, path: str, security: Fields) -> Iterator[str]:
        allowed = {_capability(allowed) for allowed in self.allowed_capabilities}
        added = _fields(security.get("capabilities")).get("add")
        for index, capability in enumerate(added if isinstance(added, list) else []):
            if isinstance(capability, str) and not {_capability(capability), ALL_CAPABILITIES} & allowed:
                yield _refusal(
                    f"{path}.securityContext.capabilities.add[{index}]",
                    f"adding the capability {capability!r}",
                    _setting("--allowed-capabilities", self.allowed_capabilities),
                    "remove it",
                )

    def _secret_reference_violations(
        self, namespace: str, name: str, path: str, container: Fields
    ) -> Iterator[str]:
        for index, variable in _items(container.get("env")):
            secret = _fields(_fields(variable.get("valueFrom")).get("secretKeyRef")).get("name")
            field = f"{path}.env[{index}].valueFrom.secretKeyRef.name"
            yield from self._secret_refusals(namespace, name, field, secret)
        for index, source in _items(container.get("envFrom")):
            secret = _fields(source.get("secretRef")).get("name")
            yield from self._secret_refusals(
                namespace, name, f"{path}.envFrom[{index}].secretRef.name", secret
            )

    def _secret_refusals(self, namespace: str, name: str, field: str, secret: object) -> Iterator[str]:
        if isinstance(secret, str) and not _matches(secret, self.allowed_secrets, name):
            yield _refusal(
                field,
                f"reading the Secret {namespace}/{secret}",
                _setting("--allowed-secrets", self.allowed_secrets),
                "reference a permitted Secret or none",
            )


def _privileges(pod: Fields) -> Iterator[str]:
    """What reaches past the container into the node: refused unless `--allow-privileged`."""
    for field, shared in HOST_NAMESPACES.items():
        if pod.get(field) is True:
            yield _privilege_refusal(f"{POD_SPEC}.{field}", f"sharing {shared}")
    yield from _host_process(POD_SPEC, _fields(pod.get("securityContext")))
    for path, container in _containers(pod):
        yield from _container_privileges(path, container)


def _container_privileges(path: str, container: Fields) -> Iterator[str]:
    security = _fields(container.get("securityContext"))
    if security.get("privileged") is True:
        yield _privilege_refusal(f"{path}.securityContext.privileged", "a privileged container")
    if security.get("allowPrivilegeEscalation") is True:
        yield _privilege_refusal(
            f"{path}.securityContext.allowPrivilegeEscalation", "privilege escalation (setuid, file caps)"
        )
    proc_mount = security.get("procMount")
    if isinstance(proc_mount, str) and proc_mount != "Default":
        yield _privilege_refusal(f"{path}.securityContext.procMount", f"the {proc_mount} /proc mount")
    yield from _host_process(path, security)
    for index, port in _items(container.get("ports")):
        host_port = port.get("hostPort")
        if isinstance(host_port, int) and not isinstance(host_port, bool) and host_port != 0:
            yield _privilege_refusal(f"{path}.ports[{index}].hostPort", f"the node's port {host_port}")


def _host_process(path: str, security: Fields) -> Iterator[str]:
    if _fields(security.get("windowsOptions")).get("hostProcess") is True:
        yield _privilege_refusal(
            f"{path}.securityContext.windowsOptions.hostProcess", "a Windows host process"
        )


def _privilege_refusal(field: str, what: str) -> str:
    return _refusal(field, what, "--no-allow-privileged", "remove it")


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


def _matches(value: str, patterns: tuple[str, ...], name: str) -> bool:
    return any(fnmatch.fnmatchcase(value, pattern.replace(NAME_PLACEHOLDER, name)) for pattern in patterns)


def _within(path: str, prefixes: tuple[str, ...]) -> bool:
    """Whether `path` is one of `prefixes` or below one (`/var/log` holds `/var/log/app`, not `/var/logs`).

    A path with `..` is never within: the node resolves it after any symlink on the way, which only the node
    can see (`/var/log/link/../x` may be anywhere)."""
    if not path.startswith("/") or ".." in path.split("/"):
        return False
    resolved = posixpath.normpath(path)
    return any(
        resolved == (prefix := posixpath.normpath(allowed)) or resolved.startswith(prefix.rstrip("/") + "/")
        for allowed in prefixes
    )


def _capability(capability: str) -> str:
    upper = capability.strip().upper()
    return upper.removeprefix("CAP_")
