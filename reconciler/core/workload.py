"""The pods a CanaryApp runs: its effective pod template, the revision that names it, and what changed.

`spec.template` (a Kubernetes PodTemplateSpec, validated by the API server) and the original shorthand fields
combine into one **effective template**:

- The main container is `containers[0]`; a template without containers gets one named `app`.
- `spec.image` is the main container's image. Set it in one place, or in both with the same value (the CRD
  refuses two different images).
- `spec.imageListenPort` is the main container's port named `http` (the Service sends traffic to that name).
  The template may declare it too, with the same number; a port named `http` with another number, or the
  number under another name, is a contradiction.
- The main container's readiness probe is the template's, or else a TCP check of the port every 5 s (what the
  reconciler always used).
- The template's labels and annotations are kept; the labels the reconciler selects pods by
  (`RESERVED_LABELS`) are its own.

A template made from the shorthand fields alone is exactly the pod template the reconciler always declared, so
an original manifest's pods are not restarted by an upgrade. The **revision** is a hash of the effective
template: any change to it (image, env, resources, probes, volumes, ...) is a new release and rolls out as a
canary; the failed-release registry remembers revisions.

Pure: dicts in, dicts and strings out.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from reconciler.core.names import APP_LABEL, TRACK_LABEL

MAIN_CONTAINER = "app"
PORT_NAME = "http"
READINESS_PERIOD_SECONDS = 5
# Labels the reconciler sets on every pod: the Service and the DestinationRule select by the first two, and
# Istio's telemetry reports `app` and `version` (destination_app, destination_version).
RESERVED_LABELS = (APP_LABEL, TRACK_LABEL, "app", "version")
MAIN = "spec.template.spec.containers[0]"

Template = dict[str, Any]


class TemplateError(ValueError):
    """The template and the shorthand fields contradict each other; the message names the fields and the
    fix."""


def main_container(template: Mapping[str, Any] | None) -> Mapping[str, Any]:
    containers = ((template or {}).get("spec") or {}).get("containers") or [{}]
    first = containers[0]
    return first if isinstance(first, Mapping) else {}


def template_image(template: Mapping[str, Any] | None) -> str | None:
    image = main_container(template).get("image")
    return image if isinstance(image, str) and image else None


def effective_template(template: Mapping[str, Any] | None, image: str | None, port: int) -> Template:
    """The pod template the Deployments run (without the reconciler's per-track labels, see `pod_template`).
    Raises TemplateError on a contradiction."""
    problems = contradictions(template, image, port)
    if problems:
        raise TemplateError("; ".join(problems))
    result: Template = copy.deepcopy(dict(template or {}))
    spec = result.setdefault("spec", {})
    containers = spec.get("containers") or [{"name": MAIN_CONTAINER}]
    main = dict(containers[0])
    main.setdefault("name", MAIN_CONTAINER)
    main["image"] = image or template_image(template)
    ports = list(main.get("ports") or [])
    if not any(p.get("name") == PORT_NAME for p in ports):
        ports.insert(0, {"name": PORT_NAME, "containerPort": port})
    main["ports"] = ports
    main.setdefault(
        "readinessProbe", {"tcpSocket": {"port": port}, "periodSeconds": READINESS_PERIOD_SECONDS}
    )
    spec["containers"] = [main, *containers[1:]]
    metadata = result.get("metadata")
    if metadata is not None and not metadata:
        del result["metadata"]
    return result


def contradictions(template: Mapping[str, Any] | None, image: str | None, port: int) -> list[str]:
    """Every way the template and the shorthand fields disagree, each naming the fields and the fix."""
    problems = []
    declared = template_image(template)
    if image is None and declared is None:
        problems.append(f"spec.image: no image: set spec.image or {MAIN}.image")
    elif image is not None and declared is not None and image != declared:
        problems.append(
            f"spec.image ({image}) and {MAIN}.image ({declared}) differ: set the image in one place"
        )
    for index, declared_port in enumerate(main_container(template).get("ports") or []):
        name, number = declared_port.get("name"), declared_port.get("containerPort")
        where = f"{MAIN}.ports[{index}]"
        if name == PORT_NAME and number != port:
            problems.append(
                f"{where}: the port named {PORT_NAME} is {number} but spec.imageListenPort is {port}: "
                "make them equal or remove the port from the template"
            )
        elif number == port and name != PORT_NAME:
            problems.append(
                f"{where}: port {port} is spec.imageListenPort and must be named {PORT_NAME!r} "
                f"(it is {name!r}): rename it or remove it from the template"
            )
    labels = ((template or {}).get("metadata") or {}).get("labels") or {}
    for label in RESERVED_LABELS:
        if label in labels:
            problems.append(
                f"spec.template.metadata.labels: {label!r} is set by the reconciler (it selects the pods of "
                "each track by it): remove it"
            )
    return problems


def pod_template(name: str, track: str, template: Mapping[str, Any]) -> Template:
    """The template of one track's Deployment: the effective template with the reconciler's labels."""
    result: Template = copy.deepcopy(dict(template))
    metadata = result.setdefault("metadata", {})
    metadata["labels"] = {
        **(metadata.get("labels") or {}),
        APP_LABEL: name,
        TRACK_LABEL: track,
        "app": name,
        "version": track,
    }
    return result


def revision(template: Mapping[str, Any]) -> str:
    """A short, stable hash of an effective template: equal templates, equal revisions."""
    encoded = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:10]


def shorthand_revision(image: str, port: int) -> str:
    """The revision of the template the shorthand fields alone make (what every release was before
    spec.template existed)."""
    return revision(effective_template(None, image, port))


def describe_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """What changed between two effective templates, as a user would say it: "image app:v2 → app:v3",
    "env FOO changed", "resources changed", "volumes changed"."""
    if old is None:
        return []
    changes: list[str] = []
    old_containers = _by_name(((old.get("spec") or {}).get("containers")) or [])
    new_containers = _by_name(((new.get("spec") or {}).get("containers")) or [])
    main = next(iter(new_containers), None)
    for name, container in new_containers.items():
        before = old_containers.get(name)
        prefix = "" if name == main else f"container {name}: "
        if before is None:
            changes.append(f"container {name} added")
            continue
        changes.extend(prefix + change for change in _container_changes(before, container))
    changes.extend(f"container {name} removed" for name in old_containers if name not in new_containers)
    for key in sorted(set(old.get("spec") or {}) | set(new.get("spec") or {})):
        if key != "containers" and (old.get("spec") or {}).get(key) != (new.get("spec") or {}).get(key):
            changes.append(f"{key} changed")
    for key in ("labels", "annotations"):
        if (old.get("metadata") or {}).get(key) != (new.get("metadata") or {}).get(key):
            changes.append(f"pod {key} changed")
    return changes


def _by_name(containers: list[Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("name", index)): c for index, c in enumerate(containers) if isinstance(c, Mapping)}


def _container_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    changes = []
    if old.get("image") != new.get("image"):
        changes.append(f"image {old.get('image')} → {new.get('image')}")
    old_env, new_env = _env(old), _env(new)
    for name in sorted(set(old_env) | set(new_env)):
        if name not in old_env:
            changes.append(f"env {name} added")
        elif name not in new_env:
            changes.append(f"env {name} removed")
        elif old_env[name] != new_env[name]:
            changes.append(f"env {name} changed")
    for key in sorted((set(old) | set(new)) - {"name", "image", "env"}):
        if old.get(key) != new.get(key):
            changes.append(f"{key} changed")
    return changes


def _env(container: Mapping[str, Any]) -> dict[str, Any]:
    return {str(e.get("name")): e for e in container.get("env") or [] if isinstance(e, Mapping)}
