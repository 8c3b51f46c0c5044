"""The MetricTemplate and ClusterMetricTemplate CRDs describe MetricTemplateSpec (reconciler/core/metrics.py):
the same fields, bounds and patterns, the same spec in both, and their CEL rule on query variables knows the
variables the code knows. That the API server accepts them and their rules fire is
tests/envtest/test_analysis_admission.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from reconciler.core import metrics, templates
from reconciler.core.metrics import CountQueries, MetricTemplateSpec, TemplateArg, Threshold

ROOT = Path(__file__).resolve().parents[3]
KINDS = {
    "MetricTemplate": ("metrictemplates", "Namespaced"),
    "ClusterMetricTemplate": ("clustermetrictemplates", "Cluster"),
}


def crd(plural: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "crds" / f"canary.atze.io_{plural}.yaml").read_text())
    return document


def spec_schema(plural: str) -> dict[str, Any]:
    schema: dict[str, Any] = crd(plural)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["required"] == ["spec"]
    spec: dict[str, Any] = schema["properties"]["spec"]
    return spec


def aliases(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


@pytest.mark.parametrize(("kind", "plural", "scope"), [(k, *v) for k, v in KINDS.items()])
def test_each_crd_names_its_kind_and_scope(kind: str, plural: str, scope: str) -> None:
    document = crd(plural)
    assert document["metadata"]["name"] == f"{plural}.canary.atze.io"
    assert document["spec"]["names"]["kind"] == kind
    assert document["spec"]["scope"] == scope
    assert [version["name"] for version in document["spec"]["versions"]] == ["v1"]
    assert kind in metrics.TEMPLATE_KINDS


def test_both_crds_have_the_same_spec_and_columns() -> None:
    assert spec_schema("metrictemplates") == spec_schema("clustermetrictemplates")
    columns = [
        crd(plural)["spec"]["versions"][0]["additionalPrinterColumns"]
        for plural in ("metrictemplates", "clustermetrictemplates")
    ]
    assert columns[0] == columns[1]


def test_the_spec_fields_match_the_model() -> None:
    spec = spec_schema("metrictemplates")
    properties = spec["properties"]
    assert set(properties) == aliases(MetricTemplateSpec)
    assert "required" not in spec
    assert set(properties["threshold"]["properties"]) == aliases(Threshold)
    assert set(properties["counts"]["properties"]) == aliases(CountQueries)
    assert set(properties["counts"]["required"]) == aliases(CountQueries)
    arg = properties["args"]["items"]
    assert set(arg["properties"]) == aliases(TemplateArg)
    assert arg["required"] == ["name"]
    assert properties["args"]["x-kubernetes-list-map-keys"] == ["name"]


def test_the_bounds_and_patterns_match_the_model() -> None:
    properties = spec_schema("metrictemplates")["properties"]
    for query in (properties["query"], *properties["counts"]["properties"].values()):
        assert (query["minLength"], query["maxLength"]) == (1, metrics.MAX_METRIC_QUERY_LENGTH)
    assert properties["args"]["maxItems"] == metrics.MAX_ARGS
    arg = properties["args"]["items"]["properties"]
    assert arg["name"]["pattern"] == metrics.ARG_NAME.pattern
    assert arg["default"]["pattern"] == metrics.ARG_VALUE.pattern
    assert arg["default"]["maxLength"] == metrics.MAX_ARG_VALUE_LENGTH
    assert properties["direction"]["enum"] == [direction.value for direction in metrics.Direction]
    for rule in ("allowedEffect", "allowedSpreadIncrease"):
        assert (properties[rule]["minimum"], properties[rule]["maximum"]) == (0, 100)


def test_the_variable_rule_knows_the_variables_of_the_code() -> None:
    rules = [validation["rule"] for validation in spec_schema("metrictemplates")["x-kubernetes-validations"]]
    [variable_rule] = [rule for rule in rules if "findAll" in rule]
    [known] = re.findall(r"\\\\s\*\(([a-z|]+)\)", variable_rule)
    assert set(known.split("|")) == {*templates.VARIABLES, *metrics.METRIC_VARIABLES}
