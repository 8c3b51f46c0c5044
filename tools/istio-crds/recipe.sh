# Istio's CRDs (VirtualService, DestinationRule, Gateway, ...) from the pinned istio.io/api module.
build_tool() {
  local src=$1 bin=$2 mod_dir share
  share=$(dirname "$bin")/share
  mod_dir=$(module_dir "$src" istio.io/api)
  mkdir -p "$share"
  cp "$mod_dir/kubernetes/customresourcedefinitions.gen.yaml" "$share/istio-crds.yaml"
}
