"""Pulumi's signature key is refused in every map a user writes: by the finder, by the model (naming the path
and the fix), and by the CRD, whose every user map carries the CEL rule and whose every list is bounded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from reconciler.core.model import CanaryApp, CanaryAppSpec
from reconciler.core.reserved_keys import (
    PULUMI_SIGNATURE_KEY,
    ReservedKeyError,
    refuse_reserved_key,
    reserved_key_cel_validation,
    reserved_key_paths,
)
from reconciler.runtime.admission import describe_validation_error

ROOT = Path(__file__).resolve().parents[3]
CRD = yaml.safe_load((ROOT / "crds" / "canary.atze.io_canaryapps.yaml").read_text())
SPEC_SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
ASSET_SIGNATURE = "c44067f5952c0a294b673a41bacd8c17"
# What makes the engine read a file inside the reconciler.
ASSET = {PULUMI_SIGNATURE_KEY: ASSET_SIGNATURE, "path": "/dev/zero"}
SPEC = {"image": "shop:v1", "imageListenPort": 8080, "prometheusQuery": "q", "prometheusURL": "http://p:9090"}


def with_key() -> dict[str, Any]:
    """A map holding the signature key as a plain string entry, as an annotation or label would."""
    return {"team": "a", PULUMI_SIGNATURE_KEY: ASSET_SIGNATURE, "path": "/dev/zero"}


def template(**pod_spec: Any) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": "app", "image": "shop:v1"}], **pod_spec}}


@pytest.mark.parametrize(
    ("change", "path"),
    [
        pytest.param(
            {"template": {"metadata": {"annotations": with_key()}}},
            "spec.template.metadata.annotations",
            id="annotations",
        ),
        pytest.param(
            {"template": {"metadata": {"labels": with_key()}}},
            "spec.template.metadata.labels",
            id="labels",
        ),
        pytest.param(
            {"template": template(nodeSelector=with_key())},
            "spec.template.spec.nodeSelector",
            id="nodeSelector",
        ),
        pytest.param(
            {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "app", "image": "shop:v1", "resources": {"limits": with_key()}}
                        ]
                    }
                }
            },
            "spec.template.spec.containers[0].resources.limits",
            id="container resources.limits",
        ),
        pytest.param(
            {
                "template": template(
                    volumes=[
                        {"name": "cache", "emptyDir": {}},
                        {"name": "secrets", "csi": {"driver": "d", "volumeAttributes": with_key()}},
                    ]
                )
            },
            "spec.template.spec.volumes[1].csi.volumeAttributes",
            id="csi volumeAttributes",
        ),
        pytest.param(
            {
                "template": template(
                    initContainers=[{"name": "init", "image": "i:1", "resources": {"requests": with_key()}}]
                )
            },
            "spec.template.spec.initContainers[0].resources.requests",
            id="init container resources.requests",
        ),
        pytest.param(
            {"prometheusHeaders": {"X-Scope-OrgID": "team-a", PULUMI_SIGNATURE_KEY: ASSET_SIGNATURE}},
            "spec.prometheusHeaders",
            id="prometheusHeaders",
        ),
        pytest.param(
            {"template": {"metadata": {"annotations": {"config": ASSET}}}},
            "spec.template.metadata.annotations.config",
            id="an asset as a map's value",
        ),
        pytest.param(
            {
                "template": template(
                    affinity={
                        "podAntiAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": [
                                {"topologyKey": "zone", "labelSelector": {"matchLabels": with_key()}}
                            ]
                        }
                    }
                )
            },
            "spec.template.spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"
            ".labelSelector.matchLabels",
            id="podAntiAffinity matchLabels",
        ),
    ],
)
def test_the_model_refuses_the_key_and_names_the_map(change: dict[str, Any], path: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CanaryAppSpec.model_validate({**SPEC, **change})
    message = describe_validation_error(caught.value)
    assert f"{path}: the key {PULUMI_SIGNATURE_KEY} is reserved by Pulumi's wire format" in message
    assert message.endswith(": remove it")


def test_a_whole_canaryapp_with_the_key_is_refused_at_its_spec() -> None:
    document = {
        "metadata": {"name": "shop"},
        "spec": {**SPEC, "template": {"metadata": {"annotations": {"config": ASSET}}}},
    }
    with pytest.raises(ValidationError) as caught:
        CanaryApp.model_validate(document)
    assert [error["loc"] for error in caught.value.errors()] == [("spec",)]
    assert "spec.template.metadata.annotations.config: the key" in describe_validation_error(caught.value)


def test_benign_maps_pass() -> None:
    benign = {
        **SPEC,
        "prometheusHeaders": {"X-Scope-OrgID": "team-a"},
        "template": {
            "metadata": {"annotations": {"path": "/dev/zero", "uri": "http://x"}, "labels": {"team": "a"}},
            "spec": {
                "nodeSelector": {"disk": PULUMI_SIGNATURE_KEY},
                "containers": [{"name": "app", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
                "volumes": [
                    {"name": "v", "csi": {"driver": "d", "volumeAttributes": {"a": ASSET_SIGNATURE}}}
                ],
            },
        },
    }
    spec = CanaryAppSpec.model_validate(benign)
    assert spec.template is not None
    assert spec.template["spec"]["nodeSelector"] == {"disk": PULUMI_SIGNATURE_KEY}
    assert reserved_key_paths(benign, "spec") == []


def test_every_map_holding_the_key_is_found_in_document_order() -> None:
    value = {
        "a": [{"b": with_key()}, ("x", {PULUMI_SIGNATURE_KEY: 1, "c": with_key()})],
        "d": with_key(),
        "e": "no map",
    }
    assert reserved_key_paths(value, "root") == ["root.a[0].b", "root.a[1][1]", "root.a[1][1].c", "root.d"]
    with pytest.raises(ReservedKeyError, match=r"^root\.a\[0\]\.b, root\.a\[1\]\[1\], .*: ask the owner$"):
        refuse_reserved_key(value, "root", "ask the owner")
    refuse_reserved_key({"a": [{"b": "c"}]}, "root")


def test_a_nest_deeper_than_the_recursion_limit_is_walked() -> None:
    deepest: dict[str, Any] = {PULUMI_SIGNATURE_KEY: ASSET_SIGNATURE}
    value: Any = deepest
    for _ in range(sys.getrecursionlimit() * 2):
        value = {"n": [value]}
    [path] = reserved_key_paths(value, "root")
    assert path.endswith(".n[0]")
    assert path.count(".n[0]") == sys.getrecursionlimit() * 2


def schemas(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    """Every schema under `node` (itself included), with its path."""
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found.extend(schemas(child, f"{path}.{name}"))
    for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
        if isinstance(node.get(key), dict):
            found.extend(schemas(node[key], path + suffix))
    return found


SPEC_SCHEMAS = schemas(SPEC_SCHEMA, "spec")


def test_there_are_user_maps_in_and_outside_the_template() -> None:
    maps = [path for path, schema in SPEC_SCHEMAS if "additionalProperties" in schema]
    assert "spec.prometheusHeaders" in maps
    assert "spec.template.spec.volumes[].csi.volumeAttributes" in maps
    assert len(maps) >= 30


@pytest.mark.parametrize(
    ("path", "schema"),
    [
        pytest.param(path, schema, id=path)
        for path, schema in SPEC_SCHEMAS
        if "additionalProperties" in schema
    ],
)
def test_every_user_map_of_the_crd_refuses_the_key(path: str, schema: dict[str, Any]) -> None:
    assert reserved_key_cel_validation() in schema.get("x-kubernetes-validations", []), path


def test_every_list_of_the_spec_is_bounded_and_every_string_outside_the_template_too() -> None:
    unbounded_lists = [
        path for path, schema in SPEC_SCHEMAS if schema.get("type") == "array" and "maxItems" not in schema
    ]
    unbounded_strings = [
        path
        for path, schema in SPEC_SCHEMAS
        if schema.get("type") == "string" and "maxLength" not in schema and "enum" not in schema
        if not path.startswith("spec.template")
    ]
    unbounded_maps = [
        path
        for path, schema in SPEC_SCHEMAS
        if "additionalProperties" in schema and "maxProperties" not in schema
        if not path.startswith("spec.template")
    ]
    assert (unbounded_lists, unbounded_strings, unbounded_maps) == ([], [], [])
    containers = SPEC_SCHEMA["properties"]["template"]["properties"]["spec"]["properties"]["containers"]
    assert containers["maxItems"] == 32
