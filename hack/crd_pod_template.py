"""Generates the `spec.template` schema of the CanaryApp CRD: the real Kubernetes PodTemplateSpec as a
structural CRD schema (what controller-gen makes of an embedded corev1.PodTemplateSpec), so that the API
server validates a CanaryApp's pod template with the schema it validates Pods with, and prunes nothing a Pod
may hold.

Source: the core/v1 OpenAPI v3 document of the Kubernetes release that tools/kubernetes pins (v1.36.3 when
this was written), `api/openapi-spec/v3/api__v1_openapi.json` in the k8s.io/kubernetes module. `make tools`
copies it into .tools/share/kubernetes-openapi/ (tools/kubernetes-openapi/); a kube-apiserver serves the same
document at /openapi/v3/api/v1 (`kubectl get --raw /openapi/v3/api/v1 > v1.json`, then `--openapi v1.json`).

Regenerate after a Kubernetes bump (update both tools/kubernetes and tools/kubernetes-openapi, `make tools`):

    .venv/bin/python hack/crd_pod_template.py --write    # rewrites the generated block of the CRD
    .venv/bin/python hack/crd_pod_template.py            # prints the schema as JSON

`--write` replaces only the lines between the BEGIN and END marker comments under `spec.template` in
crds/canary.atze.io_canaryapps.yaml (one JSON flow mapping per key, sorted); the rest of the file is kept byte
for byte. tests/envtest/test_crd_pod_template.py fails when the committed block differs from this output.

On the way from OpenAPI to a CRD schema:
- every `$ref` and `allOf` is inlined (CRD schemas cannot refer to anything);
- `description`s are dropped (size), and so are the keys CRDs do not know (`x-kubernetes-patch-*`, unions);
- IntOrString and Quantity become `anyOf: [integer, string]` + `x-kubernetes-int-or-string`, as
  controller-gen writes them (without controller-gen's pattern for Quantity);
- ObjectMeta keeps only `labels` and `annotations`: all a pod template's (or an ephemeral volume's claim
  template's) metadata may hold;
- defaults that are Go zero values ("", 0, false, {}) are dropped: openapi-gen writes one for every field
  that is not a pointer, and in a CRD they would fill in absent fields, even required ones such as
  ports[].containerPort; the API server applies them to the Pod anyway. They stay on a map-list key that is
  not required (imagePullSecrets[].name: ""), which the API server insists on, and real defaults
  (ports[].protocol: TCP) stay too, as controller-gen keeps both;
- `containers` is not required: the reconciler adds the main container when the template has none;
- every map (`additionalProperties`: labels, annotations, nodeSelector, resource limits and requests, a
  CSI volume's volumeAttributes, ...) refuses Pulumi's signature key with the CEL rule of
  reconciler/core/reserved_keys.py: a user's map must never become an asset (a file or URL the reconciler
  reads) on Pulumi's wire;
- every list gets a `maxItems` no real pod reaches (MAX_ITEMS): 32 containers, init containers and ephemeral
  containers; 256 volumes and volume mounts; 1024 env entries, command and args entries, matchExpressions
  values and configMap/secret/downwardAPI items; 256 entries of any other list (ports, tolerations, envFrom,
  ...). They bound what one CanaryApp can make the API server and the reconciler hold, and they keep the
  API server's CEL cost estimate small: it multiplies a map's rule by the bounds of the lists around it, or,
  with an unbounded list among them, by the ~1M smallest maps a 3 MB request could hold. Measured on
  kube-apiserver v1.36: the template's rules take under 1% of a CRD's cost budget with these bounds, about
  76% without (so one more rule per map would not fit).
Any other key stops the generator, so a new kind of schema in a later release is looked at, not guessed.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from reconciler.core import reserved_keys

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OPENAPI = REPO_ROOT / ".tools" / "share" / "kubernetes-openapi" / "api__v1_openapi.json"
CRD_PATH = REPO_ROOT / "crds" / "canary.atze.io_canaryapps.yaml"
BEGIN_MARKER = "# BEGIN hack/crd_pod_template.py: the Kubernetes PodTemplateSpec, generated; do not edit"
END_MARKER = "# END hack/crd_pod_template.py"

Schema = dict[str, Any]

POD_TEMPLATE_SPEC = "io.k8s.api.core.v1.PodTemplateSpec"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
INT_OR_STRING_TYPES = frozenset(
    {"io.k8s.apimachinery.pkg.util.intstr.IntOrString", "io.k8s.apimachinery.pkg.api.resource.Quantity"}
)
INT_OR_STRING: Schema = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
}
TEMPLATE_METADATA_FIELDS = ("labels", "annotations")
COPIED_KEYS = frozenset(
    {
        "type",
        "default",
        "format",
        "enum",
        "required",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-map-type",
    }
)
DROPPED_KEYS = frozenset(
    {
        "description",
        "x-kubernetes-patch-strategy",
        "x-kubernetes-patch-merge-key",
        "x-kubernetes-unions",
        "x-kubernetes-group-version-kind",
    }
)
GO_ZERO_VALUES: tuple[object, ...] = ("", 0, False, {}, [])
# maxItems of the template's lists by field name; any other list gets DEFAULT_MAX_ITEMS.
MAX_ITEMS = {
    "containers": 32,
    "initContainers": 32,
    "ephemeralContainers": 32,
    "volumes": 256,
    "volumeMounts": 256,
    "env": 1024,
    "command": 1024,
    "args": 1024,
    "values": 1024,
    "items": 1024,
}
DEFAULT_MAX_ITEMS = 256


class SchemaError(ValueError):
    """The OpenAPI document holds something this generator does not know how to turn into a CRD schema."""


class _Converter:
    def __init__(self, schemas: Mapping[str, Any]) -> None:
        self.schemas = schemas
        self.converting: list[str] = []

    def named(self, name: str) -> Schema:
        if name in INT_OR_STRING_TYPES:
            return copy.deepcopy(INT_OR_STRING)
        if name in self.converting:
            raise SchemaError(
                f"{name} refers to itself ({' -> '.join(self.converting)}): CRDs cannot recurse"
            )
        if name not in self.schemas:
            raise SchemaError(f"{name} is not in the OpenAPI document's components.schemas")
        source: Mapping[str, Any] = self.schemas[name]
        if name == OBJECT_META:
            kept = {field: source["properties"][field] for field in TEMPLATE_METADATA_FIELDS}
            source = {**source, "properties": kept}
        self.converting.append(name)
        try:
            return self.inline(source, name)
        finally:
            self.converting.pop()

    def inline(self, node: Mapping[str, Any], where: str) -> Schema:
        result: Schema = {}
        for key, value in node.items():
            if key in DROPPED_KEYS:
                continue
            if key == "$ref":
                _merge(result, self.named(value.rsplit("/", 1)[-1]), where)
            elif key == "allOf":
                for part in value:
                    _merge(result, self.inline(part, where), where)
            elif key == "properties":
                properties = {name: self.inline(child, f"{where}.{name}") for name, child in value.items()}
                _merge(result, {key: properties}, where)
            elif key in ("items", "additionalProperties"):
                _merge(result, {key: self.inline(value, f"{where}[]")}, where)
            elif key in COPIED_KEYS:
                _merge(result, {key: value}, where)
            else:
                raise SchemaError(
                    f"{where}: unknown schema key {key!r}; teach hack/crd_pod_template.py about it"
                )
        return result


def _merge(target: Schema, part: Mapping[str, Any], where: str) -> None:
    for key, value in part.items():
        if key in target and target[key] != value:
            raise SchemaError(f"{where}: {key!r} differs between a $ref and the keys beside it")
        target[key] = value


def _without_zero_defaults(
    node: Mapping[str, Any], keep_default: bool = False, map_keys: frozenset[str] = frozenset()
) -> Schema:
    """`node` without Go zero-value defaults, except on the keys of a map-list (`map_keys`, passed to the
    list's items) that are not required: the API server refuses a map-list key with neither."""
    defaulted_keys = map_keys - set(node.get("required", []))
    result: Schema = {}
    for key, value in node.items():
        if key == "default" and value in GO_ZERO_VALUES and not keep_default:
            continue
        if key == "properties":
            result[key] = {
                name: _without_zero_defaults(child, keep_default=name in defaulted_keys)
                for name, child in value.items()
            }
        elif key == "items":
            list_map_keys = frozenset(node.get("x-kubernetes-list-map-keys", []))
            result[key] = _without_zero_defaults(value, map_keys=list_map_keys)
        elif key == "additionalProperties":
            result[key] = _without_zero_defaults(value)
        else:
            result[key] = value
    return result


def _bounded(node: Mapping[str, Any], name: str = "") -> Schema:
    """`node` with a maxItems on every list (by its field `name`) and the reserved-key rule on every map."""
    result: Schema = {}
    for key, value in node.items():
        if key == "properties":
            result[key] = {child_name: _bounded(child, child_name) for child_name, child in value.items()}
        elif key in ("items", "additionalProperties"):
            result[key] = _bounded(value)
        else:
            result[key] = value
    if node.get("type") == "array":
        result["maxItems"] = MAX_ITEMS.get(name, DEFAULT_MAX_ITEMS)
    if "additionalProperties" in node:
        result["x-kubernetes-validations"] = [reserved_keys.reserved_key_cel_validation()]
    return result


def pod_template_schema(openapi: Mapping[str, Any]) -> Schema:
    """The structural CRD schema of a PodTemplateSpec, from a core/v1 OpenAPI v3 document."""
    converted = _Converter(openapi["components"]["schemas"]).named(POD_TEMPLATE_SPEC)
    schema = _bounded(_without_zero_defaults(converted))
    pod_spec = schema["properties"]["spec"]
    pod_spec["required"] = [field for field in pod_spec.get("required", []) if field != "containers"]
    if not pod_spec["required"]:
        del pod_spec["required"]
    return schema


def load_openapi(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: run `make tools` (it extracts the pinned Kubernetes OpenAPI document), or "
            "pass --openapi with the JSON a kube-apiserver serves at /openapi/v3/api/v1"
        )
    return json.loads(path.read_text())


def generated_lines(schema: Mapping[str, Any], indent: str) -> list[str]:
    return [f"{indent}{key}: {json.dumps(schema[key], sort_keys=True)}\n" for key in sorted(schema)]


def render(crd_text: str, schema: Mapping[str, Any]) -> str:
    """The CRD text with the lines between the markers replaced by `schema`; everything else unchanged."""
    lines = crd_text.splitlines(keepends=True)
    begins = [index for index, line in enumerate(lines) if line.strip() == BEGIN_MARKER]
    ends = [index for index, line in enumerate(lines) if line.strip() == END_MARKER]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise SchemaError(
            f"the CRD needs exactly one pair of marker lines under spec.template, {BEGIN_MARKER!r} and then "
            f"{END_MARKER!r}; found {len(begins)} and {len(ends)}"
        )
    begin, end = begins[0], ends[0]
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    text = "".join([*lines[: begin + 1], *generated_lines(schema, indent), *lines[end:]])
    _check_placement(text, schema)
    return text


def template_property(crd: Any) -> Any:
    """The `spec.template` property of a loaded CanaryApp CRD."""
    version = crd["spec"]["versions"][0]
    return version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["template"]


def _check_placement(crd_text: str, schema: Mapping[str, Any]) -> None:
    template = template_property(yaml.safe_load(crd_text))
    if {key: value for key, value in template.items() if key != "description"} != schema:
        raise SchemaError("the markers are not directly under spec.template, or it holds other keys too")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--openapi", type=Path, default=DEFAULT_OPENAPI, help="core/v1 OpenAPI v3 JSON")
    parser.add_argument("--write", action="store_true", help=f"rewrite the generated block of {CRD_PATH}")
    args = parser.parse_args(argv)
    try:
        schema = pod_template_schema(load_openapi(args.openapi))
        if args.write:
            CRD_PATH.write_text(render(CRD_PATH.read_text(), schema))
        else:
            print(json.dumps(schema, indent=2, sort_keys=True))
    except (FileNotFoundError, SchemaError) as error:
        print(f"crd_pod_template: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
