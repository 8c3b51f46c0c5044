# The core/v1 OpenAPI v3 document (api/openapi-spec/v3/api__v1_openapi.json) of the Kubernetes release that
# tools/kubernetes builds (tests/devenv/test_crd_pod_template.py checks that both pin the same one).
# hack/crd_pod_template.py turns its PodTemplateSpec into the CRD's spec.template schema.
build_tool() {
  local src=$1 bin=$2 mod_dir share
  share=$(dirname "$bin")/share/kubernetes-openapi
  mod_dir=$(module_dir "$src" k8s.io/kubernetes)
  mkdir -p "$share"
  cp "$mod_dir/api/openapi-spec/v3/api__v1_openapi.json" "$share/"
}
