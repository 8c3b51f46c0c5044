"""The Flux example (examples/flux/) is what its README says: its YAML parses, the Kustomization
health-checks the CanaryApp it applies, from the folder the GitRepository fetches, as the ServiceAccount
rbac.yaml grants CanaryApps and nothing else, and its timeout is longer than that CanaryApp's whole rollout.

Flux's own kustomize-controller runs this Kustomization in tests/integration/test_flux.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "flux"
NAMESPACE = "canaryapps"


def documents(name: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all((EXAMPLE / name).read_text()) if document]


def one(name: str, kind: str) -> dict[str, Any]:
    (found,) = [document for document in documents(name) if document["kind"] == kind]
    return found


def seconds(duration: str) -> int:
    """A Go duration of whole minutes or seconds, as the example writes them ("10m", "30s")."""
    units = {"s": 1, "m": 60, "h": 3600}
    return int(duration[:-1]) * units[duration[-1]]


@pytest.mark.parametrize("path", sorted(EXAMPLE.rglob("*.yaml")), ids=lambda path: path.name)
def test_every_file_parses_and_stays_in_the_namespace(path: Path) -> None:
    found = [document for document in yaml.safe_load_all(path.read_text()) if document]
    assert found
    assert all(document["metadata"]["namespace"] == NAMESPACE for document in found)


def test_the_kustomization_health_checks_the_canaryapps_it_applies() -> None:
    kustomization = one("flux-kustomization.yaml", "Kustomization")
    spec = kustomization["spec"]
    applied = sorted((ROOT / spec["path"]).glob("*.yaml"))
    apps = [document for path in applied for document in yaml.safe_load_all(path.read_text())]
    assert apps
    assert all(app["kind"] == "CanaryApp" for app in apps)
    checked = {(check["kind"], check["namespace"], check["name"]) for check in spec["healthChecks"]}
    assert checked == {("CanaryApp", NAMESPACE, app["metadata"]["name"]) for app in apps}
    assert all(check["apiVersion"] == "canary.atze.io/v1" for check in spec["healthChecks"])
    assert spec["targetNamespace"] == NAMESPACE


def test_the_kustomization_reads_the_folder_the_git_repository_fetches() -> None:
    kustomization = one("flux-kustomization.yaml", "Kustomization")
    repository = one("gitrepository.yaml", "GitRepository")
    assert kustomization["spec"]["sourceRef"] == {
        "kind": "GitRepository",
        "name": repository["metadata"]["name"],
    }
    included = [line[1:] for line in repository["spec"]["ignore"].splitlines() if line.startswith("!")]
    assert included == [kustomization["spec"]["path"].removeprefix(".") + "/"]


def test_the_kustomization_applies_as_an_account_that_may_manage_canaryapps_only() -> None:
    account = one("rbac.yaml", "ServiceAccount")["metadata"]["name"]
    assert one("flux-kustomization.yaml", "Kustomization")["spec"]["serviceAccountName"] == account
    role = one("rbac.yaml", "Role")
    assert [(rule["apiGroups"], rule["resources"]) for rule in role["rules"]] == [
        (["canary.atze.io"], ["canaryapps"])
    ]
    binding = one("rbac.yaml", "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]


def test_the_timeout_is_longer_than_a_whole_rollout() -> None:
    """Steps of trafficShiftUpdateInterval up to maxWeight, and the canary's and the promoted primary's
    Deployment rollouts (deploymentReadyWaitTime each): a shorter timeout would fail a healthy rollout."""
    crd = yaml.safe_load((ROOT / "crds" / "canary.atze.io_canaryapps.yaml").read_text())
    defaults = {
        name: field.get("default")
        for name, field in crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
            "properties"
        ].items()
    }
    timeout = seconds(one("flux-kustomization.yaml", "Kustomization")["spec"]["timeout"])
    for path in sorted((EXAMPLE / "canaryapps").glob("*.yaml")):
        spec = {**defaults, **yaml.safe_load(path.read_text())["spec"]}
        steps = -(-spec["maxWeight"] // spec["stepWeight"])
        rollout = steps * spec["trafficShiftUpdateInterval"] + 2 * spec["deploymentReadyWaitTime"]
        assert timeout > rollout, path.name
