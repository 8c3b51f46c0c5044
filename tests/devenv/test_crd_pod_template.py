"""The CRD's spec.template carries the fields a pod template needs, and hack/crd_pod_template.py bounds every
list and guards every map against Pulumi's signature key (tests/envtest/test_crd_pod_template.py: the CRD
holds exactly what it makes of the pinned Kubernetes release's PodTemplateSpec)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hack import crd_pod_template
from reconciler.core.reserved_keys import reserved_key_cel_validation

ROOT = Path(__file__).resolve().parents[2]
CRD_TEXT = crd_pod_template.CRD_PATH.read_text()
TEMPLATE = crd_pod_template.template_property(yaml.safe_load(CRD_TEXT))
CONTAINER = TEMPLATE["properties"]["spec"]["properties"]["containers"]["items"]["properties"]
INT_OR_STRING = {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}


def pinned_kubernetes(tool: str) -> str:
    go_mod = (ROOT / "tools" / tool / "go.mod").read_text()
    found = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v\S+)$", go_mod, re.MULTILINE)
    assert found, f"tools/{tool}/go.mod does not require k8s.io/kubernetes"
    return found.group(1)


def test_the_openapi_document_is_the_release_the_cluster_runs() -> None:
    assert pinned_kubernetes("kubernetes-openapi") == pinned_kubernetes("kubernetes")


def test_the_template_schema_is_structural_and_complete() -> None:
    assert set(TEMPLATE["properties"]["metadata"]["properties"]) == {"labels", "annotations"}
    assert "containers" not in TEMPLATE["properties"]["spec"].get("required", [])
    assert {"env", "envFrom", "resources", "readinessProbe", "command", "args", "volumeMounts"} <= set(
        CONTAINER
    )
    assert CONTAINER["env"]["items"]["properties"]["valueFrom"]["type"] == "object"
    assert CONTAINER["resources"]["properties"]["limits"]["additionalProperties"] == INT_OR_STRING
    assert CONTAINER["readinessProbe"]["properties"]["httpGet"]["properties"]["port"] == INT_OR_STRING
    pod_spec = TEMPLATE["properties"]["spec"]["properties"]
    assert "configMap" in pod_spec["volumes"]["items"]["properties"]
    assert pod_spec["nodeSelector"]["additionalProperties"] == {"type": "string"}
    assert {"serviceAccountName", "securityContext", "tolerations", "affinity"} <= set(pod_spec)
    assert "$ref" not in CRD_TEXT
    assert "allOf" not in CRD_TEXT


def test_a_recursive_schema_is_refused() -> None:
    openapi = {
        "components": {
            "schemas": {
                crd_pod_template.POD_TEMPLATE_SPEC: {
                    "type": "object",
                    "properties": {
                        "self": {"$ref": f"#/components/schemas/{crd_pod_template.POD_TEMPLATE_SPEC}"}
                    },
                }
            }
        }
    }
    with pytest.raises(crd_pod_template.SchemaError, match="refers to itself"):
        crd_pod_template.pod_template_schema(openapi)


def test_an_unknown_schema_key_is_refused() -> None:
    openapi = {
        "components": {
            "schemas": {crd_pod_template.POD_TEMPLATE_SPEC: {"type": "object", "x-kubernetes-new": True}}
        }
    }
    with pytest.raises(crd_pod_template.SchemaError, match="x-kubernetes-new"):
        crd_pod_template.pod_template_schema(openapi)


def test_lists_are_bounded_and_maps_refuse_pulumis_signature_key() -> None:
    strings = {"type": "array", "items": {"type": "string"}}
    openapi = {
        "components": {
            "schemas": {
                crd_pod_template.POD_TEMPLATE_SPEC: {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "properties": {
                                "containers": {
                                    "type": "array",
                                    "items": {"type": "object", "properties": {"args": strings}},
                                },
                                "tolerations": strings,
                                "nodeSelector": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                },
                            },
                        }
                    },
                }
            }
        }
    }
    pod_spec = crd_pod_template.pod_template_schema(openapi)["properties"]["spec"]["properties"]
    assert pod_spec["containers"]["maxItems"] == crd_pod_template.MAX_ITEMS["containers"] == 32
    assert pod_spec["containers"]["items"]["properties"]["args"]["maxItems"] == 1024
    assert pod_spec["tolerations"]["maxItems"] == crd_pod_template.DEFAULT_MAX_ITEMS
    assert pod_spec["nodeSelector"]["x-kubernetes-validations"] == [reserved_key_cel_validation()]
    assert "x-kubernetes-validations" not in pod_spec["containers"]


def test_the_crd_template_is_bounded_and_guarded() -> None:
    pod_spec = TEMPLATE["properties"]["spec"]["properties"]
    assert (pod_spec["containers"]["maxItems"], pod_spec["volumes"]["maxItems"]) == (32, 256)
    assert CONTAINER["env"]["maxItems"] == 1024
    for guarded in (
        TEMPLATE["properties"]["metadata"]["properties"]["annotations"],
        pod_spec["nodeSelector"],
        CONTAINER["resources"]["properties"]["limits"],
    ):
        assert guarded["x-kubernetes-validations"] == [reserved_key_cel_validation()]
