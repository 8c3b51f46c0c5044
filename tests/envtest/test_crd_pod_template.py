"""The CRD's spec.template is exactly what hack/crd_pod_template.py makes of the pinned Kubernetes release's
PodTemplateSpec (the OpenAPI document `make tools` fetches); tests/devenv/test_crd_pod_template.py checks the
schema itself without a tool."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from hack import crd_pod_template

pytestmark = pytest.mark.envtest

CRD_TEXT = crd_pod_template.CRD_PATH.read_text()
TEMPLATE = crd_pod_template.template_property(yaml.safe_load(CRD_TEXT))


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    if not crd_pod_template.DEFAULT_OPENAPI.exists():
        pytest.fail(
            f"{crd_pod_template.DEFAULT_OPENAPI} is missing: run `make tools` (tools/kubernetes-openapi)"
        )
    return crd_pod_template.pod_template_schema(
        crd_pod_template.load_openapi(crd_pod_template.DEFAULT_OPENAPI)
    )


def test_the_crd_holds_the_generated_schema(generated: dict[str, Any]) -> None:
    assert {key: value for key, value in TEMPLATE.items() if key != "description"} == generated
    assert crd_pod_template.render(CRD_TEXT, generated) == CRD_TEXT, (
        "crds/canary.atze.io_canaryapps.yaml is not what `.venv/bin/python hack/crd_pod_template.py --write` "
        "writes: run it"
    )
