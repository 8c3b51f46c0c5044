# etcd, built from its server module through a two-line main.
build_tool() {
  local src=$1 bin=$2
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
}
