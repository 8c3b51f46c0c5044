"""The pydantic models and the CRD describe the same API, and every example manifest fits both."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from reconciler.core.model import Autoscaler, CanaryApp, CanaryAppSpec, CanaryAppStatus, CheckOutcome
from reconciler.core.wire import status_body
from reconciler.runtime.admission import describe_validation_error

ROOT = Path(__file__).resolve().parents[3]
CRD = yaml.safe_load((ROOT / "crds" / "canary.atze.io_canaryapps.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]


def examples() -> list[Any]:
    found = []
    for path in sorted(ROOT.glob("examples/**/*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "CanaryApp":
                found.append(
                    pytest.param(document, id=f"{path.relative_to(ROOT)}:{document['metadata']['name']}")
                )
    return found


def aliases(model: type[CanaryAppSpec]) -> dict[str, FieldInfo]:
    return {info.alias or name: info for name, info in model.model_fields.items()}


def test_there_are_examples() -> None:
    assert len(examples()) >= 3


@pytest.mark.parametrize("document", examples())
def test_every_example_loads_and_round_trips(document: dict[str, Any]) -> None:
    app = CanaryApp.model_validate(document)
    dumped = app.spec.model_dump(by_alias=True, mode="json", exclude_unset=True)
    assert CanaryAppSpec.model_validate(dumped) == app.spec
    assert set(document["spec"]) <= set(SCHEMA["spec"]["properties"])


def test_spec_fields_match_the_crd() -> None:
    crd_spec = SCHEMA["spec"]
    model_fields = aliases(CanaryAppSpec)
    assert set(model_fields) == set(crd_spec["properties"])
    required = {alias for alias, info in model_fields.items() if info.is_required()}
    assert required == set(crd_spec["required"])
    for alias, info in model_fields.items():
        crd_default = crd_spec["properties"][alias].get("default")
        if crd_default is not None:
            assert info.default == crd_default, alias


def test_the_status_as_written_matches_the_crd() -> None:
    assert set(status_body(CanaryAppStatus())) == set(SCHEMA["status"]["properties"])


@pytest.mark.parametrize(
    "outcome",
    [
        pytest.param(SCHEMA["status"]["properties"]["lastCheckOutcome"], id="lastCheckOutcome"),
        pytest.param(
            SCHEMA["status"]["properties"]["checks"]["items"]["properties"]["outcome"], id="checks.outcome"
        ),
    ],
)
def test_the_crd_takes_every_check_outcome(outcome: dict[str, Any]) -> None:
    """A value the schema refuses fails the whole status write (HTTP 422), so the rollout stops there."""
    assert outcome["enum"] == [value.value for value in CheckOutcome]


def test_original_operator_fields_are_all_there() -> None:
    original = {
        "image",
        "imageListenPort",
        "replicas",
        "testReplicas",
        "prometheusQuery",
        "prometheusURL",
        "failWhenPrometheusFails",
        "trafficShiftUpdateInterval",
        "deploymentReadyWaitTime",
    }
    assert original <= set(SCHEMA["spec"]["properties"])
    assert {"successfulRelease", "testRunning", "trafficShift", "lastFailedTag", "lastTrafficShift"} <= set(
        SCHEMA["status"]["properties"]
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"stepWeight": 60}, "stepWeight", id="step above max"),
        pytest.param({"imageListenPort": 70000}, "imageListenPort", id="port out of range"),
        pytest.param({"replicas": 0}, "replicas", id="no replicas"),
        pytest.param({"prometheusURL": "prometheus:9090"}, "prometheusURL", id="url without scheme"),
        pytest.param({"imagee": "typo"}, "imagee", id="unknown field"),
    ],
)
def test_bad_input_names_the_field(change: dict[str, Any], field: str) -> None:
    spec = {"image": "a:1", "imageListenPort": 80, "prometheusQuery": "q", "prometheusURL": "http://p:9090"}
    with pytest.raises(ValidationError) as caught:
        CanaryAppSpec.model_validate({**spec, **change})
    message = describe_validation_error(caught.value)
    assert field in message


def test_autoscaler_fields_match_the_crd() -> None:
    crd = SCHEMA["spec"]["properties"]["autoscaler"]
    fields = {info.alias or name: info for name, info in Autoscaler.model_fields.items()}
    assert set(fields) == set(crd["properties"])
    assert {alias for alias, info in fields.items() if info.is_required()} == set(crd["required"])
    for alias, info in fields.items():
        if "default" in crd["properties"][alias]:
            assert info.default == crd["properties"][alias]["default"], alias


BOUNDED_SPEC = {
    "image": "a:1",
    "imageListenPort": 80,
    "prometheusQuery": "q",
    "prometheusURL": "http://p:9090",
}
BOUNDS = [
    pytest.param(("image", "maxLength"), lambda n: {"image": "i" * n}, id="image"),
    pytest.param(("prometheusQuery", "maxLength"), lambda n: {"prometheusQuery": "q" * n}, id="query"),
    pytest.param(
        ("canaryTrafficQuery", "maxLength"), lambda n: {"canaryTrafficQuery": "q" * n}, id="traffic query"
    ),
    pytest.param(
        ("prometheusURL", "maxLength"), lambda n: {"prometheusURL": "http://p/" + "u" * (n - 9)}, id="url"
    ),
    pytest.param(
        ("prometheusSecretRef", "properties", "name", "maxLength"),
        lambda n: {"prometheusSecretRef": {"name": "s" * n}},
        id="secret name",
    ),
    pytest.param(
        ("prometheusHeaders", "maxProperties"),
        lambda n: {"prometheusHeaders": {f"X-Header-{index}": "v" for index in range(n)}},
        id="headers",
    ),
    pytest.param(
        ("prometheusHeaders", "additionalProperties", "maxLength"),
        lambda n: {"prometheusHeaders": {"X-Scope-OrgID": "v" * n}},
        id="header value",
    ),
    pytest.param(("hosts", "maxItems"), lambda n: {"hosts": [f"h{index}" for index in range(n)]}, id="hosts"),
    pytest.param(("hosts", "items", "maxLength"), lambda n: {"hosts": ["h" * n]}, id="host"),
    pytest.param(
        ("gateways", "maxItems"), lambda n: {"gateways": [f"g{index}" for index in range(n)]}, id="gateways"
    ),
    pytest.param(("gateways", "items", "maxLength"), lambda n: {"gateways": ["g" * n]}, id="gateway"),
    pytest.param(
        ("parentRefs", "maxItems"),
        lambda n: {"parentRefs": [{"name": f"g{index}"} for index in range(n)]},
        id="parent refs",
    ),
    *(
        pytest.param(
            ("parentRefs", "items", "properties", field, "maxLength"),
            lambda n, field=field: {"parentRefs": [{"name": "g", field: "x" * n}]},
            id=f"parent ref {field}",
        )
        for field in ("name", "namespace", "sectionName")
    ),
    pytest.param(
        ("analysis", "properties", "metrics", "maxItems"),
        lambda n: {
            "analysis": {
                "metrics": [
                    {"name": f"m{index}", "query": "q", "threshold": {"max": 1}} for index in range(n)
                ]
            }
        },
        id="metrics",
    ),
    pytest.param(
        ("analysis", "properties", "metrics", "items", "properties", "name", "maxLength"),
        lambda n: {"analysis": {"metrics": [{"name": "m" * n, "query": "q", "threshold": {"max": 1}}]}},
        id="metric name",
    ),
    pytest.param(
        ("analysis", "properties", "metrics", "items", "properties", "query", "maxLength"),
        lambda n: {"analysis": {"metrics": [{"name": "m", "query": "q" * n, "threshold": {"max": 1}}]}},
        id="metric query",
    ),
    *(
        pytest.param(
            (
                "analysis",
                "properties",
                "metrics",
                "items",
                "properties",
                "counts",
                "properties",
                field,
                "maxLength",
            ),
            lambda n, field=field: {
                "analysis": {
                    "metrics": [
                        {
                            "name": "m",
                            "counts": {"failures": "f", "trials": "t", field: "q" * n},
                            "threshold": {"max": 1},
                        }
                    ]
                }
            },
            id=f"metric counts {field}",
        )
        for field in ("failures", "trials")
    ),
    pytest.param(
        (
            "analysis",
            "properties",
            "metrics",
            "items",
            "properties",
            "templateRef",
            "properties",
            "name",
            "maxLength",
        ),
        lambda n: {"analysis": {"metrics": [{"name": "m", "templateRef": {"name": "t" * n}}]}},
        id="template name",
    ),
    pytest.param(
        ("analysis", "properties", "metrics", "items", "properties", "args", "maxProperties"),
        lambda n: {
            "analysis": {
                "metrics": [
                    {
                        "name": "m",
                        "templateRef": {"name": "t"},
                        "args": {f"a{index}": "v" for index in range(n)},
                    }
                ]
            }
        },
        id="args",
    ),
    pytest.param(
        (
            "analysis",
            "properties",
            "metrics",
            "items",
            "properties",
            "args",
            "additionalProperties",
            "maxLength",
        ),
        lambda n: {
            "analysis": {"metrics": [{"name": "m", "templateRef": {"name": "t"}, "args": {"a": "v" * n}}]}
        },
        id="arg value",
    ),
]


def crd_bounds(schema: dict[str, Any], path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The path of every maxLength, maxItems and maxProperties in the spec's own fields (not the template)."""
    found = {(*path, key) for key in ("maxLength", "maxItems", "maxProperties") if key in schema}
    for name, child in schema.get("properties", {}).items():
        if path or name != "template":
            found |= crd_bounds(child, (*path, name) if not path else (*path, "properties", name))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            found |= crd_bounds(schema[key], (*path, key))
    return found


def test_every_bound_of_the_crd_spec_is_checked_against_the_model() -> None:
    assert crd_bounds(SCHEMA["spec"]) == {param.values[0] for param in BOUNDS}


@pytest.mark.parametrize(("bound", "change"), BOUNDS)
def test_the_model_keeps_the_crd_bounds(
    bound: tuple[str, ...], change: Callable[[int], dict[str, Any]]
) -> None:
    schema: Any = SCHEMA["spec"]["properties"]
    for key in bound:
        schema = schema[key]
    limit = schema
    CanaryAppSpec.model_validate({**BOUNDED_SPEC, **change(limit)})
    with pytest.raises(ValidationError) as caught:
        CanaryAppSpec.model_validate({**BOUNDED_SPEC, **change(limit + 1)})
    assert bound[0] in describe_validation_error(caught.value)
