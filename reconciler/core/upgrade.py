"""Statuses written by earlier versions, brought to the current shape where a CanaryApp is parsed.

The `CanaryApp` model runs `upgraded_app` on the object as read from the API server, so nothing after
parsing (the state machine, the plan, the plugin) knows older shapes existed; the next status write stores
the current shape. What changed:

- Releases were images before they were pod template revisions: primaryImage, canaryImage, successfulRelease
  and failedImages become the revisions of the templates those images ran with then (the shorthand template:
  spec.template did not exist yet), and the templates are kept as every current status keeps them.
- The retry request handled last was `lastRetryToken` before every request kind was in `handledRequests`.

Raw dicts in and out (camelCase, as the API server stores them): this module runs before validation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.core import workload

_RELEASES = (
    ("primaryImage", "primaryRevision"),
    ("canaryImage", "canaryRevision"),
    ("successfulRelease", "successfulRevision"),
)


def upgraded_app(app: Any) -> Any:
    """The object with its status upgraded; anything that is not a raw CanaryApp with a status and a usable
    imageListenPort is returned as it is (validation reports what is wrong with it)."""
    if not isinstance(app, Mapping):
        return app
    status, spec = app.get("status"), app.get("spec")
    if not isinstance(status, Mapping) or not isinstance(spec, Mapping):
        return app
    port = spec.get("imageListenPort")
    if not isinstance(port, int):
        return app
    return {**app, "status": upgraded_status(status, port)}


def upgraded_status(status: Mapping[str, Any], image_listen_port: int) -> dict[str, Any]:
    """A raw status in the current shape (a current status is returned unchanged)."""
    upgraded = dict(status)
    if upgraded.get("primaryRevision") is None and upgraded.get("primaryImage") is not None:
        upgraded.update(_releases_as_revisions(upgraded, image_listen_port))
    retry_token = upgraded.pop("lastRetryToken", None)
    handled = dict(upgraded.get("handledRequests") or {})
    if retry_token is not None and "retry" not in handled:
        upgraded["handledRequests"] = {**handled, "retry": retry_token}
    return upgraded


def _releases_as_revisions(status: Mapping[str, Any], port: int) -> dict[str, Any]:
    templates: dict[str, workload.Template] = {}
    fields: dict[str, Any] = {}
    for image_field, revision_field in _RELEASES:
        image = status.get(image_field)
        if image is None:
            fields[revision_field] = None
            continue
        template = workload.effective_template(None, image, port)
        fields[revision_field] = workload.revision(template)
        templates[fields[revision_field]] = template
    fields["failedRevisions"] = [
        workload.shorthand_revision(image, port) for image in status.get("failedImages") or ()
    ]
    fields["podTemplates"] = [{"revision": r, "template": t} for r, t in templates.items()]
    return fields
