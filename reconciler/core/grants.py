"""Who may let a CanaryApp use an object of its namespace (a ServiceAccount its pods run as, a Secret its
pods read or its metric queries send): the object's owner, never the CanaryApp's author.

A CanaryApp's author picks its name, so no rule may grant rights by that name (a CanaryApp named `ci` must
not get ServiceAccount `ci` or Secret `ci-token` for it). Instead, whoever may write the ServiceAccount or the
Secret says which CanaryApps may use it, with an annotation on that object:

    canary.atze.io/allowed-canaryapps: "web,api"     # these CanaryApps of the same namespace
    canary.atze.io/allowed-canaryapps: "*"           # every CanaryApp of the namespace

RBAC already decides who may write that annotation: the same people who could hand the object's contents
out anyway. Pure: the annotations come in as data, read by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping

GRANT_ANNOTATION = "canary.atze.io/allowed-canaryapps"
EVERY_CANARYAPP = "*"


def granted(annotations: Mapping[str, str] | None, canaryapp: str) -> bool:
    """Whether an object with `annotations` lets CanaryApp `canaryapp` (of its namespace) use it."""
    value = (annotations or {}).get(GRANT_ANNOTATION)
    if not isinstance(value, str):
        return False
    names = {name.strip() for name in value.split(",")}
    return canaryapp in names or EVERY_CANARYAPP in names


def how_to_grant(kind: str, namespace: str, object_name: str, canaryapp: str) -> str:
    """The fix for a refusal: the annotation that grants it, and who can write it."""
    return (
        f"annotate the {kind} {namespace}/{object_name} with {GRANT_ANNOTATION}={canaryapp} (only "
        f"someone who may write {kind}s in {namespace} can)"
    )
