"""What can be checked of the image without a container engine: the Dockerfile copies files that exist and
builds tools that exist, podman's buildah can read it, its entrypoint is the package's console script, and the
Grafana dashboard charts metrics the reconciler exports. tests/envtest/test_config.py renders config/ with the
pinned kubectl; tests/integration/test_image.py builds on both: it runs the image."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.metrics_core import Metric

from reconciler.runtime.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions, with continuation lines joined."""
    instructions: list[Instruction] = []
    lines = iter((ROOT / "Dockerfile").read_text().splitlines())
    for first_line in lines:
        if not first_line.strip() or first_line.lstrip().startswith("#"):
            continue
        line = first_line
        while line.endswith("\\"):
            line = line[:-1] + next(lines).strip()
        keyword, _, arguments = line.strip().partition(" ")
        instructions.append(Instruction(keyword.upper(), arguments))
    return instructions


def copy_sources(instruction: Instruction) -> list[str]:
    words = [word for word in instruction.arguments.split() if not word.startswith("--")]
    return words[:-1]


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    local_copies = [
        instruction
        for instruction in dockerfile()
        if instruction.keyword == "COPY" and "--from=" not in instruction.arguments
    ]
    sources = [source for instruction in local_copies for source in copy_sources(instruction)]
    assert {"tools/", "requirements.lock", "pyproject.toml", "README.md", "reconciler/"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        let_through = {str(folder) for folder in Path(source.rstrip("/")).parents} | {source.rstrip("/")}
        assert let_through & allowed, f"COPY {source}: .dockerignore keeps it out of the context"


def test_podmans_buildah_can_build_it() -> None:
    """`make image` builds with podman 4.3, whose buildah (1.28) reads no heredocs (`COPY <<EOF`)."""
    assert not [i for i in dockerfile() if re.search(r"<<-?['\"]?\w+", i.arguments)]


def test_the_image_builds_the_pinned_tools_with_their_recipes() -> None:
    runs = " ".join(i.arguments for i in dockerfile() if i.keyword == "RUN")
    built = dict(re.findall(r'tools/build\.sh ([\w-]+)\)/([\w-]+)" /out/', runs))
    assert built == {"pulumi": "pulumi", "pulumi-kubernetes": "pulumi-resource-kubernetes"}
    for tool, binary in built.items():
        recipe = (ROOT / "tools" / tool / "recipe.sh").read_text()
        assert f'-o "$bin/{binary}"' in recipe, f"tools/{tool}/recipe.sh does not build {binary}"
        assert (ROOT / "tools" / tool / "go.mod").exists()
    from_tools = [i for i in dockerfile() if i.keyword == "COPY" and "--from=tools" in i.arguments]
    assert [copy_sources(i) for i in from_tools] == [[f"/out/{binary}" for binary in built.values()]]


def test_the_entrypoint_is_the_packages_console_script() -> None:
    instructions = {i.keyword: i.arguments for i in dockerfile()}
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(instructions["ENTRYPOINT"]) == ["canaryapp"]
    assert scripts["canaryapp"] == "reconciler.cli:main"
    assert json.loads(instructions["CMD"]) == ["run"]
    assert instructions["USER"] == "65532:65532"


def test_the_image_drops_the_development_tools_but_keeps_the_runtime() -> None:
    script = "tools/image/runtime_closure.py"
    copies = [source for i in dockerfile() if i.keyword == "COPY" for source in copy_sources(i)]
    runs = " ".join(i.arguments for i in dockerfile() if i.keyword == "RUN")
    assert script in copies
    assert "python runtime_closure.py pyproject.toml > /tmp/dev-only.txt" in runs
    assert "pip uninstall -y -r /tmp/dev-only.txt" in runs
    result = subprocess.run(
        [sys.executable, str(ROOT / script), str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    dropped = set(result.stdout.split())
    assert {"pytest", "mypy", "ruff", "hypothesis", "import-linter", "lupa", "types-pyyaml"} <= dropped
    runtime = {"canaryapp", "pulumi", "pulumi-kubernetes", "kubernetes", "httpx", "pydantic", "grpcio"}
    assert not runtime & dropped
    assert not {"prometheus-client", "pyyaml", "protobuf", "pip", "setuptools"} & dropped


def exported_series() -> set[str]:
    """Every series name the reconciler's registry can export (counters end in _total, histograms _bucket)."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    families: list[Metric] = list(Telemetry().registry.collect())
    return {family.name + suffix for family in families for suffix in suffixes[family.type]}


def test_the_dashboard_charts_the_reconcilers_metrics_and_the_mesh_traffic() -> None:
    dashboard = json.loads((ROOT / "config" / "grafana" / "canaryapp-dashboard.json").read_text())
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    expressions = [target["expr"] for panel in panels for target in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"\b(canaryapp_\w+|istio_\w+)", expr)}
    assert used == {
        "canaryapp_rollouts_started_total",
        "canaryapp_rollouts_finished_total",
        "canaryapp_canary_weight",
        "canaryapp_phase",
        "canaryapp_step_duration_seconds_bucket",
        "canaryapp_checks_total",
        "canaryapp_reconcile_errors_total",
        "istio_requests_total",
    }
    assert {name for name in used if name.startswith("canaryapp_")} <= exported_series()
    mesh = [expr for expr in expressions if "istio_requests_total" in expr]
    assert all('destination_workload=~"$name-(primary|canary)"' in expr for expr in mesh)
    assert any("by (destination_workload, response_code)" in expr for expr in mesh)
    assert any('response_code=~"5.."' in expr for expr in mesh)
    assert any("by (result)" in expr for expr in expressions)
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace", "name"}
    assert all(panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"} for panel in panels)
