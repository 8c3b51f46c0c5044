# The Pulumi CLI (engine). The Python Automation API parses `pulumi version`, so the version is stamped in.
PULUMI_VERSION=v3.274.1
build_tool() {
  local src=$1 bin=$2
  (cd "$src" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
    -o "$bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
}
