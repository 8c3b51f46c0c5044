# kwok and the stage configs it needs when run without kwokctl (copied next to the binary, under ../share).
build_tool() {
  local src=$1 bin=$2 mod_dir share
  share=$(dirname "$bin")/share/kwok-stages
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/kwok" sigs.k8s.io/kwok/cmd/kwok)
  mod_dir=$(module_dir "$src" sigs.k8s.io/kwok)
  mkdir -p "$share"
  cp "$mod_dir"/kustomize/stage/node/fast/node-initialize.yaml \
     "$mod_dir"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
     "$mod_dir"/kustomize/stage/pod/fast/pod-*.yaml "$share/"
}
