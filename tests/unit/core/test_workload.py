"""The effective pod template: how spec.template and the shorthand fields combine, contradictions, revisions,
and what a user is told changed."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.core import workload

PORT = 8088


def template(*containers: dict[str, Any], **pod: Any) -> dict[str, Any]:
    metadata = pod.pop("metadata", None)
    result: dict[str, Any] = {"spec": {"containers": list(containers), **pod}}
    if metadata is not None:
        result["metadata"] = metadata
    return result


def test_the_shorthand_alone_is_the_pod_template_the_reconciler_always_declared() -> None:
    # An upgrade must not restart the pods of original manifests: same container, port, probe as before.
    assert workload.effective_template(None, "app:v1", PORT) == {
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "app:v1",
                    "ports": [{"name": "http", "containerPort": PORT}],
                    "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 5},
                }
            ]
        }
    }


def test_the_template_keeps_everything_and_gets_the_image_and_port() -> None:
    probe = {"httpGet": {"path": "/healthz", "port": "http"}}
    given = template(
        {
            "name": "web",
            "env": [{"name": "FOO", "value": "1"}],
            "resources": {"limits": {"cpu": "100m"}},
            "readinessProbe": probe,
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}],
        },
        {"name": "sidecar", "image": "proxy:1"},
        volumes=[{"name": "config", "configMap": {"name": "app-config"}}],
        metadata={"labels": {"team": "shop"}},
    )
    effective = workload.effective_template(given, "app:v2", PORT)
    main = effective["spec"]["containers"][0]
    assert main["name"] == "web"
    assert main["image"] == "app:v2"
    assert main["env"] == [{"name": "FOO", "value": "1"}]
    assert main["ports"] == [{"name": "http", "containerPort": PORT}]
    assert main["readinessProbe"] == probe  # the user's probe wins
    assert effective["spec"]["containers"][1] == {"name": "sidecar", "image": "proxy:1"}
    assert effective["spec"]["volumes"] == given["spec"]["volumes"]
    assert effective["metadata"] == {"labels": {"team": "shop"}}
    assert "image" not in given["spec"]["containers"][0]  # the input is not changed


def test_the_image_may_come_from_the_template_alone() -> None:
    effective = workload.effective_template(template({"name": "app", "image": "app:v3"}), None, PORT)
    assert effective["spec"]["containers"][0]["image"] == "app:v3"


def test_the_reconcilers_labels_are_added_per_track() -> None:
    pod = workload.pod_template("shop", "canary", {"metadata": {"labels": {"team": "a"}}, "spec": {}})
    assert pod["metadata"]["labels"] == {
        "team": "a",
        "canary.atze.io/app": "shop",
        "canary.atze.io/track": "canary",
        "app": "shop",
        "version": "canary",
    }


@pytest.mark.parametrize(
    ("given", "image", "expected"),
    [
        pytest.param(None, None, ["spec.image: no image"], id="no image anywhere"),
        pytest.param(
            template({"name": "app", "image": "app:v3"}),
            "app:v2",
            ["spec.image (app:v2) and spec.template.spec.containers[0].image (app:v3) differ"],
            id="two images",
        ),
        pytest.param(
            template({"name": "app", "ports": [{"name": "http", "containerPort": 9090}]}),
            "app:v2",
            ["containers[0].ports[0]: the port named http is 9090 but spec.imageListenPort is 8088"],
            id="http port with another number",
        ),
        pytest.param(
            template({"name": "app", "ports": [{"name": "web", "containerPort": PORT}]}),
            "app:v2",
            ["containers[0].ports[0]: port 8088 is spec.imageListenPort and must be named 'http'"],
            id="the port under another name",
        ),
        pytest.param(
            template({"name": "app"}, metadata={"labels": {"version": "x", "canary.atze.io/track": "y"}}),
            "app:v2",
            ["'canary.atze.io/track' is set by the reconciler", "'version' is set by the reconciler"],
            id="reserved labels",
        ),
    ],
)
def test_contradictions_name_the_fields_and_the_fix(
    given: dict[str, Any] | None, image: str | None, expected: list[str]
) -> None:
    problems = workload.contradictions(given, image, PORT)
    assert len(problems) == len(expected)
    for part in expected:
        assert any(part in problem for problem in problems), (part, problems)
    with pytest.raises(workload.TemplateError):
        workload.effective_template(given, image, PORT)


def test_the_same_http_port_in_the_template_is_no_contradiction() -> None:
    given = template({"name": "app", "ports": [{"name": "http", "containerPort": PORT}]})
    assert workload.contradictions(given, "app:v2", PORT) == []
    assert workload.effective_template(given, "app:v2", PORT)["spec"]["containers"][0]["ports"] == [
        {"name": "http", "containerPort": PORT}
    ]


def test_revisions_change_with_any_field_and_only_then() -> None:
    base = template({"name": "app", "env": [{"name": "FOO", "value": "1"}]})
    first = workload.revision(workload.effective_template(base, "app:v2", PORT))
    assert first == workload.revision(workload.effective_template(base, "app:v2", PORT))
    changed_env = template({"name": "app", "env": [{"name": "FOO", "value": "2"}]})
    assert first != workload.revision(workload.effective_template(changed_env, "app:v2", PORT))
    assert first != workload.revision(workload.effective_template(base, "app:v3", PORT))
    assert workload.shorthand_revision("app:v2", PORT) == workload.revision(
        workload.effective_template(None, "app:v2", PORT)
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            template({"name": "app", "image": "app:v2"}),
            template({"name": "app", "image": "app:v3"}),
            ["image app:v2 → app:v3"],
            id="image",
        ),
        pytest.param(
            template({"name": "app", "env": [{"name": "FOO", "value": "1"}, {"name": "OLD", "value": "x"}]}),
            template({"name": "app", "env": [{"name": "FOO", "value": "2"}, {"name": "NEW", "value": "y"}]}),
            ["env FOO changed", "env NEW added", "env OLD removed"],
            id="env",
        ),
        pytest.param(
            template({"name": "app"}),
            template({"name": "app", "resources": {"limits": {"cpu": "1"}}}, nodeSelector={"disk": "ssd"}),
            ["resources changed", "nodeSelector changed"],
            id="resources and pod fields",
        ),
        pytest.param(
            template({"name": "app"}),
            template({"name": "app"}, {"name": "sidecar", "image": "proxy:1"}),
            ["container sidecar added"],
            id="a container added",
        ),
        pytest.param(
            template({"name": "app"}),
            template({"name": "app"}, metadata={"annotations": {"a": "b"}}),
            ["pod annotations changed"],
            id="pod annotations",
        ),
        pytest.param(None, template({"name": "app"}), [], id="nothing to compare with"),
    ],
)
def test_changes_are_described_as_a_user_would_say_them(
    old: dict[str, Any] | None, new: dict[str, Any], expected: list[str]
) -> None:
    assert workload.describe_changes(old, new) == expected
