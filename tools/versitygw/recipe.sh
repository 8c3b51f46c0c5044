# versitygw, an S3-compatible gateway: its posix backend serves a local folder as S3 buckets (tests keep Pulumi
# state there, through Pulumi's own s3:// backend).
VERSITYGW_VERSION=v1.8.0
build_tool() {
  local src=$1 bin=$2
  (cd "$src" && CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X main.Version=$VERSITYGW_VERSION" \
    -o "$bin/versitygw" github.com/versity/versitygw/cmd/versitygw)
}
