# The Pulumi CLI (engine). The Python Automation API parses `pulumi version`, so the version is stamped in.
# Built with two files of one dependency replaced (overlay/zxcvbn-go/, README there): a password-strength
# package Pulumi links for `pulumi config set` decoded its word lists in init, in every `pulumi` run; the
# replaced files defer that to its first use. The pinned module is copied from the module cache (checked
# against go.sum as every module is), the two files go over it, and the build reads a copy of go.mod that
# replaces the module with that copy. The files are written for the version go.sum pins: another version
# stops the build.
PULUMI_VERSION=v3.274.1
ZXCVBN_VERSION=v1.0.1
build_tool() {
  local src=$1 bin=$2 zxcvbn
  zxcvbn=$(module_dir "$src" github.com/ccojocar/zxcvbn-go)
  if [[ $zxcvbn != *"@$ZXCVBN_VERSION" ]]; then
    echo "overlay/zxcvbn-go is written for zxcvbn-go $ZXCVBN_VERSION, the build has $zxcvbn: update it" >&2
    return 1
  fi
  work=$(mktemp -d)  # not local: the EXIT trap of the build's subshell removes it
  trap 'rm -rf "$work"' EXIT
  cp -r "$zxcvbn" "$work/zxcvbn-go"
  chmod -R u+w "$work/zxcvbn-go"
  cp "$src/overlay/zxcvbn-go/frequency/frequency.go" "$work/zxcvbn-go/frequency/"
  cp "$src/overlay/zxcvbn-go/matching/matching.go" "$work/zxcvbn-go/matching/"
  cp "$src/go.mod" "$work/go.mod"
  cp "$src/go.sum" "$work/go.sum"
  echo "replace github.com/ccojocar/zxcvbn-go => $work/zxcvbn-go" >> "$work/go.mod"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -modfile "$work/go.mod" \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$PULUMI_VERSION" \
    -o "$bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi)
}
