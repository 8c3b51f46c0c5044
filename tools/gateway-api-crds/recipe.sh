# The Gateway API's standard-channel CRDs (GatewayClass, Gateway, HTTPRoute, ...) from the pinned
# sigs.k8s.io/gateway-api module, as its release's standard-install.yaml bundles them.
build_tool() {
  local src=$1 bin=$2 mod_dir share
  share=$(dirname "$bin")/share/gateway-api-crds
  mod_dir=$(module_dir "$src" sigs.k8s.io/gateway-api)
  mkdir -p "$share"
  cp "$mod_dir"/config/crd/standard/*.yaml "$share/"
  [[ -s "$share/gateway.networking.k8s.io_httproutes.yaml" ]] || { echo "HTTPRoute CRD missing in $mod_dir" >&2; return 1; }
}
