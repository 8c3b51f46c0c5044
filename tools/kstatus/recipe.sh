# kstatus: the status sigs.k8s.io/cli-utils' kstatus computes for one object read as JSON on stdin (main.go),
# the reading Flux's health checks and Helm's --wait apply to a CanaryApp (tests/integration/test_kstatus.py).
build_tool() {
  local src=$1 bin=$2
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/kstatus" .)
}
