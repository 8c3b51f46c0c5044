"""Pod Security by Kubernetes itself: what the reconciler requires of a CanaryApp's namespace, and how it
reads the API server's own verdict on a pod template. Pure: labels and warnings come in as data.

The Pod Security Standards (privileged < baseline < restricted) are enforced by the API server's Pod Security
admission, per namespace, from its labels `pod-security.kubernetes.io/<mode>: <level>`:

- `enforce`: a pod above the level is refused, whoever creates it — the reconciler's ReplicaSets too. The
  reconciler requires the CanaryApp's namespace to enforce at least the operator's level
  (`--pod-security-level`, default `baseline`; `restricted` recommended), so no CanaryApp can make it run a
  pod the platform would refuse its author.
- `warn`: a Deployment (any pod template) above the level is accepted with a warning. The reconciler requires
  it at the same level and asks the API server about every new template with a server-side dry run of the
  Deployment: a template the API server warns about is refused before anything is created, with the API
  server's own message (instead of a canary whose pods never start).

`privileged` as the operator's level turns both requirements off. Namespaces exempted in the API server's
admission configuration are not checked by it; the reconciler cannot see such exemptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

LEVELS = ("privileged", "baseline", "restricted")
DEFAULT_LEVEL = "baseline"
LABEL_PREFIX = "pod-security.kubernetes.io/"
REQUIRED_MODES = ("enforce", "warn")
# How Pod Security admission starts its warnings (k8s.io/pod-security-admission, admission.go).
WARNING_PREFIX = "would violate PodSecurity"
# How the dry run reports a template the API server refuses outright (invalid, not only above the level).
REFUSED_PREFIX = "the API server refused the template: "


def at_least(level: str | None, required: str) -> bool:
    """Whether `level` (a label's value; unset means privileged) is `required` or stricter."""
    if level not in LEVELS:
        return False if level is not None else required == "privileged"
    return LEVELS.index(level) >= LEVELS.index(required)


def namespace_violations(namespace: str, labels: Mapping[str, str] | None, required: str) -> list[str]:
    """What the namespace lacks for the operator's level, each naming the label and the fix."""
    if required == "privileged":
        return []
    labels = labels or {}
    missing = [mode for mode in REQUIRED_MODES if not at_least(labels.get(LABEL_PREFIX + mode), required)]
    if not missing:
        return []
    found = ", ".join(
        f"{LABEL_PREFIX}{mode}={labels.get(LABEL_PREFIX + mode, '<unset>')}" for mode in missing
    )
    fix = " ".join(f"{LABEL_PREFIX}{mode}={required}" for mode in missing)
    return [
        f"namespace {namespace}: Pod Security must be at least {required!r} (the reconciler runs with "
        f"--pod-security-level={required}), found {found}: kubectl label namespace {namespace} --overwrite "
        f"{fix} (a cluster administrator's decision)"
    ]


def template_violations(warnings: Iterable[str]) -> list[str]:
    """The Pod Security warnings of a dry run of the Deployment (and its refusal, when the API server found
    the template invalid), as refusals of `spec.template`."""
    problems = []
    for warning in warnings:
        if warning.startswith(WARNING_PREFIX):
            admission = f"the API server's Pod Security admission {_plain(warning)}"
            problems.append(f"spec.template: {admission}; change the template")
        elif warning.startswith(REFUSED_PREFIX):
            problems.append(f"spec.template: {_plain(warning)}; change the template")
    return problems


def _plain(warning: str) -> str:
    """A warning as a message part: one line, printable characters only."""
    return " ".join("".join(c if c.isprintable() else " " for c in warning).split())
