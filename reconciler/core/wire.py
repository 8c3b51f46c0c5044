"""The status as the reconciler writes it to the API server: the one function that makes its wire format.

Besides the status's own fields (camelCase, every field present so that a merge patch clears what is None),
the body carries the fields the original operator's users and tools read, derived here from the releases the
status records and nowhere else:

- primaryImage, canaryImage, successfulRelease: the main container images of the kept pod templates of the
  primary, canary and last successful revisions;
- testRunning: whether a canary runs; trafficShift: its weight;
- lastRetryToken: always empty, so a status written before handledRequests loses it (upgrade.py moved it).
"""

from __future__ import annotations

from typing import Any

from reconciler.core.model import CanaryAppStatus


def status_body(status: CanaryAppStatus) -> dict[str, Any]:
    body: dict[str, Any] = status.model_dump(by_alias=True, mode="json")
    return {
        **body,
        "primaryImage": status.primary_image,
        "canaryImage": status.canary_image,
        "successfulRelease": status.successful_image,
        "testRunning": status.canary_revision is not None,
        "trafficShift": status.canary_weight,
        "lastRetryToken": None,
    }
