# The Pulumi Kubernetes provider plugin, built from the provider module at the commit of release 4.25.0.
PROVIDER_VERSION=4.25.0
PROVIDER_MODULE=github.com/pulumi/pulumi-kubernetes/provider/v4
build_tool() {
  local src=$1 bin=$2 work mod_dir
  work=$(mktemp -d)
  trap 'chmod -R u+w "$work"; rm -rf "$work"' RETURN
  cp "$src/go.mod" "$src/go.sum" "$src/tools.go" "$work/"
  mod_dir=$(module_dir "$work" "$PROVIDER_MODULE")
  mkdir -p "$work/cmd"
  cp -r "$mod_dir/cmd/pulumi-resource-kubernetes" "$work/cmd/"
  chmod -R u+w "$work/cmd"
  (cd "$work/cmd/pulumi-resource-kubernetes" && VERSION=$PROVIDER_VERSION go run generate.go)
  (cd "$work" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X $PROVIDER_MODULE/pkg/version.Version=$PROVIDER_VERSION" \
    -o "$bin/pulumi-resource-kubernetes" ./cmd/pulumi-resource-kubernetes)
}
