"""Statuses written by earlier versions are upgraded once, where a CanaryApp is parsed (upgrade.py)."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core import workload
from reconciler.core.model import CanaryApp
from reconciler.core.upgrade import upgraded_app, upgraded_status
from reconciler.core.wire import status_body
from tests.unit.core.statuses import PORT, revision, written


def kept(*images: str) -> list[dict[str, Any]]:
    return [
        {"revision": revision(image), "template": workload.effective_template(None, image, PORT)}
        for image in images
    ]


CURRENT = status_body(written(phase="Progressing", primary="app:v1", canary="app:v2", successful="app:v1"))


@pytest.mark.parametrize(
    ("written_before", "expected"),
    [
        pytest.param({}, {}, id="a new CanaryApp has no status"),
        pytest.param(
            {"phase": "Ready", "primaryImage": "app:v1"},
            {
                "phase": "Ready",
                "primaryImage": "app:v1",
                "primaryRevision": revision("app:v1"),
                "canaryRevision": None,
                "successfulRevision": None,
                "failedRevisions": [],
                "podTemplates": kept("app:v1"),
            },
            id="a primary image becomes its shorthand revision, with the template kept",
        ),
        pytest.param(
            {
                "phase": "Progressing",
                "primaryImage": "app:v1",
                "canaryImage": "app:v2",
                "successfulRelease": "app:v1",
                "failedImages": ["app:v0"],
            },
            {
                "phase": "Progressing",
                "primaryImage": "app:v1",
                "canaryImage": "app:v2",
                "successfulRelease": "app:v1",
                "failedImages": ["app:v0"],
                "primaryRevision": revision("app:v1"),
                "canaryRevision": revision("app:v2"),
                "successfulRevision": revision("app:v1"),
                "failedRevisions": [revision("app:v0")],
                "podTemplates": kept("app:v1", "app:v2"),
            },
            id="every release image becomes a revision; failed ones keep no template",
        ),
        pytest.param(
            {"phase": "Failed", "primaryImage": "app:v1", "lastRetryToken": "7"},
            {
                "phase": "Failed",
                "primaryImage": "app:v1",
                "primaryRevision": revision("app:v1"),
                "canaryRevision": None,
                "successfulRevision": None,
                "failedRevisions": [],
                "podTemplates": kept("app:v1"),
                "handledRequests": {"retry": "7"},
            },
            id="the retry token handled last becomes the handled retry request",
        ),
        pytest.param(
            {"handledRequests": {"retry": "8", "pause": "p"}, "lastRetryToken": "7"},
            {"handledRequests": {"retry": "8", "pause": "p"}},
            id="a retry handled since wins over the old token",
        ),
        pytest.param(
            {"primaryImage": "app:v1", "primaryRevision": "abc", "podTemplates": []},
            {"primaryImage": "app:v1", "primaryRevision": "abc", "podTemplates": []},
            id="a status with revisions keeps them",
        ),
        pytest.param(
            CURRENT, {k: v for k, v in CURRENT.items() if k != "lastRetryToken"}, id="current status"
        ),
    ],
)
def test_a_status_of_an_earlier_version_is_upgraded(
    written_before: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert upgraded_status(written_before, PORT) == expected


def raw_app(status: dict[str, Any], port: object = PORT) -> dict[str, Any]:
    spec = {"image": "app:v2", "imageListenPort": port, "prometheusQuery": "q", "prometheusURL": "http://p"}
    return {"metadata": {"name": "web"}, "spec": spec, "status": status}


def test_parsing_a_canary_app_upgrades_its_status_to_what_the_current_version_writes() -> None:
    legacy = {
        "phase": "Progressing",
        "primaryImage": "app:v1",
        "canaryImage": "app:v2",
        "successfulRelease": "app:v1",
        "failedImages": ["app:v0"],
        "lastRetryToken": "7",
    }
    parsed = CanaryApp.model_validate(raw_app(legacy)).status
    assert parsed == written(
        phase="Progressing",
        primary="app:v1",
        canary="app:v2",
        successful="app:v1",
        failed=["app:v0"],
        handledRequests={"retry": "7"},
    )


@pytest.mark.parametrize(
    "app",
    [
        pytest.param("not an object", id="not a mapping"),
        pytest.param({"metadata": {"name": "web"}}, id="no spec, no status"),
        pytest.param(raw_app({"primaryImage": "app:v1"}, port="8088"), id="a port that is no number"),
    ],
)
def test_what_is_no_canary_app_with_a_status_is_left_to_validation(app: Any) -> None:
    assert upgraded_app(app) is app
