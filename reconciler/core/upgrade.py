"""Statuses written by earlier versions, brought up to the current shape."""

from __future__ import annotations

from reconciler.core import workload
from reconciler.core.model import CanaryAppSpec, CanaryAppStatus


def with_revisions(spec: CanaryAppSpec, status: CanaryAppStatus) -> CanaryAppStatus:
    """A status written before releases were pod template revisions, with its images turned into the
    revisions of the templates they ran then (the shorthand template: spec.template did not exist yet).
    A status that has revisions is returned as it is."""
    if status.primary_revision is not None or status.primary_image is None:
        return status

    def legacy(image: str) -> tuple[str, workload.Template]:
        template = workload.effective_template(None, image, spec.image_listen_port)
        return workload.revision(template), template  # = workload.shorthand_revision(image, port)

    templates: dict[str, workload.Template] = {}
    revisions: dict[str, str | None] = {}
    for field, image in (
        ("primary_revision", status.primary_image),
        ("canary_revision", status.canary_image),
        ("successful_revision", status.successful_release),
    ):
        if image is None:
            revisions[field] = None
            continue
        revision, template = legacy(image)
        revisions[field] = revision
        templates[revision] = template
    failed = tuple(legacy(image)[0] for image in status.failed_images)
    upgraded = status.model_copy(update={**revisions, "failed_revisions": failed})
    return upgraded.model_copy(update={"pod_templates": upgraded.with_pod_templates(set(), **templates)})
