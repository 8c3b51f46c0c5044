"""Statuses as the current version writes them, for the core's tests: every release a pod template revision
with its template kept (and a failed one listed by revision and image), for specs of the shorthand kind
(`image` and `imageListenPort`, 8088 unless told). Statuses of earlier versions are upgrade.py's business,
tested in test_upgrade.py."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.core import workload
from reconciler.core.model import CanaryAppStatus

PORT = 8088


def revision(image: str, port: int = PORT) -> str:
    return workload.shorthand_revision(image, port)


def written(
    *,
    primary: str | None = None,
    canary: str | None = None,
    successful: str | None = None,
    failed: Iterable[str] = (),
    port: int = PORT,
    **fields: object,
) -> CanaryAppStatus:
    """A status whose primary, canary and last successful release run these images; `fields` as the API
    server stores them (camelCase) or by name."""
    releases = {"primaryRevision": primary, "canaryRevision": canary, "successfulRevision": successful}
    kept = {revision(image, port): image for image in releases.values() if image is not None}
    return CanaryAppStatus.model_validate(
        {
            **fields,
            **{field: None if image is None else revision(image, port) for field, image in releases.items()},
            "failedRevisions": [revision(image, port) for image in failed],
            "failedImages": list(failed),
            "podTemplates": [
                {"revision": kept_revision, "template": workload.effective_template(None, image, port)}
                for kept_revision, image in kept.items()
            ],
        }
    )
